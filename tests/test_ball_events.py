"""Ball bounces read off palette-index frames (data/ball_events.py) agree with the RGB probe the evaluation uses,
and weight the trainer's sampling as configured."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")


def _store_and_episode():
    from nextframe.data.frame_store import FrameStore
    from nextframe.data.record import record_episode

    ep = record_episode("Breakout", 500, 6100, 0)[0]
    return FrameStore.from_episodes([(ep.frames, ep.actions), (ep.frames[:50], ep.actions[:49])], 0), ep


def test_ball_centres_match_the_rgb_probe_and_bounces_flip_direction():
    from nextframe.data.ball_events import ball_centres, bounce_frames
    from nextframe.evaluation.breakout_probe import ball_position

    store, ep = _store_and_episode()
    n = len(ep.frames)
    c = ball_centres(store.frames, store.palette_rgb)[:n].numpy()
    ref = np.array([ball_position(f) for f in ep.frames])
    assert np.array_equal(np.isfinite(ref[:, 0]), np.isfinite(c[:, 0])) and np.isfinite(c[:, 0]).sum() > n // 2
    seen = np.isfinite(ref[:, 0])
    assert np.abs(ref[seen] - c[seen]).max() < 0.01
    b = bounce_frames(torch.from_numpy(c), store.episode_start[:n]).numpy()
    v = np.diff(ref, axis=0)
    expect = np.zeros(n, bool)
    expect[2:] = ((v[1:] * v[:-1]) < 0).any(axis=1)
    assert np.array_equal(b, expect) and 3 <= b.sum() < n // 10
    # no bounce is read across an episode boundary: the second episode's first two frames have no history
    both = bounce_frames(ball_centres(store.frames, store.palette_rgb), store.episode_start).numpy()
    assert not both[n:n + 2].any() and np.array_equal(both[:n], b)


def test_bounce_weight_samples_bounce_targets_more_often():
    store, _ = _store_and_episode()
    assert store.weight_events((), 1.0) == {"event_share": 0.0} and store.target_weights is None
    shares = store.weight_events(((57, 93),), 2.0, bounce_weight=5.0)
    w = store.target_weights
    assert 0 < shares["bounce_share"] < 0.2 and set(w.unique().tolist()) <= {1.0, 2.0, 5.0}
    assert abs(float((w == 5.0).float().mean()) - shares["bounce_share"]) < 1e-6
    draws = store.sample_targets(20000, torch.Generator().manual_seed(0))
    picked = torch.isin(draws, store.targets[w == 5.0]).float().mean()
    expected = float((w * (w == 5.0)).sum() / w.sum())
    assert abs(float(picked) - expected) < 0.02


def test_bounce_weight_is_a_validated_config_field():
    from nextframe.training.config import TrainConfig

    assert TrainConfig(bounce_weight=4.0).bounce_weight == 4.0
    with pytest.raises(ValueError, match="bounce_weight"):
        TrainConfig(bounce_weight=0.0)


def test_midplay_splits_ball_found_at_the_first_real_bounce(monkeypatch):
    """around_first_bounce: frames before the clip's first real bounce and from it on, each clip cut at its own."""
    import nextframe.evaluation.midplay as mp

    paths = {0: [(50, 100), (52, 104), (54, 108), (56, 104), (58, 100), (60, 96)],  # flips at frame 3
             1: [(50, 100), (52, 104), (54, 108), (56, 112), (58, 116), (60, 120)]}  # never
    monkeypatch.setattr(mp, "ball_position", lambda f: paths[int(f[0])][int(f[1])])
    clips = [mp.Clip(np.array([[k, i] for i in range(6)]), np.zeros(6, np.int64), f"c{k}") for k in (0, 1)]
    assert mp.first_bounce(clips[0].frames, 2) == 1 and mp.first_bounce(clips[1].frames, 2) is None
    found = [{"ball_found": np.array([1.0, 0.0, 0.0, np.nan])}, {"ball_found": np.array([1.0, 1.0, 0.0, 1.0])}]
    r = mp.around_first_bounce(clips, found, 2)
    assert r == {"before": 0.8, "from_first_bounce": 0.0, "n_clips_with_a_bounce": 1, "horizon": 30}


def test_turns_count_bounces_through_a_frame_without_motion_on_an_axis():
    """A ball that reaches the wall in a frame where it does not move in x and leaves it in the next: no sign flip
    between consecutive motions, two turns; numpy and torch agree, and no ball is never a turn."""
    from nextframe.data.ball_events import bounce_frames
    from nextframe.evaluation.breakout_probe import direction_flips, direction_turns

    c = np.array([[20, 100], [17, 102], [14, 104], [14, 106], [17, 108], [20, 110], [np.nan, np.nan], [26, 114],
                  [29, 116]], dtype=np.float64)
    assert not direction_flips(c).any()
    turns = direction_turns(c)
    assert turns.tolist() == [False, True, True, False, False, False, False]
    assert direction_turns(torch.from_numpy(c)).tolist() == turns.tolist()
    start = torch.zeros(len(c), dtype=torch.int64)
    b = bounce_frames(torch.from_numpy(c), start, "turn")
    assert b.nonzero().flatten().tolist() == [3, 4] and not bounce_frames(torch.from_numpy(c), start).any()
    with pytest.raises(ValueError, match="unknown bounce rule 'wall'"):
        bounce_frames(torch.from_numpy(c), start, "wall")


def test_turn_rule_weighs_every_flip_and_more():
    store, _ = _store_and_episode()
    flip = store.weight_events((), 1.0, bounce_weight=5.0)["bounce_share"]
    flip_w = store.target_weights.clone()
    turn = store.weight_events((), 1.0, bounce_weight=5.0, bounce_rule="turn")["bounce_share"]
    assert turn > flip > 0 and bool((store.target_weights[flip_w == 5.0] == 5.0).all())


def test_bounce_rule_is_validated():
    from nextframe.training.config import TrainConfig

    assert TrainConfig(bounce_rule="turn").bounce_rule == "turn"
    with pytest.raises(ValueError, match="bounce_rule must be flip or turn"):
        TrainConfig(bounce_rule="wall")
