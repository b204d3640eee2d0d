"""The next-frame transformer: the KV-cached sampler gives the frames of the no-cache reference (max abs
difference <= 1e-5 in fp32, through a ring wrap-around), keys carry no absolute position (a cache 1,000
frames in behaves like one 4 frames in), and bad shapes and configs fail with one-line errors."""
from __future__ import annotations

import pytest
import torch

from conftest import randomized_model, tiny_config
from nextframe.models.config import ModelConfig
from nextframe.models.dit import patchify, unpatchify
from nextframe.models.flow import flow_schedule
from nextframe.models.sampling import CachedSampler, KvCache, UncachedSampler

TOL = 1e-5  # fp32 CPU, the same ops in a different grouping (concat of cached keys vs one sequence)


def test_patchify_round_trip():
    x = torch.randn(2, 5, 3, 16, 24)
    p = patchify(x, 8)
    assert p.shape == (2, 5, 6, 192)
    assert torch.equal(unpatchify(p, 8, 3, 16, 24), x)
    assert torch.equal(p[0, 0, 0], x[0, 0, :, :8, :8].reshape(-1))  # first patch is the top-left corner


@pytest.mark.parametrize("context_noise, prev_action, refiner", [(0.0, False, 0), (0.1, False, 0), (0.1, True, 0), (0.1, True, 4)])
def test_cached_equals_uncached_through_wraparound(context_noise, prev_action, refiner):
    cfg = tiny_config(context=3, prev_action_input=prev_action, motion_refiner=refiner)
    model = randomized_model(cfg)
    frames = torch.rand(4, 3, 16, 16) * 2 - 1
    outs = []
    for cls in (CachedSampler, UncachedSampler):
        s = cls(model, n_steps=3, context_noise=context_noise, generator=torch.Generator().manual_seed(11))
        s.reset(frames, [4, 0, 1, 2])
        outs.append(torch.stack([s.step(a) for a in [0, 1, 2, 3, 3, 2, 1, 0]]))  # 12 frames through 3 slots
    assert (outs[0] - outs[1]).abs().max().item() <= TOL
    assert outs[0].std() > 0.05  # the frames carry signal, so the comparison means something


def test_ring_slots_and_ages():
    cfg = tiny_config(context=4)
    cache = KvCache(randomized_model(cfg))
    assert cache.ages().tolist() == [0, 0, 0, 0]
    k = torch.zeros(cfg.depth, 1, cfg.heads, cfg.tokens_per_frame, cfg.head_dim)
    for _ in range(10):
        cache.push(k, k)
    # frames 8, 9 sit in slots 0, 1; frames 6, 7 in slots 2, 3; the next frame is position 10
    assert cache.slot_pos == [8, 9, 6, 7]
    assert cache.ages().tolist() == [2, 1, 4, 3]


def test_keys_carry_no_absolute_position():
    """Same cached K/V content at the same ages -> same output, whether 4 or 1,003 frames were pushed."""
    cfg = tiny_config(context=4)
    model = randomized_model(cfg)
    g = torch.Generator().manual_seed(3)
    per_age = [torch.randn(cfg.depth, 1, cfg.heads, cfg.tokens_per_frame, cfg.head_dim, generator=g) for _ in range(4)]
    outs = []
    for n_before in (0, 999):
        cache = KvCache(model)
        cache.n_pushed = n_before
        for age in (4, 3, 2, 1):  # oldest first
            cache.push(per_age[age - 1], -per_age[age - 1])
        x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
        v, _, _ = model.step(x, torch.tensor([0.5]), torch.tensor([2]), torch.zeros_like(x), cache.k, cache.v, cache.ages())
        outs.append(v)
    assert cache.slot_pos != [0, 1, 2, 3]  # the long run really sits at other slots
    assert (outs[0] - outs[1]).abs().max().item() <= TOL


def test_output_depends_on_action_and_context():
    model = randomized_model(tiny_config())
    x = torch.randn(1, 3, 16, 16)
    cache = KvCache(model)
    t = torch.tensor([0.5])
    v0, _, _ = model.step(x, t, torch.tensor([0]), x, cache.k, cache.v, cache.ages())
    v1, _, _ = model.step(x, t, torch.tensor([1]), x, cache.k, cache.v, cache.ages())
    assert (v0 - v1).abs().max() > 1e-3


def test_previous_action_conditions_the_frame_and_is_required():
    model = randomized_model(tiny_config(prev_action_input=True))
    x = torch.randn(1, 3, 16, 16)
    cache = KvCache(model)
    t, a = torch.tensor([0.5]), torch.tensor([2])
    v0, _, _ = model.step(x, t, a, x, cache.k, cache.v, cache.ages(), torch.tensor([0]))
    v1, _, _ = model.step(x, t, a, x, cache.k, cache.v, cache.ages(), torch.tensor([3]))
    assert (v0 - v1).abs().max() > 1e-3
    with pytest.raises(ValueError, match="prev_action"):
        model.step(x, t, a, x, cache.k, cache.v, cache.ages())


def test_flow_schedule():
    assert flow_schedule(2) == [1.0, 0.5, 0.0]
    s = flow_schedule(4, shift=3.0)
    assert s[0] == 1.0 and s[-1] == 0.0 and s[2] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="schedule: n_steps must be at least 1"):
        flow_schedule(0)


