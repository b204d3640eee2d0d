"""The whole teacher pipeline in one call of a device machine (an H200 lent for minutes, nothing installable):
record Breakout episodes on every CPU core, train the frame-stack teacher (and an ablation beside it) on the
GPU, distil two students from the teacher (trajectory and consistency distillation), score everything on the
held-out mid-play clips, and write the models and one results JSON to --out.

    python tools/device_pipeline.py --out $OUT                 # the device run (CUDA, about 9.5 minutes)
    python tools/device_pipeline.py --out /tmp/smoke --smoke   # the same steps, tiny, on this CPU

Every phase has a deadline measured from the start, and each writes what it has before the next begins, so a
run stopped at its wall-clock limit still returns the models finished by then. The package is used from the
source tree (no install): the script links the top-level folders into a temporary `nextframe` package.
Runs as the device's python3 (3.12, torch 2.11) as well as this venv's (3.11, torch 2.13).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_ROOT = "/tmp/nf_pkg"
SHIPPED_MODEL = os.path.join(ROOT, "nextframe", "default_model", "breakout.safetensors")
SUBPACKAGES = ("models", "data", "training", "distill", "evaluation", "export", "runtime", "quant", "benchmarks")


def link_package() -> None:
    """/tmp/nf_pkg/nextframe: the repo's folders as the nextframe package, without building the C++ core."""
    pkg = os.path.join(PKG_ROOT, "nextframe")
    if not os.path.isdir(pkg):
        os.makedirs(pkg)
        for name in os.listdir(os.path.join(ROOT, "nextframe")):
            if name.endswith(".py"):
                shutil.copy(os.path.join(ROOT, "nextframe", name), pkg)
        for sub in SUBPACKAGES:
            os.symlink(os.path.join(ROOT, sub), os.path.join(pkg, sub))
    if PKG_ROOT not in sys.path:
        sys.path.insert(0, PKG_ROOT)


# ---- configuration ------------------------------------------------------------------------------------------

def _teacher_config() -> tuple[dict, dict]:
    """The CPU teacher's recipe (configs/breakout_unet.json), scaled for a GPU: batch 128 at a higher lr,
    from scratch, the EMA over more steps, cosine decay over the time budget."""
    with open(os.path.join(ROOT, "configs", "breakout_unet.json")) as f:
        c = json.load(f)
    train = {k: v for k, v in c["train"].items() if k not in ("data", "out_dir", "init_from", "device", "cache_dir")}
    train.update({"batch_size": 128, "lr": 3e-4, "warmup_steps": 300, "total_steps": 1_000_000, "min_lr_ratio": 0.1,
                  "ema_decay": 0.9995, "own_context_after": 500, "own_context_passes": 6, "log_every": 100,
                  "ckpt_every": 2000, "cache_dir": ""})
    if "event_rows" in train:
        train["event_rows"] = [list(r) for r in train["event_rows"]]
    return c["model"], train


TEACHER_MODEL, TEACHER_TRAIN = _teacher_config()
# fold 2 instead of 4: a 2x2 cell has 4 ball sub-positions to learn instead of 16 (pixel-level equivariance);
# widths keep the first level's cost (112x80 x 16 channels ~ 56x40 x 32)
ABLATIONS = {"fold2": {"model": {"fold": 2, "widths": [16, 32, 64, 128, 128]}, "train": {}}}
DISTILL = {"batch_size": 64, "lr": 5e-5, "warmup_steps": 100, "total_steps": 1_000_000, "ema_decay": 0.999,
           "context_noise_max": 0.1, "own_context_prob": 0.25, "own_context_passes": 4, "motion_weight": 9.0,
           "bf16": True, "teacher_steps": 8, "mid_time": 0.5, "cd_intervals": 16, "cd_target_decay": 0.95,
           "log_every": 50, "ckpt_every": 1000, "eval_steps": [2, 1]}
STUDENTS = {"trajectory": {"method": "trajectory", "student_steps": 2}, "cd": {"method": "cd", "student_steps": 2}}
# (model, steps, times or None) scored on the clips
EVALS = [("teacher", 1), ("teacher", 2), ("teacher", 4), ("teacher", 8), ("teacher", 16), ("trajectory", 1), ("trajectory", 2),
         ("cd", 1), ("cd", 2), ("fold2", 1), ("fold2", 4)]


