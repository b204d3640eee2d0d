"""ImageSession: class-conditional image generation from an AR image bundle through the C++ core's masked-AR loop
(csrc/ar_loop.h), with the bundle's head schedules (fixed-step or DiSA) or its Distilled Decoding student.

    with ImageSession("bundle_dir") as s:
        images = s.generate("Breakout", n=4, seed=0)                # uint8 [4, H, W, 3], the default schedule
        images = s.generate("Pong", n=4, schedule="fixed")           # the teacher at its fixed step count
        images = s.generate("Pong", n=4, mode="dd1")                 # one network call per batch

Randomness is drawn here from the seed (NumPy PCG64: each image's token noise, then its token order) and handed to
the core, so a seed gives the same images on every backend, and tests feed the PyTorch reference the same values.
"""
from __future__ import annotations

import numpy as np

from nextframe import _core
from nextframe.runtime.session import find_ort_lib

MODES = ("ar", "dd1", "dd2")


class ImageSession:
    def __init__(self, bundle_dir: str, backend: str = "auto", threads: int = 2, batch: int = 8,
                 ort_lib: str | None = None):
        self.bundle = _core.ArBundle.open(bundle_dir)
        self._gen = _core.ArGenerator(self.bundle, backend=backend, threads=threads, batch=batch,
                                      ort_lib=find_ort_lib() if ort_lib is None else ort_lib)
        self.last_counters: dict = {}

    @property
    def classes(self) -> list[str]:
        return list(self.bundle.classes)

    @property
    def schedules(self) -> dict:
        return self.bundle.schedules

    @property
    def backend(self) -> str:
        return self._gen.backend

    @property
    def batch(self) -> int:
        return self._gen.batch

    def label(self, game) -> int:
        if isinstance(game, (int, np.integer)) and not isinstance(game, bool):
            if not 0 <= game < len(self.classes):
                raise ValueError(f"generate: class index {game} out of range (0..{len(self.classes) - 1})")
            return int(game)
        return self.bundle.class_index(str(game))

    def draw(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(noise float32 [n, L, D], order int64 [n, L]) from the seed."""
        rng = np.random.default_rng(seed)
        L, D = self.bundle.n_tokens, self.bundle.token_dim
        noise = rng.standard_normal((n, L, D), dtype=np.float32)
        order = np.stack([rng.permutation(L) for _ in range(n)]).astype(np.int64)
        return noise, order

    def head_steps(self, schedule: str | None) -> list[int]:
        name = schedule or self.bundle.default_schedule
        if name not in self.schedules:
            raise ValueError(f"generate: unknown schedule '{name}' (the bundle has {', '.join(sorted(self.schedules))})")
        return list(self.schedules[name]["steps"])

    def generate(self, game, n: int = 4, seed: int = 0, schedule: str | None = None, mode: str = "ar",
                 labels=None, noise=None, order=None, return_tokens: bool = False):
        """n images of one game (or per-image `labels`) -> uint8 [n, H, W, C] (and, with return_tokens, the tokens
        float32 [n, L, D]). noise / order override the seed's."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"generate: n must be a positive integer (got {n!r})")
        if mode not in MODES:
            raise ValueError(f"generate: unknown mode '{mode}' (expected one of {', '.join(MODES)})")
        if mode != "ar" and not self.bundle.has_dd:
            raise ValueError(f"generate: bundle {self.bundle.dir} has no Distilled Decoding student (mode {mode})")
        labs = np.full(n, self.label(game), np.int64) if labels is None else np.asarray([self.label(x) for x in labels], np.int64)
        if len(labs) != n:
            raise ValueError(f"generate: {len(labs)} labels for n={n}")
        if noise is None or order is None:  # the seed's draws, only where the caller gave none
            drawn_noise, drawn_order = self.draw(n, seed)
            noise = drawn_noise if noise is None else noise
            order = drawn_order if order is None else order
        noise, order = np.ascontiguousarray(noise, np.float32), np.ascontiguousarray(order, np.int64)
        for name, a in (("noise", noise), ("order", order)):
            if a.ndim < 1 or a.shape[0] != n:
                raise ValueError(f"generate: {name} has {a.shape[0] if a.ndim else 0} rows for n={n}")
        steps = self.head_steps(schedule) if mode == "ar" else []
        out, toks, b = [], [], self.batch
        totals: dict = {}
        for i in range(0, n, b):
            idx = np.arange(i, i + b) % n  # the last batch is filled up with repeats, then cut
            if mode == "ar":
                images, tokens = self._gen.generate(labs[idx], noise[idx], order[idx], steps)
            else:
                images, tokens = self._gen.generate_dd(labs[idx], noise[idx], 1 if mode == "dd1" else 2)
            out.append(images[: min(b, n - i)])
            toks.append(tokens[: min(b, n - i)])
            for k, v in self._gen.counters.items():
                totals[k] = totals.get(k, 0) + v
        self.last_counters = totals
        return (np.concatenate(out), np.concatenate(toks)) if return_tokens else np.concatenate(out)

    def close(self) -> None:
        self._gen = None

    def __enter__(self) -> "ImageSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
