"""The frame store's colour index (data/frame_store.Palette): host and device lookups agree, colours are learnt in
order of first sight and never renumbered, and more than 256 colours are refused."""
import numpy as np
import pytest
import torch

from nextframe.data.frame_store import Palette


def frames_with(colors, shape=(3, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(colors), shape)
    return np.asarray(colors, np.uint8)[pick]


def test_encode_round_trips_and_keeps_indices():
    p = Palette()
    a = frames_with([(0, 0, 0), (200, 72, 72), (142, 142, 142)])
    idx = p.encode(a)
    assert (p.rgb().numpy()[idx] == a).all()
    first = p.rgb().numpy().copy()
    b = frames_with([(200, 72, 72), (66, 72, 200)], seed=1)  # one known, one new colour
    idx_b = p.encode(b)
    assert (p.rgb().numpy()[idx_b] == b).all()
    assert (p.rgb().numpy()[: len(first)] == first).all()  # earlier indices unchanged
    assert tuple(p.rgb().numpy()[0]) == (0, 0, 0)


def test_device_lookup_equals_host_lookup():
    host, dev = Palette(), Palette()
    for seed, colors in enumerate([[(0, 0, 0), (1, 2, 3)], [(1, 2, 3), (255, 255, 255), (9, 8, 7)]]):
        a = frames_with(colors, seed=seed)
        want = host.encode(a)
        got = dev.encode_torch(a, torch.device("cpu"))
        assert got.dtype == torch.uint8
        np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(host.rgb().numpy(), dev.rgb().numpy())


def test_more_than_256_colours_is_refused():
    p = Palette()
    colors = np.stack([np.arange(300) % 256, np.arange(300) // 256, np.full(300, 7)], 1).astype(np.uint8)
    with pytest.raises(ValueError, match="more than 256 colours"):
        p.encode(colors[None])
