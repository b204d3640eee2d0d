"""Integer and schedule facts agree exactly between the C++ core, runtime/reference.py and the PyTorch
side: flow schedules (bit for bit, also against nextframe.models.flow), DiSA step counts over a grid of
settings, and ring slots/ages after k pushes and a rewind (hand-checked case: 4 slots, window 3, 10
pushes -> slot_pos [8, 9, 6, 7], ages [2, 1, 4, 3]). Also one Euler step of the reference against
nextframe.models.flow.euler_update, bit for bit."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nextframe import _core
from nextframe.models.flow import euler_update, flow_schedule
from nextframe.runtime import reference as ref


@pytest.mark.parametrize("n_steps, shift", [(1, 1.0), (3, 1.0), (4, 3.0), (8, 0.5), (50, 2.0)])
def test_flow_schedule_identical(n_steps, shift):
    assert _core.flow_schedule(n_steps, shift) == ref.flow_schedule(n_steps, shift) == flow_schedule(n_steps, shift)


def test_disa_steps_identical():
    for n_max, n_min, n_anneal, kind in itertools.product([1, 4, 8, 25], [1, 2, 4], [0, 1, 5, 16], ["linear", "cosine"]):
        if n_min > n_max:
            continue
        for k in range(20):
            assert _core.disa_steps(k, n_max, n_min, n_anneal, kind) == ref.disa_steps(k, n_max, n_min, n_anneal, kind)
    assert [ref.disa_steps(k, 8, 2, 4, "linear") for k in range(6)] == [8, 7, 5, 4, 2, 2]


def test_disa_errors():
    with pytest.raises(ValueError, match=r"^schedule: disa kind 'step' not supported \(expected linear, cosine\)$"):
        _core.disa_steps(0, 4, 1, 2, "step")
    with pytest.raises(ValueError, match=r"^schedule: disa needs 1 <= n_min <= n_max \(got n_min 3, n_max 2\)$"):
        _core.disa_steps(0, 2, 3, 2)


def test_ring_against_reference():
    c = _core.KvCache(n_layers=1, n_heads=1, n_slots=4, window=3, tokens_per_frame=1, head_dim=1)
    r = ref.Ring(4, 3)
    kv = np.zeros((1, 1, 1, 1, 1), np.float32)
    for _ in range(10):
        c.push(kv, kv)
        r.push()
        assert c.slot_pos == r.slot_pos and c.ages() == r.ages()
    assert c.slot_pos == [8, 9, 6, 7] and c.ages() == [2, 1, 4, 3]
    c.push(kv, kv)
    r.push()
    c.rewind(1)
    r.rewind(1)
    assert c.slot_pos == r.slot_pos == [8, 9, 6, 7] and c.pos == r.pos == 10
    with pytest.raises(ValueError, match=r"^kv_cache: cannot rewind 1 frames \(expected 0\.\.0"):
        c.rewind(1)
    with pytest.raises(ValueError, match=r"^kv_cache: cannot rewind 1 frames \(expected 0\.\.0\)$"):
        r.rewind(1)


def test_euler_step_matches_torch_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    x, d = torch.randn(3, 16, 16, generator=g), torch.randn(3, 16, 16, generator=g)
    times = flow_schedule(3)
    for t, t_next in zip(times[:-1], times[1:]):
        want = euler_update(x, d, t, t_next).numpy()
        got = ref.euler_step(x.numpy(), d.numpy(), t, t_next, "denoised")
        assert got.dtype == np.float32 and np.array_equal(got, want)


def test_sha256_binding():
    assert _core.sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