def test_refiner_gate_leaves_static_pixels_alone():
    model = randomized_model(tiny_config(motion_refiner=4, refiner_gate=1))
    frame = torch.rand(1, 3, 16, 16) * 2 - 1
    prev = torch.rand(1, 3, 16, 16) * 2 - 1
    prev2 = prev.clone()
    prev2[0, 1, 5, 7] += 0.5  # one pixel changed between prev2 and prev
    prev2[0, :, 12, 12] += 0.25  # below GATE_THRESHOLD (a faint error, not a move)
    near = torch.zeros(16, 16, dtype=torch.bool)
    near[4:7, 6:9] = True
    with torch.no_grad():
        out = model.refiner(frame, prev, prev2)
    assert torch.equal(out[..., ~near], frame[..., ~near])
    assert (out[..., near] - frame[..., near]).abs().amin() > 1e-4  # every pixel of the gate is corrected
    with pytest.raises(ValueError, match="refiner_gate needs motion_refiner"):
        tiny_config(refiner_gate=2)


def test_motion_refiner_needs_the_frame_before_prev():
    model = randomized_model(tiny_config(motion_refiner=4))
    cache = KvCache(model)
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="pass prev2"):
        model.step(x, torch.tensor([0.5]), torch.tensor([0]), x, cache.k, cache.v, cache.ages())
    a, _, _ = model.step(x, torch.tensor([0.5]), torch.tensor([0]), x, cache.k, cache.v, cache.ages(), prev2=x)
    b, _, _ = model.step(x, torch.tensor([0.5]), torch.tensor([0]), x, cache.k, cache.v, cache.ages(), prev2=-x)
    assert (a - b).abs().max() > 1e-3  # the refiner reads it


def test_config_errors():
    with pytest.raises(ValueError, match="model config: resolution 64x60 not divisible by patch 8"):
        ModelConfig(width=60)
    with pytest.raises(ValueError, match="model config: dim 100 not divisible by heads 3"):
        ModelConfig(dim=100)
    with pytest.raises(ValueError, match=r"model config: unknown keys \['wdith'\]"):
        ModelConfig.from_dict({"wdith": 3})


def test_forward_sequence_rejects_bad_positions():
    model = randomized_model(tiny_config())
    clean = torch.zeros(1, 2, 3, 16, 16)
    with pytest.raises(ValueError, match="forward_sequence: noisy_pos"):
        model.forward_sequence(clean, torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long),
                               clean[:, :1], torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long), [5])


@pytest.mark.slow
def test_ten_thousand_frame_rollout_stays_like_a_short_one():
    """Run with `pytest -m slow`. Ages never leave 1..context, and frame 10,000 is produced from the same
    inputs (cache content at the same ages) as it would be 100 frames in: replaying the last window into a
    fresh cache at position 0 gives the same frame."""
    cfg = tiny_config(context=3)
    model = randomized_model(cfg)
    s = CachedSampler(model, n_steps=1, context_noise=0.05, generator=torch.Generator().manual_seed(0))
    s.reset(torch.zeros(3, 3, 16, 16), [4, 0, 0])
    for i in range(10_000):
        frame = s.step(i % 4)
        assert sorted(s.cache.ages().tolist()) == [1, 2, 3]
    assert torch.isfinite(frame).all()
    fresh = KvCache(model)
    order = sorted(range(3), key=lambda k: s.cache.slot_pos[k])
    for k in order:
        fresh.push(s.cache.k[:, :, :, k], s.cache.v[:, :, :, k])
    x = torch.randn(1, 3, 16, 16)
    args = (x, torch.tensor([0.5]), torch.tensor([1]), s.prev)
    a, _, _ = model.step(*args, s.cache.k, s.cache.v, s.cache.ages())
    b, _, _ = model.step(*args, fresh.k, fresh.v, fresh.ages())
    assert fresh.n_pushed == 3 and s.cache.n_pushed == 10_003
    assert (a - b).abs().max().item() <= TOL


@pytest.mark.parametrize("prev_frame, refiner", [(True, 0), (True, 4), (False, 0)])
def test_batch_one_step_equals_its_row_of_a_batch(prev_frame, refiner):
    """step runs batch 1 on [N, D] tokens (what the exported graph does) and larger batches on [B, N, D]:
    the two paths agree row by row, for the denoising call and for the kv-only cache write."""
    cfg = tiny_config(context=3, prev_action_input=True, prev_frame_input=prev_frame, motion_refiner=refiner)
    model = randomized_model(cfg)
    g = torch.Generator().manual_seed(5)
    b, n_slots = 2, cfg.context + 1
    x, prev, prev2 = (torch.rand(b, 3, 16, 16, generator=g) * 2 - 1 for _ in range(3))
    shape = (cfg.depth, b, cfg.heads, n_slots, cfg.tokens_per_frame, cfg.head_dim)
    ck, cv = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    t, a, pa, ages = torch.tensor([0.7, 0.2]), torch.tensor([1, 3]), torch.tensor([4, 0]), torch.tensor([0, 1, 3, 2])
    kw = {"prev2": prev2} if refiner else {}
    for kv_only in (False, True):
        both = model.step(x, t, a, prev, ck, cv, ages, pa, kv_only=kv_only, **kw)
        for i in range(b):
            row = slice(i, i + 1)
            one = model.step(x[row], t[row], a[row], prev[row], ck[:, row], cv[:, row], ages, pa[row], kv_only=kv_only,
                             **({"prev2": prev2[row]} if refiner else {}))
            if not kv_only:
                assert one[0].shape == (1, 3, 16, 16)
                assert (one[0] - both[0][row]).abs().max().item() <= TOL
            assert (one[1] - both[1][:, row]).abs().max().item() <= TOL
            assert (one[2] - both[2][:, row]).abs().max().item() <= TOL
