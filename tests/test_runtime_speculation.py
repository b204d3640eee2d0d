"""Speculation with rollback gives exactly the plain loop's frames: for the same seed and actions, every
frame is equal bit for bit whether the speculative frame was a hit (returned at once) or a miss (ring
rewound by one, prev restored, the frame recomputed from the same noise), including across a reset and
after switching to fed noise. Hits and misses are both exercised, and counted in stats()."""
from __future__ import annotations

import numpy as np
import pytest

from nextframe.runtime import Session
from runtime_helpers import tiny_bundle

ACTIONS = [1, 1, 1, 2, 2, 0, 3, 3, 3, 3, 1, 2, 2, 0, 0]  # runs (hits) and changes (misses)


def _run(speculate: bool, seed: int = 9, reset_at: int | None = None,
         prev_action: bool = False, context_noise: float = 0.05, refiner: int = 0) -> tuple[np.ndarray, dict, list]:
    bundle, _ = tiny_bundle(prev_action, context_noise, refiner)
    ctx = np.zeros((2, 16, 16, 3), np.uint8)
    ctx[:, 4:10, 5:9] = 255
    with Session(bundle, backend="ort-cpu", threads=1, seed=seed, speculate=speculate) as s:
        s.reset(ctx, [4, 1])
        frames = []
        for i, a in enumerate(ACTIONS):
            if i == reset_at:
                s.reset(ctx, [4, 1])
            frames.append(s.step_raw(a))
        return np.stack(frames), s.stats(), s.slot_pos


# a rollback must restore the previous action (and the frame before prev) too; at context noise 0 the seeded
# stream skips context draws, so a rolled-back speculation's carried draws must still line up
@pytest.mark.parametrize("prev_action, context_noise, refiner", [(False, 0.05, 0), (True, 0.05, 0), (False, 0.0, 0),
                                                                 (True, 0.05, 4)])
def test_speculation_is_bit_identical_with_hits_and_misses(prev_action, context_noise, refiner):
    plain, plain_stats, plain_slots = _run(False, prev_action=prev_action, context_noise=context_noise, refiner=refiner)
    spec, stats, spec_slots = _run(True, prev_action=prev_action, context_noise=context_noise, refiner=refiner)
    assert np.array_equal(plain, spec)
    # a step hits when its action repeats the previous one: 8 repeats, 6 changes in ACTIONS
    assert stats["n_speculation_hits"] == 8
    assert stats["n_speculation_misses"] == 6
    assert plain_stats["n_speculation_hits"] == plain_stats["n_speculation_misses"] == 0
    assert plain.std() > 0.05


@pytest.mark.parametrize("context_noise", [0.05, 0.0])
def test_speculation_across_a_reset(context_noise):
    plain, _, _ = _run(False, seed=4, reset_at=6, context_noise=context_noise)
    spec, stats, _ = _run(True, seed=4, reset_at=6, context_noise=context_noise)
    assert np.array_equal(plain, spec)
    assert stats["n_speculation_hits"] > 0 and stats["n_speculation_misses"] > 0


def test_speculation_with_fed_noise_matches_plain():
    bundle, _ = tiny_bundle()
    noise = np.random.default_rng(2).standard_normal((2 + 2 * 6) * 768).astype(np.float32)
    out = []
    for speculate in (False, True):
        with Session(bundle, backend="ort-cpu", threads=1, speculate=speculate) as s:
            s.feed_noise(noise)
            s.reset(np.zeros((2, 3, 16, 16), np.float32), [4, 0])
            out.append(np.stack([s.step_raw(a) for a in [2, 2, 2, 1, 1, 3]]))
            if speculate:
                st = s.stats()
                assert st["n_speculation_hits"] == 3 and st["n_speculation_misses"] == 2
                assert st["n_speculation_skipped"] == 1  # no fed noise left for a 7th frame
    assert np.array_equal(out[0], out[1])
