"""Bad input against the CLI and the Python API, by class, with the outcome of each case: what the README's
reliability table reports.

Every case runs in this process on small fixtures built here (a tiny model, its bundle, a short episode): a CLI
case through `nextframe.cli.main` with stderr captured, an API case as a call. Outcomes:
- refused: exit status 2 whose last stderr line is one `nextframe: ...` / argparse `error:` line (CLI), or a
  ValueError / RuntimeError / FileNotFoundError with a one-line message (API), within 10 s;
- accepted: the bad input went through (exit 0, no error): a silent acceptance is a failure here;
- traceback: any other exception escaped; slow: longer than 10 s; damage: a user's file changed.
Then the seeded mutation fuzzer (tests/fuzz_harness.py, when run from a source tree) for `--fuzz-seconds`.

    python -m nextframe.benchmarks.bad_inputs [--fuzz-seconds 120] [--out results/bad_inputs.json]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

LIMIT_S = 10.0
API_ERRORS = (ValueError, RuntimeError, FileNotFoundError)


# ---- fixtures ---------------------------------------------------------------------------------------------

def _tiny_model(root: Path) -> Path:
    import torch

    from nextframe.models.config import ModelConfig
    from nextframe.models.dit import NextFrameDiT
    from nextframe.training.checkpoint import save_model

    torch.manual_seed(0)
    model = NextFrameDiT(ModelConfig(height=16, width=16, patch=4, dim=32, depth=2, heads=2, context=3))
    path = root / "model.safetensors"
    save_model(model, str(path))
    return path


def _episode(n: int = 8):
    from nextframe.data.episode import Episode

    frames = np.zeros((n + 1, 210, 160, 3), np.uint8)
    for t in range(n + 1):
        frames[t, 80:130, 40 + 4 * t : 80 + 4 * t] = 255
    return Episode(frames, np.arange(n, dtype=np.int64) % 4, "Breakout", 2)


def _save_raw(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _relist(bundle: Path, name: str) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    data = (bundle / name).read_bytes()
    m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (bundle / "manifest.json").write_text(json.dumps(m))


def _edit_manifest(bundle: Path, edit) -> Path:
    m = json.loads((bundle / "manifest.json").read_text())
    edit(m)
    (bundle / "manifest.json").write_text(json.dumps(m))
    return bundle


def _zip_bomb(path: Path, frames: int) -> Path:
    """An archive of a few kB whose frames entry declares `frames` native frames: the .npy header and the zip
    directory agree on the size, the data is not there (a reader that trusts the size allocates it all first)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (frames, 210, 160, 3)})
    declared = len(header.getvalue()) + frames * 210 * 160 * 3
    if declared >= 2**32:
        raise ValueError("zip bomb: keep the declared size under 4 GiB (no ZIP64 here)")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("frames.npy", header.getvalue() + bytes(4096))
        for key, value in (("actions", np.zeros(4, np.int64)), ("game", np.array("Breakout")),
                           ("frameskip", np.array(2))):
            b = io.BytesIO()
            np.save(b, value)
            zf.writestr(f"{key}.npy", b.getvalue())
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")  # the central directory entry of frames.npy: uncompressed size at +24
    struct.pack_into("<I", data, at + 24, declared)
    path.write_bytes(bytes(data))
    return path


class Fixtures:
    def __init__(self, root: Path):
        from nextframe.data.episode import save_episode
        from nextframe.export.bundle import export_bundle
        from nextframe.training.checkpoint import load_model

        self.root = root
        self.model = _tiny_model(root)
        self.bundle = root / "bundle"
        export_bundle(load_model(str(self.model)), str(self.bundle), n_steps=2)
        self.episode = root / "episode.npz"
        save_episode(self.episode, _episode())
        self.n = 0

    def path(self, name: str) -> Path:
        self.n += 1
        p = self.root / f"case{self.n}"
        p.mkdir()
        return p / name

    def bundle_copy(self) -> Path:
        dst = self.path("bundle")
        shutil.copytree(self.bundle, dst)
        return dst

    def config(self, model: dict, train: dict | None = None) -> Path:
        p = self.path("config.json")
        p.write_text(json.dumps({"model": model, "train": {"data": [str(self.episode)], "out_dir": str(p.parent / "run"),
                                                           "total_steps": 2, **(train or {})}}))
        return p


# ---- running cases ----------------------------------------------------------------------------------------