def _finetune_config() -> tuple[dict, dict]:
    """Mode finetune: phase 8's recipe (turn-weighted bounces, own-context rollouts, event rows) continued from the
    shipped default's weights (--init: another model file of the same config) on freshly recorded episodes, at a
    GPU's batch: 8x phase 8's batch at 1.5x its learning rate, cosine-annealed over the time budget. Eager (no
    torch.compile: a compile failure on the device's torch would cost the whole run)."""
    with open(os.path.join(ROOT, "configs", "breakout_unet_phase8.json")) as f:
        c = json.load(f)
    train = {k: v for k, v in c["train"].items() if k not in ("data", "out_dir", "device", "cache_dir", "comment")}
    train.update({"batch_size": 128, "lr": 1.5e-4, "warmup_steps": 200, "total_steps": 1_000_000, "min_lr_ratio": 0.05,
                  "ema_decay": 0.999, "torch_compile": False, "log_every": 100, "ckpt_every": 1000, "cache_dir": "",
                  "time_budget_s": 0.0, "init_from": SHIPPED_MODEL})
    train["event_rows"] = [list(r) for r in train.get("event_rows", [])]
    return c["model"], train


FT_MODEL, FT_TRAIN = _finetune_config()
# side by side from the same weights: the recipe as is, and longer own-context rollouts (the open-loop ball is lost
# over frames 11-30 by compounded one-frame errors: more of its own frames as context, up to 8 back)
FT_RUNS = {"ft_turn": {}, "ft_long_own": {"own_context_prob": 0.35, "own_context_passes": 8}}
# every model at the shipped sampler (two steps at noise levels 1 and 0.15), several noise seeds
FT_TIMES = [1.0, 0.15, 0.0]
FT_EVAL_SEEDS = 4


def smoke_overrides(args):
    """Tiny sizes so the whole pipeline runs on a 2-core CPU in a few minutes."""
    TEACHER_MODEL.update({"widths": [16, 16, 32, 32], "cond_dim": 32})
    TEACHER_TRAIN.update({"batch_size": 4, "log_every": 5, "ckpt_every": 20, "warmup_steps": 5, "own_context_passes": 2})
    ABLATIONS["fold2"]["model"] = {"fold": 2, "widths": [16, 16, 16, 32, 32]}
    FT_TRAIN.update({"batch_size": 4, "log_every": 5, "ckpt_every": 20, "warmup_steps": 5, "own_context_passes": 2})
    FT_RUNS["ft_long_own"]["own_context_passes"] = 3
    DISTILL.update({"batch_size": 2, "log_every": 5, "ckpt_every": 20, "teacher_steps": 2, "cd_intervals": 4,
                    "own_context_passes": 2})


# ---- phases ---------------------------------------------------------------------------------------------------

def _record_worker(job):
    """One episode -> frames.npy / actions.npy in the data dir; returns (index, n_frames, policy)."""
    link_package()
    from nextframe.data.record import record_episode

    index, seed, n_steps, out_dir = job
    global _ENV
    if "_ENV" not in globals():
        from nextframe.data.record import make_env

        _ENV = make_env("Breakout")
    ep, policy = record_episode("Breakout", n_steps, seed, index, None, _ENV)
    import numpy as np

    for key, arr in (("frames", ep.frames), ("actions", ep.actions)):
        # temp name + rename: the pool is terminated mid-write once enough frames are in
        path = os.path.join(out_dir, f"ep{index:05d}_{key}.npy")
        with open(path + ".tmp", "wb") as f:
            np.save(f, arr)
        os.replace(path + ".tmp", path)
    return index, len(ep.frames), policy


def _clips_worker(job):
    link_package()
    import numpy as np

    from nextframe.evaluation import midplay

    path, horizon, n_per_episode, n_sources = job
    clips = midplay.record_clips(n_per_episode=n_per_episode, horizon=horizon, sources=midplay.CLIP_SOURCES[:n_sources])
    np.savez(path, frames=np.stack([c.frames for c in clips]), lead_actions=np.stack([c.lead_actions for c in clips]),
             sources=np.array([c.source for c in clips]))
    return len(clips), midplay.clips_digest(clips)


