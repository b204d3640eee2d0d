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

from nextframe.models.palette import snap_numpy

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


# ---- graph roles (csrc/graph_roles.h) ---------------------------------------------------------------
# the role of a graph io written before roles were declared, by its name: (role, back)
LEGACY_INPUT_ROLES = {"x": ("noisy_frame", 0), "t": ("noise_level", 0), "action": ("action", 0),
                      "prev": ("context_frame", 1), "prev2": ("context_frame", 2), "prev_action": ("context_action", 1),
                      "cache_k": ("cache_k", 0), "cache_v": ("cache_v", 0), "ages": ("cache_ages", 0)}
LEGACY_OUTPUT_ROLES = {"denoised": "prediction", "velocity": "prediction", "k_new": "k_new", "v_new": "v_new"}


def input_roles(graph: dict) -> list[tuple[str, str, int, list[int]]]:
    """(name, role, back, shape) of each input of a manifest graph, in order."""
    out = []
    for spec in graph["inputs"]:
        role, back = (spec["role"], int(spec.get("back", 0))) if "role" in spec else LEGACY_INPUT_ROLES[spec["name"]]
        out.append((spec["name"], role, back, list(spec["shape"])))
    return out


def output_roles(graph: dict) -> dict[str, str]:
    """role -> output name."""
    return {(o["role"] if "role" in o else LEGACY_OUTPUT_ROLES[o["name"]]): o["name"] for o in graph["outputs"]}


# ---- one frame of the loop ----------------------------------------------------------------------------
GraphFn = Callable[[dict], dict]  # {input name: array} -> {output name: array}


class ReferenceLoop:
    """The frame loop around graph functions, consuming noise from a list in the runtime's order (per
    context frame: its context noise; per generated frame: initial noise, then context noise). Inputs are
    fed by the roles the manifest declares; the history is every frame pushed since reset (as cached), read
    "k back" with the first frame standing in for missing ones, led by no action (csrc/frame_history.h)."""

    def __init__(self, manifest: dict, step_fn: GraphFn, noise: list[np.ndarray], sampler: str = "euler",
                 n_steps: int | None = None, disa: dict | None = None, kv_fn: GraphFn | None = None):
        """step_fn: the step graph; kv_fn: the kv graph (same inputs, k_new and v_new out) for the cache write,
        as the core runs it when the bundle has one; None: the step graph writes the cache."""
        fr, sm = manifest["frame"], manifest["sampler"]
        self.step_fn, self.noise, self.sampler, self.disa = step_fn, list(noise), sampler, disa
        self.kv_fn = kv_fn
        self.prediction = {"flow_euler": "velocity", "flow_euler_x0": "denoised"}[sm["kind"]]
        self.shape = (1, fr["channels"], fr["height"], fr["width"])
        self.cn = F32(sm["context_noise"])
        self.shift = sm["shift"]
        self.times = sm["times"] if n_steps in (None, 0, sm["n_steps"]) else flow_schedule(n_steps, sm["shift"])
        self.inputs = input_roles(manifest["graphs"]["step"])
        self.outputs = output_roles(manifest["graphs"]["step"])
        self.uses_cache = any(role == "cache_k" for _, role, _, _ in self.inputs)
        if self.uses_cache:
            kv = manifest["kv_cache"]
            cache = (kv["n_layers"], 1, kv["n_heads"], kv["n_slots"], kv["tokens_per_frame"], kv["head_dim"])
            self.k, self.v = np.zeros(cache, F32), np.zeros(cache, F32)
            self.ring = Ring(kv["n_slots"], kv["window"])
        self.no_action = int(manifest["no_action"])
        self.palette = np.asarray(fr["palette"], np.uint8) if "palette" in fr else None
        self.frames: list[np.ndarray] = []
        self.actions: list[int] = []
        self.n_generated = 0

    def _draw(self) -> np.ndarray:
        return np.asarray(self.noise.pop(0), F32).reshape(self.shape)

    def frame_back(self, k: int) -> np.ndarray:
        n = len(self.frames)
        return np.zeros(self.shape, F32) if n == 0 else self.frames[max(n - k, 0)]

    def action_back(self, k: int) -> int:
        n = len(self.frames)
        return self.actions[n - k] if n - k >= 0 else self.no_action

    def feed(self, x: np.ndarray, t: float, action: int) -> dict:
        feed = {}
        for name, role, back, shape in self.inputs:
            if role == "noisy_frame":
                feed[name] = x
            elif role == "noise_level":
                feed[name] = np.array([t], F32)
            elif role == "action":
                feed[name] = np.array([action], np.int64)
            elif role == "context_noise_level":
                feed[name] = np.array([self.cn], F32)
            elif role == "context_frame":
                feed[name] = self.frame_back(back)
            elif role == "context_frames":  # oldest first
                feed[name] = np.concatenate([self.frame_back(shape[1] - j) for j in range(shape[1])])[None]
            elif role == "context_action":
                feed[name] = np.array([self.action_back(back)], np.int64)
            elif role == "context_actions":
                feed[name] = np.array([[self.action_back(shape[1] - j) for j in range(shape[1])]], np.int64)
            elif role == "cache_k":
                feed[name] = self.k
            elif role == "cache_v":
                feed[name] = self.v
            elif role == "cache_ages":
                feed[name] = np.array(self.ring.ages(), np.int64)
            else:
                raise ValueError(f"reference: input '{name}' has unknown role '{role}'")
        return feed

    def push_frame(self, frame: np.ndarray, action: int) -> None:
        e = self._draw()
        x = (F32(1.0) - self.cn) * frame.reshape(self.shape).astype(F32) + self.cn * e
        if self.uses_cache:
            out = (self.kv_fn or self.step_fn)(self.feed(x, self.cn, action))
            slot = self.ring.push()
            self.k[:, :, :, slot] = out[self.outputs["k_new"]]
            self.v[:, :, :, slot] = out[self.outputs["v_new"]]
        self.frames.append(x)
        self.actions.append(int(action))

    def reset(self, frames: np.ndarray, actions) -> None:
        if self.uses_cache:
            self.ring = Ring(self.ring.n_slots, self.ring.window)
        self.frames, self.actions = [], []
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
        pred = self.outputs["prediction"]
        x = integrate(x, times, lambda xx, t: self.step_fn(self.feed(xx, t, action))[pred], self.sampler, self.prediction)
        x = np.clip(x, F32(-1.0), F32(1.0))
        if self.palette is not None:
            x = snap_numpy(x, self.palette)
        self.push_frame(x, action)
        self.n_generated += 1
        return x.reshape(self.shape[1:])
