"""Session: open a bundle, pick a backend, run the C++ frame loop (``nextframe._core.FrameLoop``).

    with Session("runs/bundle") as s:
        s.reset(context_frames_uint8, context_actions)   # [n, H, W, 3] uint8 at model resolution
        frame = s.step("RIGHT")                           # uint8 [H, W, 3]
        print(s.stats()["latency_p50_ms"])

Arguments are checked here with one-line ValueErrors ("session: ..."); errors from the core arrive as
ValueError (bundle, shapes, actions) or RuntimeError (ONNX Runtime, execution) unchanged. The native-
resolution decoder runs in the core too (``nextframe._core.NativeDecoder``): pass the last context frame at
native resolution to reset() and step_native() returns native frames, decoded with the GIL released.
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
from typing import Sequence

import numpy as np

from nextframe import _core

BACKENDS = ("auto", "ort-cpu", "ort-cuda", "trt", "aoti", "aoti-cuda")
TRT_PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8")
SAMPLERS = ("euler", "heun")


def find_ort_lib() -> str:
    """Path of the onnxruntime wheel's libonnxruntime.so.* ('' if the wheel is not installed). The package is
    located without importing it, so its Python bindings (a second copy of ORT) are not loaded."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        return ""
    libs = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "capi", "libonnxruntime.so*")))
    return libs[0] if libs else ""


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Frames in [-1, 1] -> uint8 levels, in float32 ops (the C++ decoder's decode_model_frame does the same)."""
    return np.clip(np.round((x + np.float32(1.0)) * np.float32(127.5)), 0, 255).astype(np.uint8)


def _int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"session: {name} must be an int (got {type(value).__name__})")
    if value < low:
        raise ValueError(f"session: {name} must be at least {low} (got {value})")
    return int(value)


