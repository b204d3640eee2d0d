"""Calibration sets for post-training quantization: the step graph's inputs exactly as the runtime feeds them.

The bundle's own sampler runs open loop on recorded context windows (the NumPy reference loop of
runtime/reference.py over the FP32 graph in ONNX Runtime, the same arithmetic as the C++ core), and every
graph call is recorded. Which calls are kept is the method:
- naive: the first denoising step only (t = 1), one noise level, as if activations did not depend on t;
- qdiff: every step of the schedule, equally (Q-Diffusion's time-step-aware calibration);
- ptq4dm: steps drawn with weights of a normal density centred on the middle of the schedule (PTQ4DM's NDTC).
For a one-step bundle the three coincide: there is one noise level.
"""
from __future__ import annotations

import json
import os

import numpy as np

METHODS = ("naive", "qdiff", "ptq4dm")


def context_windows(episodes, context: int, frames_per_window: int, n_windows: int, height: int, width: int,
                    rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frames float32 [context + frames_per_window, 3, h, w] in [-1, 1], lead actions) cut from episodes
    (Episode objects), starts spread at random; frames resized to the bundle's resolution."""
    from nextframe.data.dataset import to_model_resolution

    span = context + frames_per_window
    usable = [e for e in episodes if len(e.frames) > span + 1]
    if not usable:
        raise ValueError(f"quantize: no calibration episode has more than {span + 1} frames")
    out = []
    for i in range(n_windows):
        ep = usable[i % len(usable)]
        s = int(rng.integers(1, len(ep.frames) - span))
        native = ep.frames[s : s + span]
        frames = native if native.shape[1:3] == (height, width) else to_model_resolution(native, height, width).transpose(0, 2, 3, 1)
        x = frames.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(127.5) - np.float32(1.0)
        out.append((np.ascontiguousarray(x), ep.actions[s - 1 : s - 1 + span].astype(np.int64)))
    return out


def keep_step(method: str, step_index: int, n_steps: int, rng: np.random.Generator) -> bool:
    if method == "naive":
        return step_index == 0
    if method == "qdiff":
        return True
    # ptq4dm: a normal density over the step index, centred mid-schedule (sd = n/4), scaled to 1 at its peak
    centre, sd = (n_steps - 1) / 2.0, max(n_steps / 4.0, 0.5)
    return bool(rng.random() < np.exp(-0.5 * ((step_index - centre) / sd) ** 2))


def noise_level_of(feed: dict, names: set[str]) -> float:
    """The noise level t of a graph feed (its input of role noise_level, whatever its name)."""
    return float(np.asarray(next(v for k, v in feed.items() if k in names)).reshape(-1)[0])


def collect_feeds(bundle_dir: str, episodes, method: str = "qdiff", n_windows: int = 16, frames_per_window: int = 6,
                  seed: int = 0, threads: int = 2, kv_feeds: list | None = None) -> list[dict]:
    """Graph feeds ({input name: array}) recorded from the bundle's sampler on the episodes' windows. kv_feeds:
    a list that receives the kv graph's feeds (the cache write of every finished frame), when the bundle has one."""
    import onnxruntime as ort

    from nextframe.runtime.reference import ReferenceLoop, input_roles

    if method not in METHODS:
        raise ValueError(f"quantize: unknown calibration method {method!r} (expected {', '.join(METHODS)})")
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        manifest = json.load(f)
    fr, sm = manifest["frame"], manifest["sampler"]
    context = max([r[2] for r in input_roles(manifest["graphs"]["step"]) if r[1] == "context_frame"]
                  + [r[3][1] for r in input_roles(manifest["graphs"]["step"]) if r[1] == "context_frames"]
                  + [manifest.get("kv_cache", {}).get("window", 0)])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(os.path.join(bundle_dir, manifest["graphs"]["step"]["file"]), so,
                                providers=["CPUExecutionProvider"])
    outputs = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(seed)
    # the levels as the graph receives them (float32): 0.15 in the manifest reaches the graph as 0.15000000596
    times = [float(np.float32(t)) for t in sm["times"]]
    recorded: list[dict] = []

    def step_fn(feed: dict) -> dict:
        t = noise_level_of(feed, noise_level_names)
        if t in times[:-1] and keep_step(method, times.index(t), len(times) - 1, rng):
            recorded.append({k: np.array(v, copy=True) for k, v in feed.items()})
        return dict(zip(outputs, sess.run(None, feed)))

    kv_fn = None
    if kv_feeds is not None and "kv" in manifest["graphs"]:
        kv_sess = ort.InferenceSession(os.path.join(bundle_dir, manifest["graphs"]["kv"]["file"]), so,
                                       providers=["CPUExecutionProvider"])
        kv_outputs = [o.name for o in kv_sess.get_outputs()]

        def kv_fn(feed: dict) -> dict:
            kv_feeds.append({k: np.array(v, copy=True) for k, v in feed.items()})
            return dict(zip(kv_outputs, kv_sess.run(None, feed)))

    noise_level_names = {name for name, role, _, _ in input_roles(manifest["graphs"]["step"]) if role == "noise_level"}
    windows = context_windows(episodes, context, frames_per_window, n_windows, fr["height"], fr["width"], rng)
    numel = fr["channels"] * fr["height"] * fr["width"]
    for frames, actions in windows:
        noise = list(rng.standard_normal((context + 2 * frames_per_window, numel)).astype(np.float32))
        loop = ReferenceLoop(manifest, step_fn, noise, kv_fn=kv_fn)
        loop.reset(frames[:context], actions[:context])
        for a in actions[context:]:
            loop.step(int(a))
    if not recorded:
        raise ValueError("quantize: the calibration run recorded no graph call")
    return recorded