def _cli(argv: list[str]) -> tuple[str, str]:
    from nextframe.cli import main

    err = io.StringIO()
    code = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            code = e.code
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if code == 2 and (last.startswith("nextframe: ") or ": error: " in last):
        if last.startswith("nextframe: ") and len(lines) != 1:
            return "traceback", err.getvalue()[-300:]
        return "refused", last
    if code == 0:
        return "accepted", last
    return "traceback", f"exit {code}: {last}"


def _api(call) -> tuple[str, str]:
    try:
        call()
    except API_ERRORS as e:
        msg = str(e)
        return ("refused", msg) if msg and "\n" not in msg else ("traceback", f"multi-line {type(e).__name__}")
    return "accepted", ""


def run_case(kind: str, target, guard: list[Path] = ()) -> tuple[str, str, float]:
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in guard if p.is_file()}
    t0 = time.perf_counter()
    try:
        outcome, line = _cli(target) if kind == "cli" else _api(target)
    except BaseException as e:  # noqa: BLE001 - anything escaping is a finding
        if isinstance(e, KeyboardInterrupt):
            raise
        outcome, line = "traceback", f"{type(e).__name__}: {str(e)[:200]}"
    dt = time.perf_counter() - t0
    if dt > LIMIT_S:
        outcome = "slow"
    if any(not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != h for p, h in before.items()):
        outcome = "damage"
    return outcome, line, dt


