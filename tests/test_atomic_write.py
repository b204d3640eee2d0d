"""Writers leave a file complete or not at all (nextframe/atomic.py): an exception, Ctrl-C (KeyboardInterrupt) or
SIGTERM (SystemExit in the CLI) in the middle of a write removes the temporary file and keeps what the final name
held before; the episode writer and checkpoints go through it."""
from __future__ import annotations

import numpy as np
import pytest

from nextframe.atomic import write_atomic
from nextframe.data.episode import Episode, save_episode


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, OSError])
def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, exc):
    target = tmp_path / "out.npz"
    target.write_bytes(b"old")

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise exc()

    with pytest.raises(exc):
        write_atomic(target, write)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_temporary_keeps_the_extension_numpy_needs(tmp_path):
    target = tmp_path / "ep.npz"
    save_episode(target, Episode(np.zeros((3, 210, 160, 3), np.uint8), np.zeros(2, np.int64), "Breakout", 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.npz"]  # numpy did not append a second .npz


def test_episode_interrupted_mid_write(tmp_path, monkeypatch):
    target = tmp_path / "ep.npz"

    def boom(*args, **kwargs):
        with open(args[0], "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(KeyboardInterrupt):
        save_episode(target, Episode(np.zeros((3, 210, 160, 3), np.uint8), np.zeros(2, np.int64), "Breakout", 2))
    assert list(tmp_path.iterdir()) == []