def record(args, data_dir: str, clips_path: str, deadline: float) -> dict:
    import multiprocessing as mp

    os.makedirs(data_dir, exist_ok=True)
    n_proc = max(1, (os.cpu_count() or 2) - 1)
    ctx = mp.get_context("spawn")
    frames, episodes, policies = 0, 0, {}
    with ctx.Pool(n_proc) as pool:
        clips = pool.apply_async(_clips_worker, ((clips_path, args.horizon, args.clips_per_episode, args.clip_sources),))
        jobs = ((i, args.data_seed, args.episode_steps, data_dir) for i in range(100_000))
        for _, n, policy in pool.imap_unordered(_record_worker, jobs):
            frames += n
            episodes += 1
            policies[policy] = policies.get(policy, 0) + 1
            if frames >= args.frames or time.time() > deadline:
                break
        try:  # no clips is a lost score, not a lost run
            n_clips, digest = clips.get(timeout=max(1.0, deadline + 60 - time.time()))
        except Exception as e:  # noqa: BLE001
            n_clips, digest = 0, f"clips failed: {e!r}"
        pool.terminate()
    # episodes finished after the break may have been written too; the training jobs read every pair on disk
    return {"episodes_counted": episodes, "frames_counted": frames, "policies": policies, "n_clips": n_clips,
            "clips_digest": digest}


def load_store(data_dir: str, n_actions: int, device):
    import glob

    import numpy as np

    from nextframe.data.frame_store import FrameStore

    eps = []
    for fp in sorted(glob.glob(os.path.join(data_dir, "ep*_frames.npy"))):
        ap = fp.replace("_frames.npy", "_actions.npy")
        if os.path.isfile(ap):
            eps.append((np.load(fp, mmap_mode="r"), np.load(ap)))
    return FrameStore.from_episodes(eps, n_actions, device), len(eps)


def fast_gpu() -> None:
    import torch

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def job_train(args) -> None:
    link_package()
    fast_gpu()
    import dataclasses

    from nextframe.models.unet_config import UNetConfig
    from nextframe.training.config import TrainConfig
    from nextframe.training.unet_trainer import UNetTrainer

    spec = json.loads(args.spec)
    mcfg = UNetConfig.from_dict(spec["model"])
    tcfg = TrainConfig(**{**spec["train"], "out_dir": args.job_dir, "device": args.device, "data": ()})
    t0 = time.time()
    store, n_eps = load_store(args.data_dir, mcfg.n_actions, args.device)
    tcfg = dataclasses.replace(tcfg, time_budget_s=max(1.0, args.job_deadline - time.time()))
    trainer = UNetTrainer(mcfg, tcfg, progress=False, store=store)
    trainer.train()
    with open(os.path.join(args.job_dir, "summary.json"), "w") as f:
        json.dump({"steps": trainer.step, "train_s": round(trainer.elapsed_s, 1), "load_s": round(time.time() - t0 - trainer.elapsed_s, 1),
                   "frames": len(store), "episodes": n_eps,
                   "params": sum(p.numel() for p in trainer.model.parameters())}, f)


def job_distill(args) -> None:
    link_package()
    fast_gpu()
    import dataclasses

    from nextframe.distill.config import DistillConfig
    from nextframe.distill.unet_trainer import UNetDistillTrainer
    from nextframe.training.checkpoint import load_model

    spec = json.loads(args.spec)
    cfg = DistillConfig(**{**spec, "out_dir": args.job_dir, "device": args.device, "data": (),
                           "eval_steps": tuple(spec["eval_steps"])})
    teacher = load_model(args.teacher)
    store, _ = load_store(args.data_dir, teacher.cfg.n_actions, args.device)
    cfg = dataclasses.replace(cfg, time_budget_s=max(1.0, args.job_deadline - time.time()))
    trainer = UNetDistillTrainer(args.teacher, cfg, progress=False, store=store)
    trainer.train()
    with open(os.path.join(args.job_dir, "summary.json"), "w") as f:
        json.dump({"steps": trainer.step, "train_s": round(trainer.elapsed_s, 1)}, f)


