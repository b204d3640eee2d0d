"""Rollout evaluation: the Breakout probe reads paddle and ball positions worked out by hand, the metrics
give known answers on synthetic frames, the native decoder is exact on unchanged content, and `rollout`
writes the prediction file of docs/formats.md ([T+1-context, 210, 160, 3] uint8 plus `context`)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from conftest import randomized_model, tiny_config
from nextframe.data.dataset import to_model_resolution
from nextframe.data.episode import save_episode
from nextframe.evaluation.breakout_probe import ball_position, paddle_x
from nextframe.evaluation.metrics import MISS_PX, by_horizon, per_frame, psnr
from nextframe.evaluation.rollout import rollout_files
from nextframe.models.native_decoder import DetailTransferDecoder
from nextframe.training.checkpoint import save_model
from nextframe.cli import main
from conftest import square_episode

RED = (200, 72, 72)


def frame(paddle_left=None, ball=None):
    f = np.zeros((210, 160, 3), np.uint8)
    f[:196, :8] = f[:196, 152:] = 142  # grey walls are not red...
    f[189:195, :8] = (66, 158, 130)  # ...except at paddle height: green on the left,
    f[189:195, 152:] = RED  # red on the right (the paddle's own colour), as in the real game
    f[57:63, 8:152] = RED  # top brick row is red, above the ball rows
    if paddle_left is not None:
        f[189:193, paddle_left : paddle_left + 16] = RED
    if ball is not None:
        x, y = ball
        f[y : y + 4, x : x + 2] = RED
    return f


def test_probe_reads_positions():
    f = frame(paddle_left=50, ball=(80, 120))
    assert paddle_x(f) == pytest.approx(57.5)
    bx, by = ball_position(f)
    assert (bx, by) == (pytest.approx(80.5), pytest.approx(121.5))
    assert math.isnan(paddle_x(frame()))
    assert math.isnan(ball_position(frame(paddle_left=50))[0])
    # at the left wall: the red right-wall segment at paddle height must not pull the reading (it once did,
    # by up to 45 px, which made every paddle error in the model card wrong)
    assert paddle_x(frame(paddle_left=8)) == pytest.approx(15.5)


def test_probe_tolerates_blur():
    f = frame(ball=(80, 120)).astype(np.float32)
    k = np.ones(3) / 3  # a 3x3 box blur, as an upsampled prediction would look
    for axis in (0, 1):
        f = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), axis, f)
    bx, by = ball_position(f.astype(np.uint8))
    assert abs(bx - 80.5) < 1.0 and abs(by - 121.5) < 1.0


def test_metrics_known_answers():
    real = np.stack([frame(50, (80, 100 + i)) for i in range(12)])
    same = per_frame(real, real)
    assert (same["psnr"] == 99.0).all() and (same["paddle_err"] == 0).all() and (same["ball_hit"] == 1).all()
    shifted = np.stack([frame(60, None) for _ in range(12)])  # paddle 10 px right, ball missing
    m = by_horizon(per_frame(real, shifted))
    assert m["all"]["paddle_x_err"] == pytest.approx(10.0)
    assert m["all"]["ball_err"] == MISS_PX and m["all"]["ball_hit_rate"] == 0.0
    assert list(m) == ["all", "1-10", "11-12"] and m["11-12"]["n_frames"] == 2
    assert psnr(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8)) == pytest.approx(0.0)


def test_decoder_is_exact_where_nothing_changed():
    real = frame(50, (80, 120))
    low = to_model_resolution(real[None], 64, 64)
    decoded = DetailTransferDecoder(real, low[0])(low)
    np.testing.assert_array_equal(decoded[0], real)


def test_rollout_writes_prediction_files(tmp_path):
    ep_path = tmp_path / "ep.npz"
    save_episode(ep_path, square_episode(9, 0))
    model_path = str(tmp_path / "m.safetensors")
    save_model(randomized_model(tiny_config(context=3)), model_path)
    from nextframe.training.checkpoint import load_model

    results = rollout_files([str(ep_path)], str(tmp_path / "out"), load_model(model_path), context=4, n_steps=2)
    with np.load(tmp_path / "out" / "ep.npz") as d:
        assert d["frames"].shape == (10 - 4, 210, 160, 3) and d["frames"].dtype == np.uint8
        assert int(d["context"]) == 4
    assert (tmp_path / "out" / "ep.mp4").stat().st_size > 0
    assert results[0]["model"]["all"]["n_frames"] == 6 and "copy_baseline" in results[0]


def test_rollout_cli_errors(tmp_path, capsys):
    assert main(["rollout", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "out"), "--model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nextframe: model: file not found") and "\n" not in err
    model_path = str(tmp_path / "m.safetensors")
    save_model(randomized_model(tiny_config()), model_path)
    assert main(["rollout", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "out"), "--model", model_path]) == 2
    assert capsys.readouterr().err.strip().startswith("nextframe: episode: file not found")
    bad = tmp_path / "bad.npz"
    np.savez(bad, frames=np.zeros((3, 210, 160, 3), np.uint8))
    assert main(["rollout", str(bad), "--out", str(tmp_path / "out"), "--model", model_path]) == 2
    assert "has no key 'actions'" in capsys.readouterr().err
    ep = square_episode(6, 1)
    ep.actions[2] = 7  # not in the game's action set
    save_episode(tmp_path / "act.npz", ep)
    assert main(["rollout", str(tmp_path / "act.npz"), "--out", str(tmp_path / "out"), "--model", model_path]) == 2
    assert "has action 7, the model knows actions 0..3" in capsys.readouterr().err
    for field, value, fragment in (("game", "Pong", "is Pong, the model is Breakout"),
                                   ("frameskip", 4, "recorded with frameskip 4, the model learned frameskip 2")):
        other = dataclasses.replace(square_episode(6, 1), **{field: value})
        save_episode(tmp_path / f"{field}.npz", other)
        assert main(["rollout", str(tmp_path / f"{field}.npz"), "--out", str(tmp_path / "out"), "--model", model_path]) == 2
        assert fragment in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.npz"))  # refused before anything was written


def test_rollout_refuses_short_context(tmp_path):
    from nextframe.evaluation.rollout import rollout_episode

    with pytest.raises(ValueError, match="rollout: context must be in 1..6"):
        rollout_episode(randomized_model(tiny_config()), square_episode(6, 0), context=7)


def test_runtime_rollout_writes_the_same_format(tmp_path):
    """The C++ runtime path of rollout and demo writes the same prediction format and metrics (frame-level
    parity of the runtime with PyTorch is pinned in test_runtime_parity.py)."""
    from nextframe.evaluation.rollout import rollout_episode_runtime
    from nextframe.export.bundle import export_bundle

    ep = square_episode(9, 0)
    bundle = str(tmp_path / "b")
    export_bundle(randomized_model(tiny_config(context=3)), bundle, n_steps=2)
    pred, metrics = rollout_episode_runtime(bundle, ep, context=4)
    assert pred.shape == (6, 210, 160, 3) and pred.dtype == np.uint8
    assert metrics["n_steps"] == 2 and metrics["model"]["all"]["n_frames"] == 6
    with pytest.raises(ValueError, match="rollout: context must be in 1..9"):
        rollout_episode_runtime(bundle, ep, context=10)


def test_ball_in_play_starts_and_tracking_shapes():
    from nextframe.data.episode import Episode
    from nextframe.evaluation.ball_tracking import ball_in_play_starts, ball_tracking

    # the ball is visible in frames 5..24 and 40..59 only
    frames = np.stack([frame(50, (40 + i, 100 + (i % 20)) if (5 <= i < 25 or 40 <= i < 60) else None) for i in range(70)])
    starts = ball_in_play_starts(frames, context=4, horizon=6, n_starts=10)
    assert starts == [5, 15, 40, 50]  # non-overlapping windows of 10 fully inside the visible runs
    assert ball_in_play_starts(frames, 4, 6, n_starts=2) == [5, 50]  # spread over the episode
    assert ball_in_play_starts(frames, 4, 30, n_starts=5) == []

    model = randomized_model(tiny_config(n_actions=4))
    r = ball_tracking(model, Episode(frames, np.zeros(69, np.int64), "Breakout", 2), context=3, horizon=4, n_starts=3)
    assert len(r["starts"]) == 3 and np.asarray(r["model"]).shape == (3, 4)
    # the copy baseline: the ball moves 1 px per frame here, so the last context frame stays within HIT_PX
    assert np.asarray(r["copy_baseline"]).min() == 1.0
