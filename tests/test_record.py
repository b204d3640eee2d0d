"""Recording: real ALE Breakout episodes in the episode format, deterministic per seed, policies from the mix."""
from __future__ import annotations

import numpy as np
import pytest

from nextframe.data.episode import load_episode
from nextframe.data.policies import POLICY_MIX
from nextframe.data.record import record, record_episode


def test_record_writes_valid_deterministic_episodes(tmp_path):
    a = record("Breakout", 2, 40, str(tmp_path / "a"), seed=5, progress=False)
    b = record("Breakout", 2, 40, str(tmp_path / "b"), seed=5, progress=False)
    for pa, pb in zip(a, b):
        ea, eb = load_episode(pa), load_episode(pb)
        assert ea.frames.shape == (ea.n_steps + 1, 210, 160, 3) and ea.frameskip == 2 and ea.game == "Breakout"
        np.testing.assert_array_equal(ea.frames, eb.frames)
        np.testing.assert_array_equal(ea.actions, eb.actions)
        assert set(np.unique(ea.actions)) <= {0, 1, 2, 3}
        with np.load(pa) as d:
            assert str(d["policy"]) in POLICY_MIX


def test_different_seeds_differ():
    e1, _ = record_episode("Breakout", 60, seed=1, index=0, policy="sticky_random")
    e2, _ = record_episode("Breakout", 60, seed=2, index=0, policy="sticky_random")
    assert not np.array_equal(e1.actions, e2.actions)


def test_tracker_serves_and_moves_the_paddle():
    ep, name = record_episode("Breakout", 200, seed=3, index=0, policy="tracker")
    assert name == "tracker"
    assert 1 in ep.actions  # FIRE: serves the ball
    assert {2, 3} <= set(ep.actions.tolist())  # follows it both ways


def test_bad_arguments():
    with pytest.raises(ValueError, match="record: unknown ALE game 'NoSuchGame'"):
        record_episode("NoSuchGame", 5, 0, 0)
    with pytest.raises(ValueError, match="policies: unknown policy 'psychic'"):
        record_episode("Breakout", 5, 0, 0, policy="psychic")
    with pytest.raises(ValueError, match="reads Breakout RAM"):
        record_episode("Pong", 5, 0, 0, policy="tracker")
