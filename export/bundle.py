"""Write a runtime bundle: a directory with manifest.json and the ONNX graphs, every file checksummed.

The manifest is the single source of what the runtime needs: model shapes, the action set, the KV-cache
layout, the default sampler (kind, steps, the exact time schedule, context noise) and each graph's inputs
and outputs. It is written last, into a temp dir renamed into place, so a half-written bundle never exists.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

from nextframe.export.check import check_step_parity
from nextframe.export.onnx import OPSET, export_kv, export_step, kv_io_specs, n_slots, step_io_specs
from nextframe.models.flow import flow_schedule, is_schedule
from nextframe.models.palette import check_palette
from nextframe.models.registry import is_frame_stack

FORMAT = "nextframe.bundle"
FORMAT_VERSION = 1
STEP_FILE = "step.onnx"
KV_FILE = "kv.onnx"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def action_names(game: str, n_actions: int) -> list[str]:
    try:
        from nextframe.data.record import make_env

        env = make_env(game)
        names = list(env.unwrapped.get_action_meanings())
        env.close()
    except (ImportError, ValueError):
        names = []
    return names if len(names) == n_actions else [f"ACTION_{i}" for i in range(n_actions)]


def check_times(times) -> list[float]:
    """A fixed sampler schedule (e.g. a distilled student's): from 1 to 0, never increasing."""
    times = [float(t) for t in times]
    if not is_schedule(times, strictly=False):
        raise ValueError(f"export: times must run from 1.0 down to 0.0 with at least 2 entries (got {times})")
    return times


def build_manifest(model, n_steps: int, context_noise: float, shift: float, files: dict,
                   times: list[float] | None = None) -> dict:
    """times: an explicit schedule (n_steps + 1 entries) instead of flow_schedule(n_steps, shift)."""
    from nextframe import __version__

    c = model.cfg
    inputs, outputs = step_io_specs(model)
    sampler = {"kind": "flow_euler_x0", "n_steps": n_steps, "shift": shift,
               "times": flow_schedule(n_steps, shift) if times is None else times, "context_noise": context_noise}
    if is_frame_stack(model):  # native resolution, no cache: the runtime keeps the context frames
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "producer": f"nextframe {__version__}",
            "model": c.to_dict(),
            "actions": action_names(c.game, c.n_actions),
            "no_action": c.no_action,
            "frame": {"channels": c.channels, "height": c.height, "width": c.width, "value_range": [-1.0, 1.0],
                      "native_height": c.height, "native_width": c.width,
                      # the game's colours, generated frames are snapped to (models/palette.py), where the model has them
                      **({"palette": check_palette(model.palette).tolist()}
                         if getattr(model, "palette", None) is not None else {})},
            "sampler": sampler,
            "graphs": {"step": {"file": STEP_FILE, "opset": OPSET, "inputs": inputs, "outputs": outputs}},
            "files": files,
        }
    kv_inputs, kv_outputs = kv_io_specs(model)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "producer": f"nextframe {__version__}",
        "model": c.to_dict(),
        "actions": action_names(c.game, c.n_actions),
        "no_action": c.no_action,
        "frame": {"channels": c.channels, "height": c.height, "width": c.width, "value_range": [-1.0, 1.0],
                  "native_height": 210, "native_width": 160},
        "kv_cache": {"n_layers": c.depth, "n_heads": c.heads, "n_slots": n_slots(model), "window": c.context,
                     "tokens_per_frame": c.tokens_per_frame, "head_dim": c.head_dim},
        "sampler": sampler,
        "native_decoder": {"kind": "detail_transfer", "agree_threshold": 20.0},
        "graphs": {"step": {"file": STEP_FILE, "opset": OPSET, "inputs": inputs, "outputs": outputs},
                   "kv": {"file": KV_FILE, "opset": OPSET, "inputs": kv_inputs, "outputs": kv_outputs}},
        "files": files,
    }


