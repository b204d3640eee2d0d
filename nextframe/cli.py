"""`nextframe` command line: record, train, rollout, export, play, demo, bench, distill, generate.

Each subcommand is a thin shell over the library; errors the user can fix (bad file, bad shape, unknown
game or action) print as one line `nextframe: <message>` and exit with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from nextframe.validation import SamplerDefaults, float_in, int_in, nonneg_int, positive_int, unit_float

DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(__file__), "default_model")
DEFAULT_MODEL = os.path.join(DEFAULT_MODEL_DIR, "breakout.safetensors")
# models that ship with the package, by name (--model NAME works wherever a model file does): the default, the
# frame-stack U-Net sampled in one step, and the transformer that was the default before it, kept for comparison
SHIPPED_MODELS = {"breakout": DEFAULT_MODEL, "breakout-dit": os.path.join(DEFAULT_MODEL_DIR, "breakout_dit.safetensors")}
# the AR image model (MAR-style, several games) and its Distilled Decoding student: `nextframe generate`'s default
DEFAULT_AR_MODEL = os.path.join(DEFAULT_MODEL_DIR, "games_mar.safetensors")
DEFAULT_AR_STUDENT = os.path.join(DEFAULT_MODEL_DIR, "games_mar_dd.safetensors")


def model_path(name_or_path: str) -> str:
    """A shipped model's name (SHIPPED_MODELS) or a model file's path -> the file's path."""
    return SHIPPED_MODELS.get(name_or_path, name_or_path)


def sampler_defaults(model_path: str) -> dict:
    """Sampler settings the model was evaluated with, stored in its file's metadata."""
    from nextframe.training.checkpoint import model_metadata

    meta = model_metadata(model_path)
    try:
        d = SamplerDefaults(steps=json.loads(meta.get("default_steps", "4")),
                            context_noise=json.loads(meta.get("default_context_noise", "0.0")),
                            times=json.loads(meta["default_times"]) if "default_times" in meta else None)
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"model: {model_path} has unreadable sampler metadata ({e})") from None
    return dataclasses.asdict(d)


def schedule_args(d: dict, steps: int | None) -> dict:
    """export_bundle / rollout keywords: the model's own schedule unless --steps asks for another count."""
    if steps is None or steps == d["steps"]:
        return {"n_steps": None, "times": d["times"]} if d["times"] else {"n_steps": d["steps"], "times": None}
    return {"n_steps": steps, "times": None}


def cmd_record(args):
    from nextframe.data.record import record

    paths = record(args.game, args.episodes, args.steps, args.out, args.seed, args.policy)
    print(json.dumps({"episodes": len(paths), "out": args.out}))


def cmd_train(args):
    import dataclasses

    from nextframe.models.unet_config import UNetConfig
    from nextframe.training.config import load_config

    model_cfg, train_cfg = load_config(args.config)
    if args.out_dir:
        train_cfg = dataclasses.replace(train_cfg, out_dir=args.out_dir)
    if args.total_steps:
        train_cfg = dataclasses.replace(train_cfg, total_steps=args.total_steps)
    if isinstance(model_cfg, UNetConfig):
        from nextframe.training.unet_trainer import UNetTrainer as Trainer
    else:
        from nextframe.training.trainer import Trainer
    trainer = Trainer(model_cfg, train_cfg)
    if trainer.step:
        print(f"resuming from step {trainer.step} ({trainer.ckpt_path})", file=sys.stderr)
    trainer.train()
    print(json.dumps({"step": trainer.step, "model": os.path.join(train_cfg.out_dir, "model_ema.safetensors")}))


def _load(model_path: str):
    from nextframe.training.checkpoint import load_model

    return load_model(model_path)


def cmd_rollout(args):
    from nextframe.evaluation.rollout import rollout_files

    if args.bundle is not None:  # what users run: the C++ runtime on a bundle (FP32 or quantized)
        if args.steps is not None or args.context_noise is not None:
            raise ValueError("rollout: --steps and --context-noise come from the bundle's manifest with --bundle")
        # rollout_files opens (and so checks) the bundle before any work
        rollout_files(args.episodes, args.out, context=args.context, seed=args.seed, video=not args.no_video,
                      model_name=os.path.basename(os.path.normpath(args.bundle)), bundle=args.bundle)
        return
    model = _load(args.model)
    d = sampler_defaults(args.model)
    sched = schedule_args(d, args.steps)
    rollout_files(args.episodes, args.out, model, context=args.context,
                  n_steps=sched["n_steps"] or len(sched["times"]) - 1, times=sched["times"],
                  context_noise=d["context_noise"] if args.context_noise is None else args.context_noise,
                  seed=args.seed, video=not args.no_video, model_name=args.model)