def catalog(fx: Fixtures) -> list[tuple[str, str, str, object, list]]:
    """(class, description, 'cli' | 'api', argv or callable, files that must not change)."""
    from nextframe import _core
    from nextframe.data.episode import load_episode
    from nextframe.runtime import Session

    ep, model, bundle = fx.episode, fx.model, fx.bundle
    cases = []

    def add(cls, desc, kind, target, guard=()):
        cases.append((cls, desc, kind, target, list(guard)))

    # ---- settings on the command line
    out = lambda: fx.path("out")  # noqa: E731
    for desc, argv in [
        ("--steps 0", ["rollout", ep, "--model", model, "--out", out(), "--steps", "0"]),
        ("--steps -1", ["export", model, "--out", out(), "--steps", "-1"]),
        ("--steps two", ["export", model, "--out", out(), "--steps", "two"]),
        ("--context-noise nan", ["rollout", ep, "--model", model, "--out", out(), "--context-noise", "nan"]),
        ("--context-noise -0.1", ["export", model, "--out", out(), "--context-noise", "-0.1"]),
        ("--context-noise inf", ["export", model, "--out", out(), "--context-noise", "inf"]),
        ("--context-noise 2", ["rollout", ep, "--model", model, "--out", out(), "--context-noise", "2"]),
        ("--context 0", ["rollout", ep, "--bundle", bundle, "--out", out(), "--context", "0"]),
        ("--context 99 (longer than the episode)", ["rollout", ep, "--bundle", bundle, "--out", out(), "--context", "99"]),
        ("--seed -1", ["rollout", ep, "--bundle", bundle, "--out", out(), "--seed", "-1"]),
        ("--frames 0", ["bench", bundle, "--frames", "0"]),
        ("--threads 0", ["bench", bundle, "--threads", "0"]),
        ("--episodes 0", ["record", "--out", out(), "--episodes", "0"]),
        ("--steps -5 (record)", ["record", "--out", out(), "--steps", "-5"]),
        ("--game NoSuchGame", ["record", "--out", out(), "--game", "NoSuchGame", "--episodes", "1", "--steps", "2"]),
        ("--groups 0", ["quantize", bundle, "--out", out(), "--groups", "0"]),
        ("--windows 0", ["quantize", bundle, "--out", out(), "--windows", "0"]),
        ("--method bogus", ["quantize", bundle, "--out", out(), "--method", "bogus", "--calib", ep]),
        ("--precision int3", ["quantize", bundle, "--out", out(), "--precision", "int3", "--calib", ep]),
        ("--total-steps 0", ["train", "configs/breakout_default.json", "--total-steps", "0"]),
        ("--scale 0", ["play", bundle, "--scale", "0", "--headless", "--frames", "2"]),
        ("--workspace-gb nan", ["export", model, "--out", out(), "--workspace-gb", "nan"]),
        ("--steps with --bundle", ["rollout", ep, "--bundle", bundle, "--out", out(), "--steps", "2"]),
    ]:
        add("settings: CLI flags", desc, "cli", argv)

    # ---- config files
    for desc, mdl, trn in [
        ("unknown train key", {"dim": 32, "heads": 2}, {"batch_sise": 3}),
        ("lr NaN", {"dim": 32, "heads": 2}, {"lr": math.nan}),
        ("batch_size a string", {"dim": 32, "heads": 2}, {"batch_size": "8"}),
        ("batch_size true", {"dim": 32, "heads": 2}, {"batch_size": True}),
        ("negative context noise", {"dim": 32, "heads": 2}, {"context_noise_max": -0.1}),
        ("seq_len 1", {"dim": 32, "heads": 2}, {"seq_len": 1}),
        ("unknown model key", {"dim": 32, "heads": 2, "depht": 3}, {}),
        ("dim 0", {"dim": 0}, {}),
        ("dim not divisible by heads", {"dim": 33, "heads": 2}, {}),
        ("unknown arch", {"arch": "gan"}, {}),
        ("model too large for memory", {"dim": 16384, "depth": 256, "heads": 128}, {}),
        ("U-Net widths not a list", {"arch": "unet", "widths": 32}, {}),
        ("U-Net sigma_data inf", {"arch": "unet", "sigma_data": math.inf}, {}),
        ("episode of another game in data", {"dim": 32, "heads": 2, "height": 16, "width": 16, "patch": 4, "game": "Pong"}, {}),
    ]:
        add("config files", desc, "cli", ["train", fx.config(mdl, trn)])
    bad_json = fx.path("bad.json")
    bad_json.write_text("{not json")
    add("config files", "not JSON", "cli", ["train", bad_json])
    add("config files", "missing file", "cli", ["train", fx.root / "nope.json"])
    add("config files", "a directory", "cli", ["train", fx.root])
    sections = fx.path("sections.json")
    sections.write_text(json.dumps({"modle": {}, "train": {}}))
    add("config files", "unknown section", "cli", ["train", sections])

    # ---- model files
    import torch
    from safetensors.torch import save_file

    pt = fx.path("model.pt")
    torch.save({"w": torch.zeros(2)}, pt)
    add("model files", "a pickled .pt", "cli", ["export", pt, "--out", out()], [pt])
    trunc = fx.path("trunc.safetensors")
    trunc.write_bytes(model.read_bytes()[:500])
    add("model files", "truncated safetensors", "cli", ["export", trunc, "--out", out()])
    text = fx.path("text.safetensors")
    text.write_text("hello")
    add("model files", "a text file", "cli", ["rollout", ep, "--model", text, "--out", out()])
    huge = fx.path("huge.safetensors")
    save_file({"x": torch.zeros(2)}, str(huge), metadata={"format": "nextframe.model.v1",
                                                           "config": json.dumps({"dim": 16384, "depth": 256, "heads": 128})})
    add("model files", "700-byte file whose config asks for ~800B parameters", "cli", ["export", huge, "--out", out()])
    foreign = fx.path("foreign.safetensors")
    save_file({"x": torch.zeros(2)}, str(foreign))
    add("model files", "safetensors of another program", "cli", ["export", foreign, "--out", out()])
    nan_cfg = fx.path("nancfg.safetensors")
    save_file({"x": torch.zeros(2)}, str(nan_cfg), metadata={"format": "nextframe.model.v1", "config": '{"dim": NaN}'})
    add("model files", "config with NaN in metadata", "cli", ["export", nan_cfg, "--out", out()])
    add("model files", "missing", "cli", ["export", fx.root / "nope.safetensors", "--out", out()])
    add("model files", "a directory", "cli", ["export", fx.root, "--out", out()])

    # ---- episode files
    def ep_case(desc, make):
        p = make(fx.path("ep.npz"))
        add("episode files", desc, "cli", ["rollout", p, "--bundle", bundle, "--out", out(), "--no-video"], [p])

    good = load_episode(ep)
    base = dict(frames=good.frames, actions=good.actions, game=np.array("Breakout"), frameskip=np.array(2))
    ep_case("missing", lambda p: p)
    ep_case("not a zip", lambda p: (p.write_text("hello"), p)[1])
    ep_case("truncated", lambda p: (p.write_bytes(ep.read_bytes()[:300]), p)[1])
    ep_case("a single .npy", lambda p: (np.save(p.with_suffix(".npy"), good.frames), p.with_suffix(".npy"))[1])
    ep_case("no actions key", lambda p: _save_raw(p, **{k: v for k, v in base.items() if k != "actions"}))
    ep_case("pickled object array", lambda p: _save_raw(p, **{**base, "game": np.array([{"a": 1}], dtype=object)}))
    ep_case("float frames", lambda p: _save_raw(p, **{**base, "frames": good.frames.astype(np.float32)}))
    ep_case("64x64 frames", lambda p: _save_raw(p, **{**base, "frames": good.frames[:, :64, :64]}))
    ep_case("int32 actions", lambda p: _save_raw(p, **{**base, "actions": good.actions.astype(np.int32)}))
    ep_case("one action too many", lambda p: _save_raw(p, **{**base, "actions": np.zeros(len(good.actions) + 1, np.int64)}))
    ep_case("negative action", lambda p: _save_raw(p, **{**base, "actions": good.actions * 0 - 1}))
    ep_case("action out of the game's range", lambda p: _save_raw(p, **{**base, "actions": good.actions * 0 + 7}))
    ep_case("another game", lambda p: _save_raw(p, **{**base, "game": np.array("Pong")}))
    ep_case("another frameskip", lambda p: _save_raw(p, **{**base, "frameskip": np.array(4)}))
    ep_case("frameskip a string", lambda p: _save_raw(p, **{**base, "frameskip": np.array("two")}))
    ep_case("zip bomb: a 5 kB archive declaring 40,000 frames (4 GB)", lambda p: _zip_bomb(p, 40_000))
    ep_case("a directory", lambda p: (p.mkdir(), p)[1])

    # ---- outputs a user owns
    user_dir = fx.path("mine")
    user_dir.mkdir()
    (user_dir / "manifest.json").write_text("{}")
    (user_dir / "notes.txt").write_text("mine")
    add("outputs", "export --out a folder of the user's holding a manifest.json", "cli",
        ["export", model, "--out", user_dir], [user_dir / "notes.txt", user_dir / "manifest.json"])
    a_file = fx.path("a_file")
    a_file.write_text("mine")
    add("outputs", "export --out an existing file", "cli", ["export", model, "--out", a_file], [a_file])
    add("outputs", "export --out inside a file", "cli", ["export", model, "--out", a_file / "sub"], [a_file])
    add("outputs", "rollout --out the episode's own folder (would overwrite it)", "cli",
        ["rollout", ep, "--bundle", bundle, "--out", ep.parent, "--no-video"], [ep])
    twin = fx.path("episode.npz")
    shutil.copy(ep, twin)
    add("outputs", "two inputs with the same file name", "cli",
        ["rollout", ep, twin, "--bundle", bundle, "--out", out(), "--no-video"], [ep, twin])
    add("outputs", "rollout --out an existing file", "cli", ["rollout", ep, "--bundle", bundle, "--out", a_file], [a_file])
    add("outputs", "quantize --out an existing bundle", "cli", ["quantize", bundle, "--out", bundle, "--calib", ep],
        [bundle / "manifest.json"])

    # ---- bundles (untrusted)
    def bundle_case(desc, make):
        b = fx.bundle_copy()
        make(b)
        add("bundles", desc, "api", lambda b=b: Session(str(b), backend="ort-cpu", threads=1).close())

    def swap(b, make_graph):
        (b / "step.onnx").unlink()
        make_graph(b / "step.onnx")

    bundle_case("graph symlinked to /dev/zero", lambda b: swap(b, lambda p: os.symlink("/dev/zero", p)))
    bundle_case("graph is a FIFO", lambda b: swap(b, os.mkfifo))
    bundle_case("graph symlinked outside the bundle", lambda b: swap(b, lambda p: os.symlink(fx.bundle / "step.onnx", p)))
    bundle_case("graph is a directory", lambda b: swap(b, os.mkdir))
    bundle_case("graph 2 GB larger than listed", lambda b: os.truncate(b / "step.onnx", (2 << 30)))
    bundle_case("graph missing", lambda b: (b / "step.onnx").unlink())
    bundle_case("checksum wrong", lambda b: _edit_manifest(b, lambda m: m["files"]["step.onnx"].update(sha256="0" * 64)))
    bundle_case("path with '..'", lambda b: _edit_manifest(b, lambda m: m["graphs"]["step"].update(file="../x.onnx")))
    bundle_case("manifest 5 MB", lambda b: (b / "manifest.json").write_text((b / "manifest.json").read_text() + " " * (5 << 20)))
    bundle_case("manifest not JSON", lambda b: (b / "manifest.json").write_text("{"))
    bundle_case("manifest not UTF-8", lambda b: (b / "manifest.json").write_bytes(b'{"format": "nextframe.\xff"}'))
    bundle_case("manifest nested 10,000 deep", lambda b: (b / "manifest.json").write_text("[" * 10000 + "]" * 10000))
    bundle_case("format_version 2", lambda b: _edit_manifest(b, lambda m: m.update(format_version=2)))
    bundle_case("frame height 2^40", lambda b: _edit_manifest(b, lambda m: m["frame"].update(height=1 << 40)))
    bundle_case("frame 4x8192x8192 (product too large)",
                lambda b: _edit_manifest(b, lambda m: m["frame"].update(channels=4, height=8192, width=8192)))
    bundle_case("n_steps 10^9", lambda b: _edit_manifest(b, lambda m: m["sampler"].update(n_steps=10**9)))
    bundle_case("negative context noise", lambda b: _edit_manifest(b, lambda m: m["sampler"].update(context_noise=-1)))
    bundle_case("unknown quantization precision",
                lambda b: _edit_manifest(b, lambda m: m.update(quantization={"precision": "int3", "method": "x"})))

    def truncated_graph(b):
        (b / "step.onnx").write_bytes((b / "step.onnx").read_bytes()[:1000])
        _relist(b, "step.onnx")

    def external_data(b):
        import onnx

        m = onnx.load(str(b / "step.onnx"))
        onnx.save_model(m, str(b / "step.onnx"), save_as_external_data=True, location="step.data", size_threshold=0)
        _relist(b, "step.onnx")
        _relist(b, "step.data")

    bundle_case("truncated graph, listing fixed up", truncated_graph)
    bundle_case("graph with external data, both listed", external_data)

    # ---- the runtime API
    s = Session(str(bundle), backend="ort-cpu", threads=1)
    h, w, c = s.height, s.width, s.channels
    ctx = np.zeros((2, h, w, c), np.uint8)
    nan_frames = np.full((2, c, h, w), np.nan, np.float32)
    for desc, call in [
        ("reset with NaN frames", lambda: s.reset(nan_frames, [s.no_action, 0])),
        ("reset with float frames outside [-1, 1]", lambda: s.reset(nan_frames * 0 + 3, [s.no_action, 0])),
        ("reset with wrong frame shape", lambda: s.reset(np.zeros((2, h + 1, w, c), np.uint8), [s.no_action, 0])),
        ("reset with one action too few", lambda: s.reset(ctx, [s.no_action])),
        ("reset with an unknown action", lambda: s.reset(ctx, [s.no_action, 99])),
        ("reset with a bad native reference", lambda: s.reset(ctx, [s.no_action, 0], native_reference=np.zeros((5, 5, 3), np.uint8))),
        ("step with an unknown action name", lambda: s.step("JUMP")),
        ("step with action -1", lambda: s.step(-1)),
        ("step with no_action", lambda: s.step(s.no_action)),
        ("feed_noise with NaN", lambda: s.feed_noise(np.array([np.nan], np.float32))),
        ("Session(n_steps=0)", lambda: Session(str(bundle), n_steps=0)),
        ("Session(threads=0)", lambda: Session(str(bundle), threads=0)),
        ("Session(backend='gpu')", lambda: Session(str(bundle), backend="gpu")),
        ("Session(disa with unknown keys)", lambda: Session(str(bundle), disa={"n_max": 4, "x": 1})),
        ("Session(sampler='ddim')", lambda: Session(str(bundle), sampler="ddim")),
        ("Bundle.open of a file", lambda: _core.Bundle.open(str(ep))),
    ]:
        add("runtime API", desc, "api", call)
    return cases


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fuzz-seconds", type=float, default=120.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from nextframe.benchmarks.device_info import cpu_info
    from nextframe.benchmarks.result_file import write_result

    root = Path(tempfile.mkdtemp(prefix="nf_bad_inputs_"))
    try:
        fx = Fixtures(root)
        by_class: dict[str, Counter] = defaultdict(Counter)
        failures, slowest = [], 0.0
        for cls, desc, kind, target, guard in catalog(fx):
            outcome, line, dt = run_case(kind, target, guard)
            by_class[cls][outcome] += 1
            slowest = max(slowest, dt)
            if outcome != "refused":
                failures.append({"class": cls, "case": desc, "outcome": outcome, "detail": line[:300]})
        fuzz = None
        harness = Path(__file__).resolve().parents[1] / "tests" / "fuzz_harness.py"
        if args.fuzz_seconds > 0 and harness.is_file():
            sys.path.insert(0, str(harness.parent))
            import fuzz_harness

            fuzz = fuzz_harness.run(args.fuzz_seconds, seed=20261130)
        out = {"device": cpu_info(), "classes": {k: dict(v) for k, v in by_class.items()},
               "cases": sum(sum(v.values()) for v in by_class.values()), "not_refused": failures,
               "slowest_case_s": round(slowest, 2), "fuzz": fuzz}
        write_result(args.out, out)
        print(json.dumps(out))
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