def owned_bundle(path: str) -> bool:
    """True when path is a directory nextframe may replace: empty, or a bundle it wrote holding nothing but
    manifest.json and the files the manifest lists (a user's file added beside them makes it theirs)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    entries = set()
    for root, dirs, names in os.walk(path):
        for n in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            entries.add(os.path.relpath(os.path.join(root, n), path))
    if not entries:
        return True
    try:
        with open(os.path.join(path, "manifest.json")) as f:
            manifest = json.load(f)
        listed = set(manifest["files"]) | {"manifest.json"}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest and entries <= listed


def export_bundle(model, out_dir: str, n_steps: int | None = None, context_noise: float = 0.0,
                  shift: float = 1.0, check: bool = True, times: list[float] | None = None,
                  force: bool = False, aoti: tuple[str, ...] = (), frame_graph: bool = False) -> dict:
    """Export, gate on ORT-vs-PyTorch parity, then move the finished bundle to out_dir (replacing it).
    aoti: devices ("cpu", "cuda") to compile AOTInductor packages of the graphs for as well (export/aoti.py).
    frame_graph: the model's whole next-frame step as one more graph, for device-resident loops
    (export/frame_graph.py).
    n_steps defaults to 4; times (optional) fixes the schedule written to the manifest, e.g. [1.0, 0.0] for a
    one-step distilled student (the sampler kind stays flow_euler_x0: the runtime replays the times)."""
    if times is not None:
        times = check_times(times)
        if n_steps is not None and n_steps != len(times) - 1:
            raise ValueError(f"export: n_steps {n_steps} does not match times with {len(times)} entries")
        n_steps = len(times) - 1
    n_steps = 4 if n_steps is None else n_steps
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 1 <= n_steps <= 1000:
        raise ValueError(f"export: n_steps must be an integer in 1..1000 (got {n_steps!r})")
    if not (isinstance(context_noise, (int, float)) and 0.0 <= context_noise <= 1.0):  # NaN fails both
        raise ValueError(f"export: context_noise must be a number in 0..1 (got {context_noise!r})")
    if not (isinstance(shift, (int, float)) and 1e-3 <= shift <= 1e3):
        raise ValueError(f"export: shift must be a number in 0.001..1000 (got {shift!r})")

    def fill(tmp: str) -> dict:
        step_path, kv_path = os.path.join(tmp, STEP_FILE), os.path.join(tmp, KV_FILE)
        export_step(model, step_path)
        graphs = [(STEP_FILE, step_path)]
        if is_frame_stack(model):
            kv_path = None
        else:
            export_kv(model, kv_path)
            graphs.append((KV_FILE, kv_path))
        parity = check_step_parity(model, step_path, kv_path=kv_path) if check else None
        files = {name: {"sha256": sha256_file(path), "bytes": os.path.getsize(path)} for name, path in graphs}
        aoti_section = None
        if aoti:
            from nextframe.export.aoti import add_packages

            aoti_section = add_packages(model, tmp, tuple(aoti), files)
        manifest = build_manifest(model, n_steps, context_noise, shift, files, times)
        checks = {} if parity is None else {"nmse": parity, "backend": "onnxruntime-cpu"}
        if frame_graph:
            from nextframe.export.frame_graph import FRAME_FILE, check_frame_parity, export_frame_graph

            path = os.path.join(tmp, FRAME_FILE)
            sched = manifest["sampler"]["times"]
            palette = manifest["frame"].get("palette")  # the graph snaps where the bundle does
            entry = export_frame_graph(model, path, sched, context_noise, palette)
            files[FRAME_FILE] = {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}
            manifest["graphs"]["frame"] = {"file": FRAME_FILE, **entry}
            if check:
                checks["frame_graph"] = check_frame_parity(model, path, sched, context_noise, palette)
        if aoti_section is not None:
            manifest["aoti"] = aoti_section
        if checks:
            manifest["export_check"] = checks
        return manifest

    return write_bundle_dir(out_dir, fill, force)


def write_bundle_dir(out_dir: str, fill, force: bool = False) -> dict:
    """Build a bundle in a temporary directory beside out_dir (fill(tmp) writes the files and returns the manifest),
    write manifest.json, then move it to out_dir, replacing only a directory nextframe owns (owned_bundle) unless
    force: nothing a user owns is overwritten, and a failed export leaves out_dir as it was."""
    def check_out():
        if os.path.lexists(out_dir) and not force and not owned_bundle(out_dir):
            raise ValueError(f"export: {out_dir} exists and is not a bundle nextframe wrote (or holds other files); "
                             "refusing to replace it (choose another --out, or --force)")

    check_out()
    parent = os.path.dirname(os.path.abspath(out_dir))
    above = parent
    while not os.path.lexists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise ValueError(f"export: cannot create {out_dir}: {above} is a file, not a directory")
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".bundle-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        manifest = fill(tmp)
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        check_out()  # again: the directory may have changed during the export
        if os.path.isdir(out_dir) and not os.path.islink(out_dir):
            shutil.rmtree(out_dir)
        elif os.path.lexists(out_dir):
            os.remove(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