def cmd_demo(args):
    """Record a fresh episode (a seed never used in training), roll the model out open-loop, write the video.
    The default engine is the C++ runtime on the exported bundle; --engine torch runs the PyTorch loop."""
    from nextframe.data.episode import save_episode
    from nextframe.data.record import record_episode
    from nextframe.evaluation.rollout import rollout_episode, rollout_episode_runtime, write_video

    os.makedirs(args.out, exist_ok=True)
    model = _load(args.model)
    d = sampler_defaults(args.model)
    episode, policy = record_episode(model.cfg.game, args.frames + args.context - 1, args.seed, 0, "tracker")
    save_episode(os.path.join(args.out, "episode.npz"), episode)
    if args.engine == "cpp":
        if args.model == DEFAULT_MODEL and args.steps is None:
            bundle = default_bundle()
        else:
            from nextframe.export.bundle import export_bundle

            bundle = os.path.join(args.out, "bundle")
            export_bundle(model, bundle, context_noise=d["context_noise"], **schedule_args(d, args.steps))
        t0 = time.perf_counter()
        pred, metrics = rollout_episode_runtime(bundle, episode, args.context, args.seed)
        engine = "cpp-runtime (onnxruntime)"
    else:
        t0 = time.perf_counter()
        sched = schedule_args(d, args.steps)
        pred, metrics = rollout_episode(model, episode, args.context, sched["n_steps"] or len(sched["times"]) - 1,
                                        d["context_noise"], args.seed, times=sched["times"])
        engine = "pytorch-eager"
    wall = time.perf_counter() - t0
    video = os.path.join(args.out, "demo.mp4")
    write_video(video, episode.frames[args.context :], pred)
    summary = {"video": video, "frames": len(pred), "policy": policy, "engine": engine, "fps_model": metrics["model_fps"],
               "fps_end_to_end": round(len(pred) / wall, 1), "n_steps": metrics["n_steps"],
               "model": metrics["model"]["all"], "copy_baseline": metrics["copy_baseline"]["all"]}
    print(json.dumps(summary))


def cmd_export(args):
    from nextframe.export.bundle import export_bundle

    if args.precision is not None and not args.trt:
        raise ValueError("export: --precision needs --trt")
    if args.trt:
        from nextframe.export.tensorrt import cuda_device, import_tensorrt

        import_tensorrt()  # fail before the ONNX export when TensorRT (10 or 11) or the GPU is missing
        cuda_device(0)
    d = sampler_defaults(args.model)
    manifest = export_bundle(_load(args.model), args.out, **schedule_args(d, args.steps),
                             context_noise=d["context_noise"] if args.context_noise is None else args.context_noise,
                             force=args.force, aoti=tuple(args.aoti), frame_graph=args.frame_graph)
    result = {"bundle": args.out, "files": manifest["files"], "export_check": manifest.get("export_check")}
    if args.trt:
        from nextframe.export.tensorrt import build_trt_engines

        result["tensorrt"] = build_trt_engines(args.out, precision=args.precision or "fp16", workspace_gb=args.workspace_gb)
        with open(os.path.join(args.out, "manifest.json")) as f:
            result["files"] = json.load(f)["files"]
    print(json.dumps(result))


def cmd_distill(args):
    """Step distillation of a teacher model (distill/): resumes from out_dir; writes out_dir/student.safetensors."""
    import dataclasses

    from nextframe.distill.config import load_distill_config
    from nextframe.training.checkpoint import model_metadata

    cfg, expected_model = load_distill_config(args.config, method=args.method)
    if args.out_dir:
        cfg = dataclasses.replace(cfg, out_dir=args.out_dir)
    if args.total_steps:
        cfg = dataclasses.replace(cfg, total_steps=args.total_steps)
    if not os.path.isfile(args.teacher):
        raise FileNotFoundError(f"model: file not found ({args.teacher})")
    if json.loads(model_metadata(args.teacher).get("config", "{}")).get("arch") == "unet":
        from nextframe.distill.config import check_teacher
        from nextframe.distill.unet_trainer import UNetDistillTrainer

        trainer = UNetDistillTrainer(args.teacher, cfg)
        check_teacher(trainer.teacher.cfg, expected_model, args.teacher)
    else:
        from nextframe.distill.trainer import DistillTrainer

        trainer = DistillTrainer(args.teacher, cfg, expected_model)
    if trainer.step:
        print(f"resuming from step {trainer.step} ({trainer.state_path})", file=sys.stderr)
    trainer.train()
    print(json.dumps({"step": trainer.step, "method": cfg.method, "student": trainer.student_path,
                      "default_steps": cfg.student_steps}))


