"""The episode file contract (docs/formats.md): round trip, and a one-line error naming the file and the key
for every way a file can be wrong."""
from __future__ import annotations

import numpy as np
import pytest

from nextframe.data.episode import Episode, load_episode, save_episode


def _episode(t=5):
    return Episode(np.zeros((t + 1, 210, 160, 3), np.uint8), np.arange(t, dtype=np.int64) % 4, "Breakout", 2)


def test_round_trip_keeps_keys_and_dtypes(tmp_path):
    p = tmp_path / "ep.npz"
    save_episode(p, _episode(), seed=3, policy="tracker")
    with np.load(p, allow_pickle=False) as d:
        assert d["frames"].dtype == np.uint8 and d["frames"].shape == (6, 210, 160, 3)
        assert d["actions"].dtype == np.int64 and d["actions"].shape == (5,)
        assert str(d["game"]) == "Breakout" and int(d["frameskip"]) == 2
        assert int(d["seed"]) == 3
    ep = load_episode(p)
    assert ep.n_steps == 5 and ep.game == "Breakout" and ep.frameskip == 2
    np.testing.assert_array_equal(ep.actions, [0, 1, 2, 3, 0])


def _write(path, **arrays):
    base = dict(frames=np.zeros((3, 210, 160, 3), np.uint8), actions=np.zeros(2, np.int64),
                game=np.array("Breakout"), frameskip=np.array(2))
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        (dict(actions=None), "has no key 'actions'"),
        (dict(frames=None), "has no key 'frames'"),
        (dict(frames=np.zeros((3, 210, 160, 3), np.float32)), "key 'frames' has dtype float32"),
        (dict(frames=np.zeros((3, 64, 64, 3), np.uint8)), "key 'frames' has shape (3, 64, 64, 3)"),
        (dict(actions=np.zeros(2, np.int32)), "key 'actions' has dtype int32"),
        (dict(actions=np.zeros(5, np.int64)), "key 'actions' has shape (5,)"),
        (dict(actions=np.array([0, -1], np.int64)), "negative action index"),
        (dict(game=np.array(5)), "key 'game' must be a str scalar"),
        (dict(frameskip=np.array("two")), "key 'frameskip' must be an int scalar"),
    ],
)
def test_bad_file_names_file_and_key(tmp_path, arrays, fragment):
    p = tmp_path / "bad.npz"
    _write(p, **arrays)
    with pytest.raises(ValueError) as e:
        load_episode(p)
    msg = str(e.value)
    assert msg.startswith("episode: ") and str(p) in msg and fragment in msg and "\n" not in msg


def test_pickled_array_is_refused(tmp_path):
    p = tmp_path / "pickled.npz"
    _write(p, game=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"key 'game' holds Python objects \(pickle\), which are never loaded"):
        load_episode(p)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="episode: file not found"):
        load_episode(tmp_path / "nope.npz")
    p = tmp_path / "corrupt.npz"
    p.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="is not a readable .npz file"):
        load_episode(p)
    good = tmp_path / "truncated.npz"
    save_episode(good, _episode())
    good.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="episode: "):
        load_episode(good)


def test_save_refuses_bad_arrays(tmp_path):
    bad = Episode(np.zeros((3, 210, 160, 3), np.uint8), np.zeros(3, np.int64), "Breakout", 2)
    with pytest.raises(ValueError, match="key 'actions' has shape"):
        save_episode(tmp_path / "x.npz", bad)
    assert not list(tmp_path.iterdir())


def test_declared_sizes_are_checked_before_decompressing(tmp_path, monkeypatch):
    """A small archive that declares more data than memory can hold (a zip bomb) is refused from its .npy headers,
    before anything is inflated; here the machine is made to look small instead of writing gigabytes."""
    import nextframe.data.episode as episode_module

    p = tmp_path / "ep.npz"
    save_episode(p, _episode())
    declared = 6 * 210 * 160 * 3 + 5 * 8
    monkeypatch.setattr(episode_module, "available_memory", lambda: declared)  # needs twice what it declares
    with pytest.raises(ValueError, match=r"declares 0\.0 GiB of arrays, more than half of the 0\.0 GiB of memory"):
        load_episode(p)
    monkeypatch.setattr(episode_module, "available_memory", lambda: 4 * declared)
    assert load_episode(p).n_steps == 5


def test_header_that_disagrees_with_its_entry_is_refused(tmp_path):
    """An .npy header declaring fewer frames than its zip entry holds (or more) is corrupt: refused by the header
    check, never read as a silently shorter episode."""
    import io
    import zipfile

    p = tmp_path / "lying.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": (2, 210, 160, 3)})
    buf.write(bytes(3 * 210 * 160 * 3))  # three frames of data behind a two-frame header
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("frames.npy", buf.getvalue())
        for key, value in (("actions", np.zeros(1, np.int64)), ("game", np.array("Breakout")), ("frameskip", np.array(2))):
            b = io.BytesIO()
            np.save(b, value)
            zf.writestr(f"{key}.npy", b.getvalue())
    with pytest.raises(ValueError, match=r"key 'frames' declares 201600 bytes of data \(2, 210, 160, 3\) but its entry holds 302400"):
        load_episode(p)