def load_clips_and_copy(path: str):
    """The held-out clips written by the record phase, and copy-last-frame's scores on them (the results' start)."""
    import numpy as np

    from nextframe.evaluation import midplay

    d = np.load(path)
    clips = [midplay.Clip(f, a, str(s)) for f, a, s in zip(d["frames"], d["lead_actions"], d["sources"])]
    copy = midplay.evaluate(lambda cl: np.stack([np.broadcast_to(c.frames[3], c.frames[4:].shape) for c in cl]), clips, 4)
    return clips, {"copy_baseline": copy["copy_baseline"], "n_clips": len(clips)}


def save_scores(results: dict, path: str, device: str) -> None:
    """Scores so far to the results file (a run cut at its deadline keeps them); the scored model's GPU memory freed."""
    with open(path, "w") as f:
        json.dump(results, f)
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def job_eval(args) -> None:
    link_package()
    from nextframe.evaluation import midplay
    from nextframe.models.flow import flow_schedule
    from nextframe.training.checkpoint import load_model, model_metadata

    clips, results = load_clips_and_copy(args.clips)
    models = json.loads(args.spec)
    for name, steps in EVALS:
        path = models.get(name)
        if not path or not os.path.isfile(path):
            continue
        model = load_model(path).to(args.device)
        meta = model_metadata(path)
        times = None
        if "default_times" in meta and int(meta.get("default_steps", 0)) == steps:
            times = json.loads(meta["default_times"])
        t0 = time.time()
        r = midplay.evaluate(midplay.unet_predictor(model, n_steps=steps, times=times, batch=64), clips, 4, copy=False)
        r.update({"steps": steps, "times": times or flow_schedule(steps), "eval_s": round(time.time() - t0, 1)})
        results[f"{name}@{steps}"] = r
        print(f"eval {name}@{steps}: {json.dumps(r['model'])}", flush=True)
        del model
        save_scores(results, args.job_dir, args.device)  # job_dir is the results file here


def job_eval_finetune(args) -> None:
    """Mode finetune: the shipped default, the weights continued (where others) and the fine-tuned models, each at the
    shipped two-step sampler under FT_EVAL_SEEDS noise seeds (midplay.mean_over_seeds), on the same clips."""
    link_package()
    from nextframe.evaluation import midplay
    from nextframe.training.checkpoint import load_model

    clips, results = load_clips_and_copy(args.clips)
    results.update({"times": FT_TIMES, "seeds": FT_EVAL_SEEDS})
    for name, path in json.loads(args.spec).items():
        if not os.path.isfile(path):
            continue
        model = load_model(path).to(args.device)
        t0 = time.time()
        runs = [midplay.evaluate(midplay.unet_predictor(model, n_steps=2, times=FT_TIMES, seed=seed, batch=128), clips, 4,
                                 copy=False) for seed in range(FT_EVAL_SEEDS)]
        r = midplay.mean_over_seeds(runs)
        r["eval_s"] = round(time.time() - t0, 1)
        results[name] = r
        print(f"eval {name}: {json.dumps({h: v['ball_found'] for h, v in r['model'].items()})}", flush=True)
        del model
        save_scores(results, args.job_dir, args.device)  # job_dir is the results file here