def cmd_quantize(args):
    """An INT8 copy of a bundle (quant/): static QDQ, calibrated on the runtime's own graph inputs."""
    from nextframe import _core
    from nextframe.data.episode import check_episode_fits, load_episode
    from nextframe.data.record import record_episode
    from nextframe.quant.bundle import quantize_bundle

    bundle = _core.Bundle.open(args.bundle)  # a bad bundle is refused before any work
    if args.calib:
        episodes = [load_episode(p) for p in args.calib]
        names = list(args.calib)
    else:  # fresh episodes of the training policy mix, seeds used nowhere else
        episodes = [record_episode(bundle.game, 400, 6000 + i, 0)[0] for i in range(4)]
        names = [f"recorded: {bundle.game} seeds 6000-6003, 400 steps"]
    for ep, name in zip(episodes, args.calib or names * len(episodes)):
        check_episode_fits(name, ep.game, ep.frameskip, ep.actions, bundle.game, bundle.n_actions, "bundle")
    m = quantize_bundle(args.bundle, args.out, episodes, method=args.method, precision=args.precision,
                        n_windows=args.windows, frames_per_window=args.frames, seed=args.seed, calib_names=names,
                        groups=args.groups, backend=args.backend, split=args.split, keep_float=args.keep_float,
                        calibration=args.calibration, attention=args.attention)
    print(json.dumps({"bundle": args.out, "quantization": m["quantization"]}))


