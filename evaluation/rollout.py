"""Open-loop rollout of a world model over recorded episodes (the rollout prediction format, docs/formats.md).

The model gets the first `context` real frames and every action; each predicted frame is fed back as context,
and no real frame after `context - 1` is ever shown to it. A frame-stack model works at native resolution; a
transformer's 64x64 predictions go to native resolution through the detail-transfer decoder, whose reference
is the last real context frame.

The runtime path (a bundle through the C++ core) needs only NumPy; the PyTorch loops import torch when called,
so that the runtime-only install (`pip install nextframe`) can roll bundles out.
"""
from __future__ import annotations

import json
import os
import time

from typing import TYPE_CHECKING

import numpy as np

from nextframe.atomic import write_atomic
from nextframe.data.episode import Episode, check_episode_fits, load_episode
from nextframe.data.resize import to_model_resolution
from nextframe.evaluation.metrics import by_horizon, per_frame

if TYPE_CHECKING:
    from nextframe.models.dit import NextFrameDiT


def check_context(total: int, context: int) -> None:
    if not 1 <= context < total:
        raise ValueError(f"rollout: context must be in 1..{total - 1} for an episode of {total} frames (got {context})")


def check_fits(episode: Episode, name: str, game: str, n_actions: int, source: str) -> None:
    check_episode_fits(name, episode.game, episode.frameskip, episode.actions, game, n_actions, source)