def spawn(args, job: str, job_dir: str, deadline: float, spec: dict, extra=()) -> subprocess.Popen:
    os.makedirs(job_dir, exist_ok=True) if not job.startswith("eval") else None
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([PKG_ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, os.path.abspath(__file__), "--job", job, "--job-dir", job_dir, "--job-deadline", str(deadline),
           "--spec", json.dumps(spec), "--device", args.device, "--data-dir", args.data_dir, *extra]
    log = open(job_dir + ".log" if job.startswith("eval") else os.path.join(job_dir, "stdout.log"), "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait(procs: dict, hard_deadline: float) -> dict:
    codes = {}
    for name, p in procs.items():
        try:
            codes[name] = p.wait(timeout=max(1.0, hard_deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            codes[name] = "killed"
    return codes


def tail(path: str, n: int = 2000) -> str:
    try:
        with open(path) as f:
            return f.read()[-n:]
    except OSError:
        return ""


def read_jsonl(path: str) -> list:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def job_record(job_dir: str, exit_code, n_log: int) -> dict:
    """What a finished GPU job left: its exit, the last n_log lines of its log, its output's tail, its summary."""
    rec = {"exit": exit_code, "log": read_jsonl(os.path.join(job_dir, "log.jsonl"))[-n_log:],
           "stdout_tail": tail(os.path.join(job_dir, "stdout.log"))}
    try:
        with open(os.path.join(job_dir, "summary.json")) as f:
            rec["summary"] = json.load(f)
    except OSError:
        pass
    return rec


def device_name(device: str) -> dict:
    import platform

    info = {"python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        if device == "cuda":
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except Exception as e:  # noqa: BLE001 - a report, never a reason to stop the run
        info["torch_error"] = str(e)
    return info


def score(args, results: dict, save, job: str, end: float, models: dict, clips_path: str) -> None:
    """The scoring job (eval / eval_finetune) on the clips until `end`; its results (what it finished) into results."""
    eval_json = os.path.join(args.work, "eval.json")
    p = spawn(args, job, eval_json, end, models, ("--clips", clips_path))
    results["phases"]["eval_exit"] = wait({"eval": p}, end)["eval"]
    results["phases"]["eval_log_tail"] = tail(eval_json + ".log", 4000)
    try:
        with open(eval_json) as f:
            results["eval"] = json.load(f)
    except (OSError, ValueError):
        results["eval"] = {}
    save()
    print(json.dumps({"wall_s": results["wall_s"], "models": sorted(models), "evals": sorted(results["eval"])}))


def finetune(args, results: dict, save, t_start: float, clips_path: str) -> None:
    """Phases 2-3 of mode finetune: the FT_RUNS side by side on the GPU until --teacher-end-s, then the scores."""
    if args.init:
        FT_TRAIN["init_from"] = os.path.abspath(args.init)
    results.update({"finetune_model": FT_MODEL, "finetune_train": FT_TRAIN, "finetune_runs": FT_RUNS})
    for k in ("teacher_model", "teacher_train", "ablations", "distill", "students"):
        results.pop(k, None)
    deadline = t_start + args.teacher_end_s
    procs = {n: spawn(args, "train", os.path.join(args.work, n), deadline, {"model": FT_MODEL, "train": {**FT_TRAIN, **o}})
             for n, o in FT_RUNS.items()}
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write("".join(f"{p.pid}\n" for p in procs.values()))
    codes = wait(procs, deadline + 40)
    models = {"default": SHIPPED_MODEL, "init": FT_TRAIN["init_from"]}
    if os.path.abspath(models["init"]) == os.path.abspath(models["default"]):
        del models["init"]
    for n in FT_RUNS:
        d = os.path.join(args.work, n)
        results["phases"][f"train_{n}"] = job_record(d, codes[n], 300)
        if os.path.isfile(os.path.join(d, "model_ema.safetensors")):
            models[n] = os.path.join(args.out, f"{n}.safetensors")
            shutil.copy(os.path.join(d, "model_ema.safetensors"), models[n])
    save()
    end = t_start + args.total_s
    while args.wait_for and not os.path.exists(args.wait_for) and time.time() < end - 60:
        time.sleep(1.0)
    results["phases"]["eval_waited_s"] = round(time.time() - deadline, 1)
    score(args, results, save, "eval_finetune", end, models, clips_path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--total-s", type=float, default=560.0)
    ap.add_argument("--record-s", type=float, default=45.0)
    ap.add_argument("--teacher-end-s", type=float, default=370.0)
    ap.add_argument("--distill-end-s", type=float, default=500.0)
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--episode-steps", type=int, default=3000)
    ap.add_argument("--data-seed", type=int, default=100_000)
    ap.add_argument("--horizon", type=int, default=60)
    ap.add_argument("--clips-per-episode", type=int, default=3)
    ap.add_argument("--clip-sources", type=int, default=10)
    ap.add_argument("--work", default="/tmp/nf_work")
    ap.add_argument("--mode", choices=("scratch", "finetune"), default="scratch",
                    help="scratch: teacher + ablation from nothing, students, scores; finetune: the shipped default "
                         "(or --init) continued in two variants, scored beside it")
    ap.add_argument("--init", default=None, help="finetune: the weights to continue (default: the shipped default)")
    ap.add_argument("--wait-for", default=None,
                    help="finetune: hold the scoring (a GPU job) until this file exists (a benchmark sharing the GPU "
                         "is done) or the run's end minus a minute")
    ap.add_argument("--pid-file", default=None, help="write the training jobs' process ids here (one per line), so "
                                                     "a benchmark sharing the GPU can pause them while it times")
    ap.add_argument("--data-dir", default=None)
    # job mode (the script re-runs itself per GPU job)
    ap.add_argument("--job", default=None)
    ap.add_argument("--job-dir", default=None)
    ap.add_argument("--job-deadline", type=float, default=0.0)
    ap.add_argument("--spec", default="{}")
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--clips", default=None)
    args = ap.parse_args()
    if args.job:
        {"train": job_train, "distill": job_distill, "eval": job_eval, "eval_finetune": job_eval_finetune}[args.job](args)
        return

    t_start = time.time()
    link_package()
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        smoke_overrides(args)
    os.makedirs(args.out, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    shm = "/dev/shm"
    use_shm = os.path.isdir(shm) and shutil.disk_usage(shm).free > args.frames * 100_800 * 1.3
    args.data_dir = args.data_dir or os.path.join(shm if use_shm else args.work, "nf_data")
    shutil.rmtree(args.data_dir, ignore_errors=True)
    clips_path = os.path.join(args.work, "clips.npz")
    results = {"device": device_name(args.device), "args": vars(args), "teacher_model": TEACHER_MODEL,
               "teacher_train": TEACHER_TRAIN, "ablations": ABLATIONS, "distill": DISTILL, "students": STUDENTS,
               "phases": {}}
    out_json = os.path.join(args.out, "results.json")

    def save():
        results["wall_s"] = round(time.time() - t_start, 1)
        with open(out_json, "w") as f:
            json.dump(results, f, indent=1)

    # 1. data and held-out clips
    t0 = time.time()
    results["phases"]["record"] = record(args, args.data_dir, clips_path, t_start + args.record_s)
    results["phases"]["record"]["s"] = round(time.time() - t0, 1)
    save()

    if args.mode == "finetune":
        finetune(args, results, save, t_start, clips_path)
        return

    # 2. teacher and ablation, side by side on the GPU
    runs = {"teacher": {"model": TEACHER_MODEL, "train": TEACHER_TRAIN}}
    for name, a in ABLATIONS.items():
        runs[name] = {"model": {**TEACHER_MODEL, **a["model"]}, "train": {**TEACHER_TRAIN, **a["train"]}}
    deadline = t_start + args.teacher_end_s
    procs = {n: spawn(args, "train", os.path.join(args.work, n), deadline, spec) for n, spec in runs.items()}
    codes = wait(procs, deadline + 40)
    model_paths = {}
    for n in runs:
        d = os.path.join(args.work, n)
        results["phases"][f"train_{n}"] = job_record(d, codes[n], 400)
        if os.path.isfile(os.path.join(d, "model_ema.safetensors")):
            model_paths[n] = os.path.join(d, "model_ema.safetensors")
    if "teacher" in model_paths:
        shutil.copy(model_paths["teacher"], os.path.join(args.out, "teacher.safetensors"))
    save()

    # 3. students from the teacher
    if "teacher" in model_paths:
        deadline = t_start + args.distill_end_s
        procs = {n: spawn(args, "distill", os.path.join(args.work, f"distill_{n}"), deadline, {**DISTILL, **s},
                          ("--teacher", model_paths["teacher"])) for n, s in STUDENTS.items()}
        codes = wait(procs, deadline + 30)
        for n in STUDENTS:
            d = os.path.join(args.work, f"distill_{n}")
            results["phases"][f"distill_{n}"] = job_record(d, codes[n], 200)
            if os.path.isfile(os.path.join(d, "student.safetensors")):
                model_paths[n] = os.path.join(d, "student.safetensors")
                shutil.copy(model_paths[n], os.path.join(args.out, f"student_{n}.safetensors"))
        save()

    # 4. every model on the held-out clips
    score(args, results, save, "eval", t_start + args.total_s, model_paths, clips_path)


if __name__ == "__main__":
    main()