def default_bundle(aoti: tuple[str, ...] = (), frame_graph: bool = False) -> str:
    """The shipped model exported once into a per-user cache, keyed by the model file's sha256 and the exporter's
    graph revision (a newer exporter's graphs replace an older cache); aoti: a copy with AOTInductor packages for
    these devices ("cpu", "cuda"; keyed by the torch that compiled them) as well; frame_graph: a copy with the frame
    graph."""
    from nextframe.export.bundle import export_bundle, sha256_file
    from nextframe.export.onnx import GRAPH_REVISION

    key = f"{sha256_file(DEFAULT_MODEL)[:16]}_r{GRAPH_REVISION}"
    if aoti:
        import torch

        key += f"_aoti-{'-'.join(aoti)}-torch{torch.__version__}"
    if frame_graph:
        key += "_frame"
    root = os.environ.get("NEXTFRAME_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "nextframe"))
    path = os.path.join(root, f"default_bundle_{key}")
    if not os.path.isfile(os.path.join(path, "manifest.json")):
        d = sampler_defaults(DEFAULT_MODEL)
        print(f"exporting the default model to {path} (once)", file=sys.stderr)
        export_bundle(_load(DEFAULT_MODEL), path, context_noise=d["context_noise"], **schedule_args(d, None),
                      aoti=tuple(aoti), frame_graph=frame_graph)
    return path


def default_ar_bundle() -> str:
    """The shipped AR image model (and its student, when shipped) exported once into the per-user cache, keyed by the
    files' sha256 and the exporter's graph revision."""
    from nextframe.export.ar_bundle import GRAPH_REVISION, export_from_files
    from nextframe.export.bundle import sha256_file

    student = DEFAULT_AR_STUDENT if os.path.isfile(DEFAULT_AR_STUDENT) else None
    key = sha256_file(DEFAULT_AR_MODEL)[:12] + (f"_{sha256_file(student)[:12]}" if student else "")
    root = os.environ.get("NEXTFRAME_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "nextframe"))
    path = os.path.join(root, f"default_ar_bundle_{key}_r{GRAPH_REVISION}")
    if not os.path.isfile(os.path.join(path, "manifest.json")):
        print(f"exporting the default AR image model to {path} (once)", file=sys.stderr)
        export_from_files(DEFAULT_AR_MODEL, path, student)
    return path


def cmd_generate(args):
    """Images of one game from an AR image bundle through the C++ masked-AR loop, as a PNG grid."""
    from nextframe.runtime.image_session import ImageSession
    from nextframe.runtime.png import grid, write_png

    if os.path.lexists(args.out) and not args.force:
        raise ValueError(f"generate: {args.out} exists; refusing to overwrite it (choose another --out, or --force)")
    if not args.out.lower().endswith(".png"):
        raise ValueError(f"generate: --out must name a .png file (got {args.out})")
    bundle = args.bundle or default_ar_bundle()
    with ImageSession(bundle, backend=args.backend, threads=args.threads, batch=min(args.batch, args.n)) as s:
        t0 = time.perf_counter()
        images = s.generate(args.cls, n=args.n, seed=args.seed, schedule=args.schedule, mode=args.mode)
        wall = time.perf_counter() - t0
        write_png(args.out, grid(images, scale=args.scale))
        schedule = args.schedule or s.bundle.default_schedule
        print(json.dumps({"out": args.out, "class": args.cls, "n": args.n, "mode": args.mode,
                          "schedule": schedule if args.mode == "ar" else None, "backend": s.backend,
                          "seconds": round(wall, 3), "images_per_s": round(args.n / wall, 2), **s.last_counters}))


def add_bench_arguments(ap: argparse.ArgumentParser) -> None:
    """Shared by `nextframe bench` and benchmarks/bench_frame_loop.py (kept here: no heavy imports)."""
    ap.add_argument("--model", default=DEFAULT_MODEL, type=model_path,
                    help="the PyTorch model of the bundle (for the torch loops): a file or a shipped model's name")
    ap.add_argument("--frames", type=positive_int, default=200)
    ap.add_argument("--warmup", type=nonneg_int, default=10)
    ap.add_argument("--threads", type=int_in(1, 256), default=2)
    ap.add_argument("--seed", type=nonneg_int, default=0)
    ap.add_argument("--out", default=None, help="also write the JSON here")


# torch / torch-cuda: the eager PyTorch loop on the CPU / the GPU; ort-device / ort-cuda-device / trt-device: the device-resident loops over the frame graph
BENCH_BACKENDS = ("ort-cpu", "ort-cuda", "trt", "aoti", "aoti-cuda", "ort-device", "ort-cuda-device", "trt-device",
                  "torch", "torch-cuda")
TORCH_LOOPS = {"torch": "cpu", "torch-cuda": "cuda"}  # the eager PyTorch references: backend -> device


def bench_context(args, bundle):
    """Real context frames for a timing run and the actions that led to them: from --episode (checked against the
    bundle) or a freshly recorded episode start."""
    import numpy as np

    if args.episode:
        from nextframe.data.episode import check_episode_fits, load_episode

        episode = load_episode(args.episode)
        check_episode_fits(args.episode, episode.game, episode.frameskip, episode.actions, bundle.game, bundle.n_actions,
                           "bundle")
        if len(episode.frames) < 40:
            raise ValueError(f"bench: {args.episode} has {len(episode.frames)} frames (at least 40 needed)")
    else:
        from nextframe.data.record import record_episode

        episode, _ = record_episode(bundle.game, 40, 880001 + args.seed, 0, "tracker")  # real context frames
    lead = np.concatenate([[bundle.no_action], episode.actions])
    return episode.frames[30:], lead[30:]


def bench_emit(args, out: dict) -> bool:
    """Write --out, print --json; True when the caller should still print its table."""
    if args.out:
        from nextframe.benchmarks.result_file import write_result

        write_result(args.out, out)
    if args.json:
        print(json.dumps(out))
        return False
    print(f"device: {out['device'].get('cpu')}, {args.threads} threads, {out['timing']}")
    return True


def bench_backends(text: str) -> tuple[str, ...]:
    """--backend: a comma-separated list of C++ runtime backends, or all."""
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if names == ("all",):
        return names
    bad = [n for n in names if n not in BENCH_BACKENDS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown backend {', '.join(bad) or repr(text)} (expected a comma-separated "
                                         f"list of {', '.join(BENCH_BACKENDS)}, or all)")
    return names


def runnable_backends(bundle) -> dict[str, str]:
    """backend -> "" where it can run this bundle here, or -> why not (one line)."""
    from nextframe import _core
    from nextframe.runtime.session import find_ort_lib

    with open(os.path.join(bundle.dir, "manifest.json")) as f:
        manifest = json.load(f)  # already validated by Bundle.open
    out = {"ort-cpu": ""}
    try:
        cuda = "CUDAExecutionProvider" in _core.ort_library_info(find_ort_lib())["providers"]
    except RuntimeError as e:
        cuda = False
        out["ort-cpu"] = str(e)
    out["ort-cuda"] = "" if cuda else "the loaded ONNX Runtime has no CUDA provider (onnxruntime-gpu)"
    frame_graph = "" if bundle.has_frame_graph else "the bundle has no frame graph (nextframe export --frame-graph)"
    out["ort-device"] = out["ort-cpu"] or frame_graph
    out["ort-cuda-device"] = out["ort-cuda"] or frame_graph
    frame_engine = any(e.get("graph") == "frame" for e in manifest.get("tensorrt", {}).get("engines", []))
    out["trt-device"] = ("not built with TensorRT" if not _core.has_tensorrt() else frame_graph or
                         ("" if frame_engine else "the bundle has no TensorRT engine of the frame graph"))
    out["trt"] = ("" if _core.has_tensorrt() and manifest.get("tensorrt") else
                  "not built with TensorRT" if not _core.has_tensorrt() else "the bundle has no TensorRT engine")
    packages = {p["device"] for p in manifest.get("aoti", {}).get("packages", [])}
    for be, device in (("aoti", "cpu"), ("aoti-cuda", "cuda")):
        out[be] = (_core.aoti_unavailable_reason() if not _core.aoti_available() else
                   "" if device in packages else f"the bundle has no AOTInductor package for {device}")
    try:
        import torch

        out["torch"] = ""
        out["torch-cuda"] = "" if torch.cuda.is_available() else "torch sees no CUDA device"
    except ImportError:
        out["torch"] = out["torch-cuda"] = "torch is not installed (the [train] extra)"
    return out


def _aoti_devices(backends) -> tuple[str, ...]:
    """The devices the default bundle needs AOTInductor packages for (a CUDA one only where torch sees a GPU to compile
    it on; elsewhere aoti-cuda is reported as not runnable)."""
    devices = ("cpu",) if "aoti" in backends else ()
    if "aoti-cuda" in backends:
        import torch

        devices += ("cuda",) if torch.cuda.is_available() else ()
    return devices


def cmd_bench_backends(args):
    """One bundle on several C++ runtime backends, interleaved in rounds, one JSON object."""
    from nextframe import _core
    from nextframe.benchmarks.bundle_timing import ROUND_FRAMES, time_bundles, torch_loop
    from nextframe.benchmarks.device_info import cpu_info, gpu_info, is_gpu_backend, runtime_versions, versions

    if len(args.bundle or []) > 1:
        raise ValueError("bench: --backend times one bundle on several backends (got several bundles)")
    wanted = BENCH_BACKENDS if args.backend == ("all",) else args.backend
    path = args.bundle[0] if args.bundle else default_bundle(aoti=_aoti_devices(wanted),
                                                             frame_graph=any(b.endswith("-device") for b in wanted))
    bundle = _core.Bundle.open(path)
    can = runnable_backends(bundle)
    skipped = {b: can[b] for b in wanted if can[b]}
    if args.backend != ("all",) and skipped:
        b, why = next(iter(skipped.items()))
        raise ValueError(f"bench: backend {b} cannot run here: {why}")
    run = [b for b in wanted if not can[b]]
    cpp = [b for b in run if b not in TORCH_LOOPS]
    if not cpp:
        raise ValueError("bench: --backend torch / torch-cuda are the reference loops; name a C++ runtime backend "
                         "beside them")
    loops = {b: torch_loop(args.model, path, args.threads, args.seed, TORCH_LOOPS[b]) for b in run if b in TORCH_LOOPS}
    frames, lead = bench_context(args, bundle)
    rows = time_bundles({b: (path, b) for b in cpp}, frames, lead, args.frames, args.threads, args.seed, loops=loops)
    try:
        ver = versions()
    except ImportError:  # the runtime-only install has no torch
        ver = {}
    frame = bundle.frame
    model = {"arch": "dit" if bundle.kv_cache["n_layers"] > 0 else "unet",
             "resolution": [frame["height"], frame["width"]], "n_steps": bundle.sampler["n_steps"]}
    ver.update(runtime_versions())
    # the GPU beside the CPU where a backend ran on it (compare.py labels each row by where its backend runs)
    gpu = gpu_info() if any(is_gpu_backend(b) for b in cpp) else None
    out = {"device": cpu_info(), **({"gpu": gpu} if gpu else {}), "versions": ver, "threads": args.threads,
           "n_frames": args.frames, "bundle": path, "model": model,
           "timing": f"C++ runtime, one bundle on each backend, interleaved in rounds of {ROUND_FRAMES} frames",
           "backends": rows, "fps_ratio_vs_first": {b: round(r["fps"] / rows[cpp[0]]["fps"], 3) for b, r in rows.items()},
           "skipped": skipped}
    if not bench_emit(args, out):
        return
    print(f"{'backend':<12}{'fps':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'x first':>9}")
    for b, r in rows.items():
        print(f"{b:<12}{r['fps']:>8g}{r['latency_p50_ms']:>9.2f}{r['latency_p90_ms']:>9.2f}{r['latency_p99_ms']:>9.2f}"
              f"{out['fps_ratio_vs_first'][b]:>9.2f}")
    for b, why in skipped.items():
        print(f"{b:<12}skipped: {why}")


def cmd_bench_bundles(args):
    """Several bundles (e.g. FP32 and its INT8 copies) in the C++ runtime, interleaved, one JSON object."""
    from nextframe import _core
    from nextframe.benchmarks.bundle_timing import ROUND_FRAMES, time_bundles
    from nextframe.benchmarks.device_info import cpu_info

    names: dict[str, str] = {}
    opened = [_core.Bundle.open(path) for path in args.bundle]  # every bundle is checked before any timing
    for path in args.bundle:
        name = os.path.basename(os.path.normpath(path))
        names[name if name not in names else path] = path
    games = {b.game for b in opened}
    if len(games) > 1:
        raise ValueError(f"bench: the bundles are of different games ({', '.join(sorted(games))})")
    frames, lead = bench_context(args, opened[0])
    rows = time_bundles(names, frames, lead, args.frames, args.threads, args.seed)
    first = next(iter(rows))
    out = {"device": cpu_info(), "threads": args.threads, "n_frames": args.frames,
           "timing": f"C++ runtime, ORT CPU, sessions interleaved in rounds of {ROUND_FRAMES} frames",
           "bundles": {n: {"path": names[n], **r} for n, r in rows.items()},
           "fps_ratio_vs_first": {n: round(r["fps"] / rows[first]["fps"], 3) for n, r in rows.items()}}
    if not bench_emit(args, out):
        return
    print(f"{'bundle':<28}{'precision':>10}{'steps':>6}{'fps':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'x first':>9}")
    for n, r in out["bundles"].items():
        print(f"{n:<28}{r['precision']:>10}{r['n_steps']:>6}{r['fps']:>8g}{r['latency_p50_ms']:>9.2f}"
              f"{r['latency_p90_ms']:>9.2f}{r['latency_p99_ms']:>9.2f}{out['fps_ratio_vs_first'][n]:>9.2f}")


def cmd_bench(args):
    bundles = args.bundle or []
    if args.backend:
        return cmd_bench_backends(args)
    if len(bundles) > 1 or (bundles and args.episode):
        return cmd_bench_bundles(args)
    from nextframe.benchmarks import bench_frame_loop

    args.bundle = bundles[0] if bundles else None
    out = bench_frame_loop.run(args)
    if args.json:
        print(json.dumps(out))
        return
    loops = out["loops"]
    print(f"device: {out['device'].get('cpu')} ({out['device'].get('logical_cores')} logical cores), "
          f"{out['n_steps']} steps/frame, {out['resolution'][0]}x{out['resolution'][1]}, {out['threads']} threads")
    print(f"{'loop':<24}{'fps':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    for name in ("cpp_runtime", "python_ort_loop", "torch_eager_cached", "torch_eager_no_cache"):
        if name not in loops:  # frame-stack models have no cache, so no no-cache loop
            continue
        r = loops[name]
        print(f"{name:<24}{r['fps']:>8g}{r['latency_p50_ms']:>9.2f}{r['latency_p90_ms']:>9.2f}{r['latency_p99_ms']:>9.2f}")
    extra = ""
    if out["native_decode_ms"] is not None:
        extra += f"{out['fps_with_decode']} FPS with native decode; "
    if out["no_cache_vs_cached_latency_at_64_frames"] is not None:
        extra += f"no-cache/cached latency at 64 frames: {out['no_cache_vs_cached_latency_at_64_frames']}x; "
    print(f"C++ vs PyTorch eager: {out['speedup_cpp_vs_torch_eager']}x; runtime overhead "
          f"{100 * out['cpp_runtime_overhead_fraction']:.1f}% of frame time; {extra}"
          f"parity NMSE {out['parity_cpp_vs_torch_max_nmse']:.2g}")


def cmd_play(args):
    from nextframe.runtime.play import play

    if args.frames is not None and args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    script = None
    if args.headless:
        import numpy as np

        rng = np.random.default_rng(args.seed)
        plan = np.repeat(rng.integers(0, 4, 1000), 6)
        script = lambda i: int(plan[i % len(plan)])  # noqa: E731
    result = play(args.bundle or default_bundle(), scale=args.scale, record=args.record, max_frames=args.frames,
                  seed=args.seed, script=script, threads=args.threads)
    print(json.dumps(result))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nextframe", description="Action-conditioned next-frame world models.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("record", help="record ALE episodes (episode format, docs/formats.md)")
    r.add_argument("--game", default="Breakout")
    r.add_argument("--episodes", type=positive_int, default=10)
    r.add_argument("--steps", type=positive_int, default=1000, help="steps per episode (fewer if the game ends)")
    r.add_argument("--out", required=True)
    r.add_argument("--seed", type=nonneg_int, default=0)
    r.add_argument("--policy", default=None, help="fix the policy (default: a mix chosen per episode from the seed)")
    r.set_defaults(func=cmd_record)

    t = sub.add_parser("train", help="train a world model from a JSON config (resumes from out_dir)")
    t.add_argument("config")
    t.add_argument("--out-dir", default=None)
    t.add_argument("--total-steps", type=positive_int, default=None)
    t.set_defaults(func=cmd_train)

    o = sub.add_parser("rollout", help="open-loop rollout of episodes: predictions, videos, metrics (JSON lines)")
    o.add_argument("episodes", nargs="+")
    o.add_argument("--out", required=True)
    o.add_argument("--model", default=DEFAULT_MODEL, type=model_path,
                   help=f"a model file or a shipped model: {', '.join(SHIPPED_MODELS)}")
    o.add_argument("--bundle", default=None,
                   help="run this bundle (FP32 or quantized) through the C++ runtime instead of the PyTorch model")
    o.add_argument("--context", type=positive_int, default=4)
    o.add_argument("--steps", type=positive_int, default=None, help="denoising steps per frame (default: the model's)")
    o.add_argument("--context-noise", type=unit_float, default=None)
    o.add_argument("--seed", type=nonneg_int, default=0)
    o.add_argument("--no-video", action="store_true")
    o.set_defaults(func=cmd_rollout)

    e = sub.add_parser("export", help="export a model to a runtime bundle (manifest.json + ONNX, checksummed)")
    e.add_argument("model", nargs="?", default=DEFAULT_MODEL, type=model_path,
                   help=f"a model file or a shipped model: {', '.join(SHIPPED_MODELS)}")
    e.add_argument("--out", required=True)
    e.add_argument("--steps", type=positive_int, default=None, help="denoising steps per frame written to the bundle")
    e.add_argument("--force", action="store_true",
                   help="replace --out even when it is not a bundle nextframe wrote (default: refuse)")
    e.add_argument("--context-noise", type=unit_float, default=None)
    e.add_argument("--trt", action="store_true",
                   help="also build a TensorRT engine of the step graph for this GPU into the bundle (needs TensorRT 10 or 11)")
    e.add_argument("--precision", choices=("fp16", "bf16", "fp8", "int8", "fp32"), default=None,
                   help="TensorRT engine precision (default fp16: an fp16 copy of the graph; int8/fp8 need a quantized graph)")
    e.add_argument("--workspace-gb", type=float_in(0.01, 4096), default=4.0, help="TensorRT builder workspace limit in GiB")
    e.add_argument("--aoti", action="append", choices=("cpu", "cuda"), default=[],
                   help="also compile AOTInductor packages of the graphs for this device (repeatable), for backend "
                        "aoti / aoti-cuda")
    e.add_argument("--frame-graph", action="store_true",
                   help="also export the whole next-frame step as one graph, for the device-resident "
                        "loops (bench backends ort-device / ort-cuda-device, and trt-device with --trt)")
    e.set_defaults(func=cmd_export)

    pl = sub.add_parser("play", help="play the generated game in a window (C++ runtime; needs the [play] extra)")
    pl.add_argument("bundle", nargs="?", default=None, help="a bundle dir (default: the shipped model, exported once)")
    pl.add_argument("--scale", type=int_in(1, 16), default=3)
    pl.add_argument("--record", default=None, help="write what was shown to this .mp4")
    pl.add_argument("--frames", type=positive_int, default=None, help="stop after N frames")
    pl.add_argument("--headless", action="store_true", help="no window, scripted actions (needs --frames)")
    pl.add_argument("--seed", type=nonneg_int, default=0)
    pl.add_argument("--threads", type=int_in(1, 256), default=2,
                    help="ONNX Runtime threads")
    pl.set_defaults(func=cmd_play)

    b = sub.add_parser("bench", help="frame-loop latency side by side: C++ runtime, Python ORT loop, PyTorch with/without cache")
    b.add_argument("bundle", nargs="*", default=None,
                   help="a bundle dir (default: export --model to a temp dir); two or more: their C++ runtime "
                        "loops timed side by side, interleaved in rounds")
    b.add_argument("--json", action="store_true", help="print the result as one JSON object")
    b.add_argument("--episode", default=None,
                   help="context frames from this episode instead of a freshly recorded one; with it, even one bundle "
                        "is timed in the C++ runtime alone (no PyTorch loops: works on the runtime-only install)")
    b.add_argument("--backend", default=None, type=bench_backends,
                   help="C++ runtime backends to time side by side, comma-separated (ort-cpu, ort-cuda, trt, aoti, "
                        "aoti-cuda; ort-device, ort-cuda-device, trt-device: the device-resident loops over the frame graph; "
                        "torch, torch-cuda: the eager PyTorch loop of --model on the CPU / GPU beside them) or all (every one that can run here); the "
                        "default bundle is exported with the AOTInductor packages or frame graph they need")
    add_bench_arguments(b)
    b.set_defaults(func=cmd_bench)

    g = sub.add_parser("generate", help="images of a game from an AR image bundle (C++ masked-AR loop, DiSA or Distilled Decoding)")
    g.add_argument("bundle", nargs="?", default=None, help="an AR image bundle (default: the shipped model, exported once)")
    g.add_argument("--class", dest="cls", required=True, help="the game, e.g. Breakout")
    g.add_argument("--n", type=int_in(1, 4096), default=4)
    g.add_argument("--out", required=True, help="PNG file for the grid (never overwritten without --force)")
    g.add_argument("--seed", type=nonneg_int, default=0)
    g.add_argument("--schedule", default=None, help="a head schedule of the bundle (default: its default_schedule)")
    g.add_argument("--mode", choices=("ar", "dd1", "dd2"), default="ar",
                   help="ar: the masked-AR loop; dd1 / dd2: the Distilled Decoding student in one / two calls")
    g.add_argument("--backend", choices=("auto", "ort-cpu", "ort-cuda"), default="auto")
    g.add_argument("--threads", type=int_in(1, 256), default=2)
    g.add_argument("--batch", type=int_in(1, 4096), default=8)
    g.add_argument("--scale", type=int_in(1, 16), default=2, help="pixels per image pixel in the grid")
    g.add_argument("--force", action="store_true", help="overwrite --out")
    g.set_defaults(func=cmd_generate)

    d = sub.add_parser("demo", help="record a fresh episode and roll the default model out on it")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--model", default=DEFAULT_MODEL, type=model_path,
                   help=f"a model file or a shipped model: {', '.join(SHIPPED_MODELS)}")
    d.add_argument("--frames", type=positive_int, default=300)
    d.add_argument("--context", type=positive_int, default=4)
    d.add_argument("--steps", type=positive_int, default=None)
    d.add_argument("--seed", type=nonneg_int, default=777001)
    d.add_argument("--engine", choices=("cpp", "torch"), default="cpp")
    d.set_defaults(func=cmd_demo)

    q = sub.add_parser("quantize", help="an INT8/FP8 copy of a bundle (calibrated on the runtime's own inputs)")
    q.add_argument("bundle")
    q.add_argument("--out", required=True, help="the new bundle's directory (must not exist)")
    q.add_argument("--method", default="qdiff", help="calibration: naive (t = 1 only), qdiff (every step), ptq4dm (NDTC)")
    q.add_argument("--precision", default="int8", help="int8 or its other name w8a8 (both back ends), w4a8 (onnxruntime: 4-bit weights, int8 "
                   "activations in the matrix products; transformer bundles) or fp8 (modelopt)")
    q.add_argument("--backend", default="onnxruntime",
                   help="onnxruntime (QDQ U8S8, fastest in the C++ core on CPU) or modelopt (Q/DQ for TensorRT; "
                        "needs the modelopt extra)")
    q.add_argument("--calib", nargs="*", default=None, help="episode files to calibrate on (default: 4 fresh episodes)")
    q.add_argument("--groups", type=int_in(1, 64), default=None,
                   help="activation scales per group of denoising steps: one graph per group, picked per step "
                        "(default: one per step up to 4 for qdiff/ptq4dm on onnxruntime int8, else 1)")
    q.add_argument("--split", action=argparse.BooleanOptionalAction, default=None,
                   help="split quantization of convolutions over concatenations (default: on for qdiff where "
                        "convolutions are quantized: a U-Net's, not a transformer's)")
    q.add_argument("--keep-float", action="append", default=[], metavar="FRAGMENT",
                   help="also keep products whose node name contains FRAGMENT in float (repeatable; e.g. conv_in)")
    q.add_argument("--calibration", choices=("auto", "minmax", "percentile"), default="auto",
                   help="activation ranges: min/max seen, or the 99.999th percentile (onnxruntime int8); auto: "
                        "percentile for a frame-stack U-Net, min/max for a transformer")
    q.add_argument("--attention", choices=("auto", "int8", "float"), default="auto",
                   help="a transformer's attention products (over the cached keys and values) in int8 or float "
                        "(onnxruntime int8); auto: int8 from 128 tokens a frame up, where its kernels win")
    q.add_argument("--windows", type=positive_int, default=16, help="context windows rolled out for calibration")
    q.add_argument("--frames", type=positive_int, default=6, help="frames generated per window")
    q.add_argument("--seed", type=nonneg_int, default=0)
    q.set_defaults(func=cmd_quantize)

    di = sub.add_parser("distill", help="distill a teacher into a few-step student (resumes from out_dir)")
    # no argparse choices: an unknown method is reported by the config loader as one line
    di.add_argument("--method", required=True, help="cd (consistency distillation), fdistill (one-step f-distill; "
                    "transformer teachers) or trajectory (one/two-step trajectory distillation; frame-stack teachers)")
    di.add_argument("--teacher", default=DEFAULT_MODEL, type=model_path)
    di.add_argument("--config", required=True)
    di.add_argument("--out-dir", default=None)
    di.add_argument("--total-steps", type=positive_int, default=None)
    di.set_defaults(func=cmd_distill)
    return p


def _terminate(signum, frame):
    # SIGTERM as an exception: every writer's cleanup (temporary names, half-built bundles) runs, as on Ctrl-C
    raise SystemExit(128 + signum)


# optional dependencies by top-level module -> the extra that installs them (pyproject.toml)
EXTRAS = {"torch": "train", "ale_py": "train", "gymnasium": "train", "safetensors": "train", "onnx": "train",
          "tqdm": "train", "imageio": "video", "imageio_ffmpeg": "video", "pygame": "play", "modelopt": "quant"}


def user_error(e: BaseException) -> str | None:
    """The one line for an error the user can fix (bad file, bad setting, missing optional package, a declared
    size beyond memory), or None for a bug, whose traceback must stay visible."""
    if isinstance(e, ModuleNotFoundError):
        top = (e.name or "").split(".")[0]
        if top in EXTRAS:
            return f"this command needs {top}, which is not installed (pip install 'nextframe[{EXTRAS[top]}]')"
        return None
    if isinstance(e, OSError):  # missing, unreadable or unwritable files, a full disk, a path that is a folder
        if e.strerror:
            return f"{e.strerror} ({e.filename})" if e.filename else e.strerror
        return str(e) or type(e).__name__
    if isinstance(e, MemoryError):
        return f"out of memory ({e or 'an input declares more data than this machine can hold'})"
    if isinstance(e, (ValueError, RuntimeError)) or type(e).__name__ == "SafetensorError":
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user-fixable error (one line on stderr), 130 interrupted (Ctrl-C)."""
    import signal
    import threading

    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("nextframe: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - sorted below: user errors print one line, bugs re-raise
        line = user_error(e)
        if line is None:
            raise
        print(f"nextframe: {line}", file=sys.stderr)
        return 2
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