def predict_lowres(model: NextFrameDiT, frames_lowres: np.ndarray, actions: np.ndarray, context: int,
                   n_steps: int, context_noise: float, seed: int, n_predict: int | None = None,
                   first_action: int | None = None):
    """frames_lowres uint8 [T+1, 3, h, w]; actions int64 [T]; first_action: the action that led to frame 0 (None:
    no_action, an episode's first frame). Returns (uint8 [N, 3, h, w], seconds per frame list)."""
    import torch

    from nextframe.models.sampling import CachedSampler

    cfg = model.cfg
    total = len(frames_lowres)
    check_context(total, context)
    if actions.size and int(actions.max()) >= cfg.n_actions:
        raise ValueError(f"rollout: action index {int(actions.max())} out of range for the model's {cfg.n_actions} actions")
    n_predict = total - context if n_predict is None else min(n_predict, total - context)
    leading = np.concatenate([[cfg.no_action if first_action is None else first_action], actions])  # action that led to each frame
    sampler = CachedSampler(model, n_steps=n_steps, context_noise=context_noise, generator=torch.Generator().manual_seed(seed))
    ctx = torch.from_numpy(frames_lowres[:context]).float().div(127.5).sub(1.0)
    sampler.reset(ctx, leading[:context].tolist())
    out, times = [], []
    for j in range(context, context + n_predict):
        t0 = time.perf_counter()
        frame = sampler.step(int(leading[j]))
        times.append(time.perf_counter() - t0)
        out.append(((frame[0] + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy())
    return np.stack(out), times


def predict_native(model, frames: np.ndarray, actions: np.ndarray, context: int, n_steps: int, context_noise: float,
                   seed: int, n_predict: int | None = None, times: list[float] | None = None,
                   first_action: int | None = None):
    """A frame-stack model's rollout at native resolution: frames uint8 [T+1, H, W, 3], actions int64 [T];
    first_action: the action that led to frame 0 (None: no_action, an episode's first frame).
    Returns (uint8 [N, H, W, 3], seconds per frame list)."""
    import torch

    from nextframe.models.unet_sampling import FrameStackSampler

    cfg = model.cfg
    total = len(frames)
    check_context(total, context)
    if actions.size and int(actions.max()) >= cfg.n_actions:
        raise ValueError(f"rollout: action index {int(actions.max())} out of range for the model's {cfg.n_actions} actions")
    n_predict = total - context if n_predict is None else min(n_predict, total - context)
    leading = np.concatenate([[cfg.no_action if first_action is None else first_action], actions])
    sampler = FrameStackSampler(model, n_steps=n_steps, context_noise=context_noise, times=times,
                                generator=torch.Generator().manual_seed(seed))
    ctx = torch.from_numpy(np.ascontiguousarray(frames[:context].transpose(0, 3, 1, 2))).float().div(127.5).sub(1.0)
    sampler.reset(ctx, leading[:context].tolist())
    out, times_s = [], []
    for j in range(context, context + n_predict):
        t0 = time.perf_counter()
        frame = sampler.step(int(leading[j]))
        times_s.append(time.perf_counter() - t0)
        out.append(((frame[0] + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    return np.stack(out), times_s


def rollout_episode(model, episode: Episode, context: int = 4, n_steps: int = 4,
                    context_noise: float = 0.0, seed: int = 0, n_predict: int | None = None,
                    times: list[float] | None = None):
    """PyTorch eager loop. Returns (pred uint8 [N, 210, 160, 3], metrics dict). times: the frame-stack
    sampler's explicit schedule (a distilled student's), else flow_schedule(n_steps)."""
    from nextframe.models.registry import is_frame_stack

    cfg = model.cfg
    check_fits(episode, "the episode", cfg.game, cfg.n_actions, "model")
    if is_frame_stack(model):
        pred, secs = predict_native(model, episode.frames, episode.actions, context, n_steps, context_noise, seed,
                                    n_predict, times)
        return score_native(episode, context, pred, secs, n_steps)
    lowres = to_model_resolution(episode.frames, cfg.height, cfg.width)
    pred_low, times = predict_lowres(model, lowres, episode.actions, context, n_steps, context_noise, seed, n_predict)
    return score_rollout(episode, lowres, context, pred_low, times, n_steps)


def session_frames(session, frames: np.ndarray) -> np.ndarray:
    """Native uint8 frames [n, 210, 160, 3] as a runtime Session takes them: as they are for a bundle at the
    game's resolution, area-downsampled to the model's ([n, H, W, 3] uint8) for a 64x64 transformer."""
    if session.native_resolution:
        return frames
    return to_model_resolution(frames, session.height, session.width).transpose(0, 2, 3, 1)


def rollout_episode_runtime(bundle_dir: str, episode: Episode, context: int = 4, seed: int = 0, backend: str = "auto"):
    """The same rollout through the C++ runtime (nextframe.runtime.Session) on an exported bundle."""
    from nextframe.runtime import Session

    with Session(bundle_dir, backend=backend, seed=seed) as s:
        check_fits(episode, "the episode", s.bundle.game, s.n_actions, "bundle")
        total = len(episode.frames)
        check_context(total, context)
        # a 64x64 model's frames reach native resolution through the core's own detail-transfer decoder, its
        # reference the last real context frame, as users run it (Session.step_native; timed with the decode)
        leading = [s.no_action] + episode.actions.tolist()
        reference = None if s.native_resolution else episode.frames[context - 1]
        s.reset(session_frames(s, episode.frames[:context]), leading[:context], native_reference=reference)
        out, times = [], []
        for j in range(context, total):
            t0 = time.perf_counter()
            out.append(s.step_native(int(leading[j])))
            times.append(time.perf_counter() - t0)
        return score_native(episode, context, np.stack(out), times, s.bundle.sampler["n_steps"])


def score_rollout(episode: Episode, lowres: np.ndarray, context: int, pred_low: np.ndarray, times: list[float], n_steps: int):
    from nextframe.models.native_decoder import DetailTransferDecoder

    decode = DetailTransferDecoder(episode.frames[context - 1], lowres[context - 1])
    return score_native(episode, context, decode(pred_low), times, n_steps)


def score_native(episode: Episode, context: int, pred: np.ndarray, times: list[float], n_steps: int):
    """pred uint8 [N, 210, 160, 3] (native) -> (pred, metrics as `nextframe rollout` prints them)."""
    real = episode.frames[context : context + len(pred)]
    copy = np.broadcast_to(episode.frames[context - 1], real.shape)
    ms = np.array(times) * 1000.0
    metrics = {
        "model": by_horizon(per_frame(real, pred, episode.frames[context - 1])),
        "copy_baseline": by_horizon(per_frame(real, copy, episode.frames[context - 1])),
        "n_steps": n_steps,
        "context": context,
        "model_ms_per_frame_p50": round(float(np.percentile(ms, 50)), 2),
        "model_ms_per_frame_p90": round(float(np.percentile(ms, 90)), 2),
        "model_fps": round(1000.0 / float(np.mean(ms)), 1),
    }
    return pred, metrics


def write_video(path: str, real: np.ndarray, pred: np.ndarray, fps: int = 30) -> None:
    """Side by side: real | predicted, with a 4-pixel white separator."""
    import imageio.v2 as imageio

    sep = np.full((real.shape[0], real.shape[1], 4, 3), 255, np.uint8)
    video = np.concatenate([real, sep, pred], axis=2)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=2, ffmpeg_log_level="error") as w:
        for frame in video:
            w.append_data(frame)


def output_paths(paths: list[str], out_dir: str, video: bool) -> dict[str, list[str]]:
    """Where each episode's outputs go; refuses (one line, before any work) two inputs with the same file name,
    since one would overwrite the other, and an output that is one of the inputs."""
    by_stem: dict[str, str] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in by_stem:
            raise ValueError(f"rollout: {by_stem[stem]} and {path} would both write {stem}.npz in {out_dir}; "
                             "roll them out into separate --out directories")
        by_stem[stem] = path
    inputs = {os.path.realpath(p) for p in paths}
    out = {}
    for stem, path in by_stem.items():
        files = [os.path.join(out_dir, f"{stem}.npz")] + ([os.path.join(out_dir, f"{stem}.mp4")] if video else [])
        for f in files:
            if os.path.realpath(f) in inputs:
                raise ValueError(f"rollout: the output {f} would overwrite the input episode; choose another --out")
        out[path] = files
    return out


def rollout_files(paths: list[str], out_dir: str, model=None, context: int = 4, n_steps: int = 4,
                  context_noise: float = 0.0, seed: int = 0, video: bool = True, model_name: str = "",
                  times: list[float] | None = None, bundle: str | None = None):
    """Roll every episode out with the PyTorch model, or (bundle given) through the C++ runtime on that bundle,
    writing <stem>.npz (and .mp4) to out_dir and printing one JSON line of metrics per episode."""
    if (model is None) == (bundle is None):
        raise ValueError("rollout: give a model or a bundle, not both")
    targets = output_paths(paths, out_dir, video)
    if bundle is not None:
        from nextframe import _core

        b = _core.Bundle.open(bundle)
        game, n_actions, source = b.game, b.n_actions, "bundle"
    else:
        game, n_actions, source = model.cfg.game, model.cfg.n_actions, "model"
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"rollout: --out {out_dir} is a file, not a directory")
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for path in paths:
        ep = load_episode(path)
        check_fits(ep, path, game, n_actions, source)
        if bundle is not None:
            pred, metrics = rollout_episode_runtime(bundle, ep, context, seed)
        else:
            pred, metrics = rollout_episode(model, ep, context, n_steps, context_noise, seed, times=times)
        files = targets[path]
        write_atomic(files[0], lambda f: np.savez_compressed(f, frames=pred, context=np.array(context)))
        if video:
            write_atomic(files[1], lambda f: write_video(f, ep.frames[context:], pred))
        # "source": what made the frames ("model" holds the metrics, as in every rollout JSON)
        line = {"episode": path, "source": bundle or model_name, **metrics}
        print(json.dumps(line), flush=True)
        results.append(line)
    return results
