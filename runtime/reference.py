"""NumPy reference of the runtime's frame loop, for tests only (nothing on the hot path imports it).

It is the readable specification of what ``csrc/`` computes: the flow schedule and DiSA step counts
(``csrc/schedule.cpp``), the K/V ring's slots and ages (``csrc/kv_cache.cpp``), one Euler or Heun step for a
velocity- or x0-predicting graph (``csrc/sampler.cpp``) and one frame of the loop (``csrc/frame_loop.cpp``)
around any step function with the step graph's signature (onnxruntime's Python API in the tests).
Float32 arithmetic is written one operation at a time in the order the C++ code and PyTorch use, so the
two agree bit for bit on equal network outputs. Integer facts (slots, ages, step counts) agree exactly.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

F32 = np.float32


# ---- schedule -----------------------------------------------------------------------------------------
def flow_schedule(n_steps: int, shift: float = 1.0) -> list[float]:
    """Times from 1 to 0, n_steps + 1 values: shift*u / (1 + (shift-1)*u), u = 1 - i/n_steps (float64)."""
    if n_steps < 1:
        raise ValueError(f"schedule: n_steps must be at least 1 (got {n_steps})")
    if not shift > 0:
        raise ValueError(f"schedule: shift must be positive (got {shift})")
    out = []
    for i in range(n_steps + 1):
        u = 1.0 - i / n_steps
        out.append(shift * u / (1.0 + (shift - 1.0) * u))
    return out


def disa_steps(frame_index: int, n_max: int, n_min: int, n_anneal_frames: int, kind: str = "linear") -> int:
    """DiSA: denoising steps of the frame_index-th generated frame since reset (0-based), annealed from n_max
    (first frame) to n_min (from frame n_anneal_frames on): n_min + floor((n_max - n_min) * w + 0.5) with
    w = 1 - f (linear) or (1 + cos(pi f)) / 2 (cosine), f = min(frame_index / n_anneal_frames, 1)."""
    if frame_index < 0:
        raise ValueError(f"schedule: frame_index must be non-negative (got {frame_index})")
    if not 1 <= n_min <= n_max:
        raise ValueError(f"schedule: disa needs 1 <= n_min <= n_max (got n_min {n_min}, n_max {n_max})")
    if n_anneal_frames < 0:
        raise ValueError(f"schedule: n_anneal_frames must be non-negative (got {n_anneal_frames})")
    if kind not in ("linear", "cosine"):
        raise ValueError(f"schedule: disa kind '{kind}' not supported (expected linear, cosine)")
    f = 1.0 if n_anneal_frames == 0 or frame_index >= n_anneal_frames else frame_index / n_anneal_frames
    w = 1.0 - f if kind == "linear" else 0.5 * (1.0 + math.cos(3.14159265358979323846 * f))
    return n_min + int(math.floor((n_max - n_min) * w + 0.5))


# ---- ring ---------------------------------------------------------------------------------------------
class Ring:
    """Slot bookkeeping of the K/V ring: frame pos p sits in slot p % n_slots; the age of a slot for the frame
    at pos is pos - slot_pos (0 if empty). The last n_slots - window pushes can be undone."""

    def __init__(self, n_slots: int, window: int):
        if not n_slots > window >= 1:
            raise ValueError(f"kv_cache: n_slots {n_slots} must exceed window (expected >= {window + 1})")
        self.n_slots, self.window = n_slots, window
        self.slot_pos = [-1] * n_slots
        self.pos = 0
        self._undo: list[int] = []

    def ages(self) -> list[int]:
        return [self.pos - p if p >= 0 else 0 for p in self.slot_pos]

    def push(self) -> int:
        slot = self.pos % self.n_slots
        self._undo = (self._undo + [self.slot_pos[slot]])[-(self.n_slots - self.window):]
        self.slot_pos[slot] = self.pos
        self.pos += 1
        return slot

    def rewind(self, n: int) -> None:
        if not 0 <= n <= len(self._undo):
            raise ValueError(f"kv_cache: cannot rewind {n} frames (expected 0..{len(self._undo)})")
        for _ in range(n):
            self.pos -= 1
            self.slot_pos[self.pos % self.n_slots] = self._undo.pop()


# ---- sampler ------------------------------------------------------------------------------------------
def euler_step(x: np.ndarray, out: np.ndarray, t: float, t_next: float, prediction: str) -> np.ndarray:
    """x float32; out is the graph's output at (x, t): 'velocity' or 'denoised'."""
    if prediction == "velocity":
        return x + F32(t_next - t) * out
    return out + F32(t_next / t) * (x - out)


def _velocity(x: np.ndarray, out: np.ndarray, t: float, prediction: str) -> np.ndarray:
    return out if prediction == "velocity" else (x - out) / F32(t)