class Session:
    def __init__(self, bundle_dir: str, backend: str = "auto", seed: int = 0, speculate: bool = False,
                 n_steps: int | None = None, threads: int = 2, sampler: str = "euler", disa: dict | None = None,
                 n_warmup_frames: int = 2, ort_lib: str | None = None, trt_precision: str | None = None,
                 use_kv_graph: bool = True):
        """backend: auto | ort-cpu | ort-cuda | aoti | aoti-cuda (the bundle's AOTInductor package for the CPU / GPU,
        from `nextframe export --aoti`, run through libtorch by the core's plugin) | trt (the bundle's prebuilt
        TensorRT engine for this GPU, from
        `nextframe export --trt`; RuntimeError "engine: backend 'trt' not built ..." when nextframe._core was
        built without TensorRT). trt_precision: which engine trt runs (fp32, fp16, bf16, fp8, int8; None: the
        first one built for this GPU). n_steps: None keeps the manifest's schedule. sampler: euler | heun.
        disa: {"n_max", "n_min", "n_anneal_frames", "kind": linear | cosine} anneals the step count per frame
        (n_steps is then unused). ort_lib: libonnxruntime path (default: the onnxruntime wheel's;
        $NEXTFRAME_ORT_LIB wins over both). use_kv_graph: write the cache with the bundle's kv graph (ONNX
        Runtime backends; the step graph otherwise), False: always the step graph (same frames, more work)."""
        if backend not in BACKENDS:
            raise ValueError(f"session: unknown backend '{backend}' (expected {', '.join(BACKENDS)})")
        if trt_precision is not None and trt_precision not in TRT_PRECISIONS:
            raise ValueError(f"session: unknown trt_precision '{trt_precision}' (expected {', '.join(TRT_PRECISIONS)})")
        if trt_precision is not None and backend != "trt":
            raise ValueError(f"session: trt_precision needs backend 'trt' (got backend '{backend}')")
        if sampler not in SAMPLERS:
            raise ValueError(f"session: unknown sampler '{sampler}' (expected {', '.join(SAMPLERS)})")
        seed = _int("seed", seed, 0)
        threads = _int("threads", threads, 1)
        n_warmup_frames = _int("n_warmup_frames", n_warmup_frames, 0)
        n_steps = 0 if n_steps is None else _int("n_steps", n_steps, 1)
        d = {"n_max": 0, "n_min": 1, "n_anneal_frames": 0, "kind": "linear"}
        if disa is not None:
            unknown = sorted(set(disa) - set(d))
            if unknown or not {"n_max", "n_min", "n_anneal_frames"} <= set(disa):
                raise ValueError(f"session: disa needs keys n_max, n_min, n_anneal_frames[, kind] (got {sorted(disa)})")
            d.update(disa)
            _int("disa n_max", d["n_max"], 1)
        self.bundle = _core.Bundle.open(str(bundle_dir))
        self._loop = _core.FrameLoop(
            self.bundle, backend=backend, threads=threads, ort_lib=find_ort_lib() if ort_lib is None else ort_lib,
            seed=seed, speculate=bool(speculate), n_steps=n_steps, sampler=sampler, disa_n_max=d["n_max"],
            disa_n_min=d["n_min"], disa_n_anneal_frames=d["n_anneal_frames"], disa_kind=d["kind"],
            n_warmup_frames=n_warmup_frames, trt_precision=trt_precision or "", use_kv_graph=bool(use_kv_graph))
        f = self.bundle.frame
        self.height, self.width, self.channels = f["height"], f["width"], f["channels"]
        self._decoder = _core.NativeDecoder(self.bundle) if self.bundle.has_native_decoder else None
        # a model at the game's own resolution (frame-stack bundles): its frames are the native frames
        self.native_resolution = self._decoder is None and (f["native_height"], f["native_width"]) == (self.height, self.width)

    # ---- info -----------------------------------------------------------------------------------------
    @property
    def actions(self) -> list[str]:
        return list(self.bundle.actions)

    @property
    def n_actions(self) -> int:
        return self.bundle.n_actions

    @property
    def no_action(self) -> int:
        return self.bundle.no_action

    @property
    def context_depth(self) -> int:
        """Real frames a reset should give so that nothing the model reads is a stand-in: the K/V window of a
        transformer bundle, the frame history of a frame-stack one, whichever is deeper."""
        b = self.bundle
        return max(b.history_depth, b.kv_cache["window"] if b.uses_cache else 0)

    @property
    def backend(self) -> str:
        return self.loop.backend

    @property
    def backend_note(self) -> str:
        return self.loop.backend_note

    @property
    def loop(self) -> "_core.FrameLoop":
        if self._loop is None:
            raise ValueError("session: closed")
        return self._loop

    # ---- frames -----------------------------------------------------------------------------------------
    def _action(self, action, allow_no_action: bool) -> int:
        if isinstance(action, str):
            if action not in self.bundle.actions:
                raise ValueError(f"session: unknown action '{action}' (expected one of {', '.join(self.bundle.actions)})")
            return self.bundle.actions.index(action)
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
            raise ValueError(f"session: action must be an int or an action name (got {type(action).__name__})")
        hi = self.no_action if allow_no_action else self.n_actions - 1
        if not 0 <= action <= hi:
            raise ValueError(f"session: unknown action {int(action)} (expected 0..{hi})")
        return int(action)

    def _frames(self, frames) -> np.ndarray:
        """uint8 [n, H, W, 3] or float [n, 3, H, W] in [-1, 1] -> float32 [n, 3, H, W], C-contiguous."""
        a = np.asarray(frames)
        h, w, c = self.height, self.width, self.channels
        expected = f"expected uint8 [n, {h}, {w}, {c}] or float [n, {c}, {h}, {w}] in [-1, 1]"
        if a.dtype == np.uint8:
            if a.ndim != 4 or a.shape[1:] != (h, w, c):
                raise ValueError(f"session: frames shape {list(a.shape)} ({expected})")
            x = a.astype(np.float32) / np.float32(127.5) - np.float32(1.0)  # float32 ops, as the dataset does
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if a.dtype in (np.float32, np.float64):
            if a.ndim != 4 or a.shape[1:] != (c, h, w):
                raise ValueError(f"session: frames shape {list(a.shape)} ({expected})")
            x = np.ascontiguousarray(a, dtype=np.float32)
            if x.size and not np.isfinite(x).all():
                raise ValueError("session: float frames must lie in [-1, 1] (got non-finite values)")
            if x.size and not (x.min() >= -1.0 and x.max() <= 1.0):
                raise ValueError(f"session: float frames must lie in [-1, 1] (got {float(x.min()):.4g}..{float(x.max()):.4g})")
            return x
        raise ValueError(f"session: frames dtype {a.dtype} not supported ({expected})")

    def reset(self, frames, actions: Sequence, native_reference=None) -> None:
        """Context frames and the action that led to each (no_action for a frame with none). native_reference:
        the last context frame at native resolution (uint8 [native_height, native_width, 3]); it turns on
        step_native(), whose static detail it supplies."""
        x = self._frames(frames)
        acts = list(actions)
        if len(acts) != x.shape[0]:
            raise ValueError(f"session: {len(acts)} actions for {x.shape[0]} frames (expected one per frame)")
        a = np.array([self._action(v, allow_no_action=True) for v in acts], dtype=np.int64)
        reference = None
        if native_reference is not None and not self.native_resolution:
            reference = self._native_reference(native_reference, x[-1] if len(x) else None)
        self.loop.reset(x, a)  # everything was checked above and the core checks before it changes anything
        if reference is not None:
            self._decoder.set_reference(*reference)

    def set_native_reference(self, native, lowres=None) -> None:
        """The real frame whose sharp static detail step_native() transfers: native uint8 [native_height,
        native_width, 3] and the same frame at model resolution (uint8 [H, W, 3] or float [3, H, W] in [-1, 1])."""
        reference = self._native_reference(native, lowres)  # validates first (there may be no decoder at all)
        self._decoder.set_reference(*reference)

    def _native_reference(self, native, lowres) -> tuple[np.ndarray, np.ndarray]:
        """Validated (native uint8 [h, w, 3], model-resolution uint8) for the decoder; changes nothing."""
        if self._decoder is None:
            raise ValueError("session: bundle has no native_decoder section (use step() for model-resolution frames)")
        nat = np.asarray(native)
        want = tuple(self._decoder.native_shape)
        if nat.dtype != np.uint8 or nat.shape != want:
            raise ValueError(f"session: native_reference must be uint8 {list(want)} (got {nat.dtype} {list(nat.shape)})")
        if lowres is None:
            raise ValueError("session: native_reference needs at least one context frame")
        low = self._frames(np.asarray(lowres)[None])[0]  # validated float [3, H, W], whichever form was given
        return np.ascontiguousarray(nat), to_uint8(low)

    def step_raw(self, action) -> np.ndarray:
        """The next frame as the model sees it: float32 [3, H, W] in [-1, 1]."""
        out = self.loop.step(self._action(action, allow_no_action=False))
        return out.reshape(self.channels, self.height, self.width)

    def step(self, action) -> np.ndarray:
        """The next frame at model resolution: uint8 [H, W, 3]."""
        return to_uint8(self.step_raw(action).transpose(1, 2, 0))

    def step_native(self, action) -> np.ndarray:
        """The next frame at native resolution (uint8 [native_height, native_width, 3]), decoded in the core
        from the same frame step() would return. Needs a native reference (reset(..., native_reference=...)),
        except for a bundle at native resolution, whose step() frames are native already."""
        if self.native_resolution:
            return self.step(action)
        if self._decoder is None or not self._decoder.has_reference:
            raise ValueError("session: step_native needs a native reference frame (reset(..., native_reference=frame))")
        return self._decoder.decode_model_frame(self.step_raw(action))

    def feed_noise(self, values) -> None:
        """Switch to fed noise: standard normal values consumed in order (C order within an array). Per
        context frame one [3, H, W] draw; per generated frame the initial noise, then its context noise."""
        a = np.asarray(values)
        if a.dtype not in (np.float32, np.float64):
            raise ValueError(f"session: noise dtype {a.dtype} not supported (expected float32)")
        a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
        if not np.isfinite(a).all():
            raise ValueError("session: noise must be finite")
        self.loop.feed_noise(a)

    # ---- state ------------------------------------------------------------------------------------------
    @property
    def pos(self) -> int:
        return self.loop.pos

    @property
    def slot_pos(self) -> list[int]:
        return self.loop.slot_pos

    def stats(self) -> dict:
        s = json.loads(self.loop.stats_json())
        s["backend"] = self.backend
        s["uses_kv_graph"] = self.loop.uses_kv_graph
        return s

    def close(self) -> None:
        """Stops the speculation worker and releases the engine. Later calls raise ValueError."""
        self._loop = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
