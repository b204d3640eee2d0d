"""Training windows: F consecutive frames at model resolution with the action that led to each frame (the
first frame of an episode gets the 'no action' index), resized once and cached by file content."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import square_episode
from nextframe.data.dataset import WindowDataset, to_model_resolution
from nextframe.data.episode import save_episode


def test_windows_align_frames_and_actions(tmp_path):
    ep = square_episode(12, 0)
    for t in range(13):  # stamp each frame with its index so a window's start can be read back
        ep.frames[t, :32, :40] = 10 + 15 * t
    save_episode(tmp_path / "a.npz", ep)
    ds = WindowDataset([str(tmp_path)], 16, 16, seq_len=5, no_action=4, cache_dir=str(tmp_path / "cache"))
    assert ds.n_frames == 13 and ds.cum[-1] == 13 - 5 + 1
    low = to_model_resolution(ep.frames, 16, 16)
    leading = np.concatenate([[4], ep.actions])
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, a = ds.sample(3, rng)
        assert x.shape == (3, 5, 3, 16, 16) and a.shape == (3, 5)
        assert x.min() >= -1 and x.max() <= 1
        for b in range(3):
            # find the window start from the frames, then check the actions line up with it
            start = next(s for s in range(9) if np.allclose((x[b].numpy() + 1) * 127.5, low[s : s + 5], atol=1e-3))
            np.testing.assert_array_equal(a[b].numpy(), leading[start : start + 5])
    assert len(list((tmp_path / "cache").iterdir())) == 1
    again = WindowDataset([str(tmp_path / "a.npz")], 16, 16, 5, 4, str(tmp_path / "cache"))
    np.testing.assert_array_equal(again.frames[0], ds.frames[0])


def test_resize_keeps_mass_of_small_objects():
    f = np.zeros((1, 210, 160, 3), np.uint8)
    f[0, 100:104, 80:82] = 200  # a ball-sized blob
    low = to_model_resolution(f, 64, 64).astype(np.float64)
    # area averaging keeps the blob's mass up to uint8 rounding (nearest-neighbour could drop it entirely)
    assert low.sum() / 255 == pytest.approx(f.sum() / 255 * (64 * 64) / (210 * 160), rel=0.2)


def test_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset: no such file or directory"):
        WindowDataset([str(tmp_path / "nope")], 16, 16, 4, 4, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="dataset: no .npz episodes in directory"):
        WindowDataset([str(tmp_path / "empty")], 16, 16, 4, 4, None)
    save_episode(tmp_path / "short.npz", square_episode(2, 0))
    with pytest.raises(ValueError, match="dataset: no episode has 8 frames or more"):
        WindowDataset([str(tmp_path / "short.npz")], 16, 16, 8, 4, None)