def integrate(x: np.ndarray, times: list[float], predict: Callable[[np.ndarray, float], np.ndarray],
              sampler: str, prediction: str) -> np.ndarray:
    """Euler, or Heun (2 evaluations per step, the last step Euler) over times, from x (float32)."""
    n = len(times) - 1
    for i in range(n):
        t, t_next = times[i], times[i + 1]
        out = predict(x, t)
        if sampler == "euler" or i == n - 1:
            x = euler_step(x, out, t, t_next, prediction)
            continue
        u1 = _velocity(x, out, t, prediction)
        xp = euler_step(x, out, t, t_next, prediction)
        u2 = _velocity(xp, predict(xp, t_next), t_next, prediction)
        x = x + F32(t_next - t) * (F32(0.5) * (u1 + u2))
    return x


# ---- one frame of the loop ----------------------------------------------------------------------------
StepFn = Callable[..., tuple]  # (x, t, action, prev, cache_k, cache_v, ages[, prev_action][, prev2]) -> (out, k_new, v_new)


class ReferenceLoop:
    """The frame loop around a step function, consuming noise from a list in the runtime's order (per
    context frame: its context noise; per generated frame: initial noise, then context noise)."""

    def __init__(self, manifest: dict, step_fn: StepFn, noise: list[np.ndarray], sampler: str = "euler",
                 n_steps: int | None = None, disa: dict | None = None, kv_fn: Callable[..., tuple] | None = None):
        """kv_fn: the kv graph (same inputs, returns (k_new, v_new)) for the cache write, as the core runs it
        when the bundle has one; None: the step graph writes the cache."""
        kv, fr, sm = manifest["kv_cache"], manifest["frame"], manifest["sampler"]
        self.step_fn, self.noise, self.sampler, self.disa = step_fn, list(noise), sampler, disa
        self.kv_fn = kv_fn
        self.prediction = {"flow_euler": "velocity", "flow_euler_x0": "denoised"}[sm["kind"]]
        self.shape = (1, fr["channels"], fr["height"], fr["width"])
        self.cn = F32(sm["context_noise"])
        self.shift = sm["shift"]
        self.times = sm["times"] if n_steps in (None, 0, sm["n_steps"]) else flow_schedule(n_steps, sm["shift"])
        cache = (kv["n_layers"], 1, kv["n_heads"], kv["n_slots"], kv["tokens_per_frame"], kv["head_dim"])
        self.k, self.v = np.zeros(cache, F32), np.zeros(cache, F32)
        self.ring = Ring(kv["n_slots"], kv["window"])
        self.prev = np.zeros(self.shape, F32)
        # graphs with a prev_action input get the action that led to `prev` (no_action after a reset)
        self.no_action = int(manifest["no_action"])
        self.uses_prev_action = any(i["name"] == "prev_action" for i in manifest["graphs"]["step"]["inputs"])
        self.prev_action = self.no_action
        # graphs with a prev2 input get the frame before `prev` (prev itself after the first frame)
        self.uses_prev2 = any(i["name"] == "prev2" for i in manifest["graphs"]["step"]["inputs"])
        self.prev2 = self.prev
        self.n_generated = 0

    def _draw(self) -> np.ndarray:
        return np.asarray(self.noise.pop(0), F32).reshape(self.shape)

    def _run(self, x, t, action, fn=None):
        ages = np.array(self.ring.ages(), np.int64)
        extra = (np.array([self.prev_action], np.int64),) if self.uses_prev_action else ()
        extra += (self.prev2,) if self.uses_prev2 else ()
        return (fn or self.step_fn)(x, np.array([t], F32), np.array([action], np.int64), self.prev, self.k, self.v, ages, *extra)

    def push_frame(self, frame: np.ndarray, action: int) -> None:
        e = self._draw()
        x = (F32(1.0) - self.cn) * frame.reshape(self.shape).astype(F32) + self.cn * e
        if self.kv_fn is not None:
            k_new, v_new = self._run(x, self.cn, action, self.kv_fn)
        else:
            _, k_new, v_new = self._run(x, self.cn, action)
        slot = self.ring.push()
        self.k[:, :, :, slot], self.v[:, :, :, slot] = k_new, v_new
        self.prev2 = self.prev if self.ring.pos > 1 else x
        self.prev, self.prev_action = x, action

    def reset(self, frames: np.ndarray, actions) -> None:
        self.ring = Ring(self.ring.n_slots, self.ring.window)
        self.prev = self.prev2 = np.zeros(self.shape, F32)
        self.prev_action = self.no_action
        self.n_generated = 0
        for f, a in zip(frames, actions):
            self.push_frame(f, int(a))

    def step(self, action: int) -> np.ndarray:
        x = self._draw()
        times = self.times
        if self.disa:
            d = self.disa
            times = flow_schedule(disa_steps(self.n_generated, d["n_max"], d["n_min"], d["n_anneal_frames"],
                                             d.get("kind", "linear")), self.shift)
        x = integrate(x, times, lambda xx, t: self._run(xx, t, action)[0], self.sampler, self.prediction)
        x = np.clip(x, F32(-1.0), F32(1.0))
        self.push_frame(x, action)
        self.n_generated += 1
        return x.reshape(self.shape[1:])
