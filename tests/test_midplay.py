"""The strict mid-play scores (evaluation/midplay.py) on frames made by hand from a real Breakout frame: the
real frame finds its ball, a ball moved 6 px or dimmed below half its redness is not found, painting the
play area red does not find it either, the paddle's red never counts; brick cells read as present and gone,
break recall counts only bricks that broke since the context; clips are cut where the ball is in play and
record the action that led to each frame; the benchmark script runs end to end on a tiny model and bundle."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from nextframe.data.record import record_episode
from nextframe.evaluation import midplay
from nextframe.evaluation.breakout_probe import ball_position

BALL_RGB = np.array([200, 72, 72], np.uint8)


@pytest.fixture(scope="module")
def frame_with_ball():
    ep, _ = record_episode("Breakout", 400, 123, 0, "tracker")
    for f in ep.frames:
        bx, by = ball_position(f)
        if not math.isnan(bx) and 110 < by < 170 and 20 < bx < 140:
            return f.copy(), (bx, by)
    pytest.fail("no frame with the ball in the middle of the play area")


def _without_ball(f, xy):
    g = f.copy()
    x, y = int(round(xy[0])), int(round(xy[1]))
    g[y - 4 : y + 5, x - 3 : x + 4] = 0
    return g


def test_ball_found_is_strict(frame_with_ball):
    f, xy = frame_with_ball
    assert midplay.ball_found(f, f) == 1.0
    empty = _without_ball(f, xy)
    assert math.isnan(midplay.ball_found(empty, f))  # no ball in the real frame: not scored
    moved = empty.copy()
    x, y = int(round(xy[0])), int(round(xy[1]))
    moved[y - 2 : y + 2, x + 6 : x + 8] = BALL_RGB  # 6-7 px to the right
    assert midplay.ball_found(f, moved) == 0.0
    dim = empty.copy()
    dim[y - 2 : y + 2, x - 1 : x + 1] = (BALL_RGB.astype(np.float32) * 0.4).astype(np.uint8)  # redness ~51 < 60
    assert midplay.ball_found(f, dim) == 0.0
    red = f.copy()
    red[100:185, 10:150] = BALL_RGB  # red everywhere: the most ball-like blob is anywhere
    assert midplay.ball_found(f, red) == 0.0
    # drawn: a bright ball anywhere (the moved one counts, the dim one and none do not)
    assert midplay.ball_drawn(f, f) == 1.0 and midplay.ball_drawn(f, moved) == 1.0
    assert midplay.ball_drawn(f, dim) == 0.0 and midplay.ball_drawn(f, empty) == 0.0
    assert math.isnan(midplay.ball_drawn(empty, f))


def test_bricks_and_break_recall(frame_with_ball):
    f, _ = frame_with_ball
    cells = midplay.brick_cells(f)
    assert cells.shape == (6, 18)
    broken = f.copy()
    r, c = np.argwhere(cells)[0]
    y0, x0 = midplay.BRICK_TOP + r * midplay.BRICK_ROW_PX, midplay.BRICK_LEFT + c * midplay.BRICK_COL_PX
    broken[y0 : y0 + midplay.BRICK_ROW_PX, x0 : x0 + midplay.BRICK_COL_PX] = 0
    assert midplay.brick_cells(broken).sum() == cells.sum() - 1
    real = np.stack([broken, broken])
    copy = midplay.per_frame(real, np.stack([f, f]), f)
    assert copy["break_recall"].tolist() == [0.0, 0.0] and copy["brick_agreement"][0] == pytest.approx(1 - 1 / 108)
    same = midplay.per_frame(real, real, f)
    assert same["break_recall"].tolist() == [1.0, 1.0] and same["false_breaks"].tolist() == [0.0, 0.0]
    no_break = midplay.per_frame(np.stack([f]), np.stack([broken]), f)
    assert math.isnan(no_break["break_recall"][0]) and no_break["false_breaks"][0] == 1.0


def test_clips_start_with_the_ball_in_play():
    ep, _ = record_episode("Breakout", 600, 9201, 0, "tracker")
    clips = midplay.cut_clips(ep.frames, ep.actions, "t", 4, 20, 3, np.random.default_rng(0))
    assert clips and all(c.frames.shape == (24, 210, 160, 3) for c in clips)
    for c in clips:
        s = int(c.source.split("@")[1])
        assert np.array_equal(c.frames, ep.frames[s : s + 24])
        assert np.array_equal(c.lead_actions, ep.actions[s - 1 : s + 23])  # the action that led to each frame
        assert midplay.ball_in_play(c.frames[:5]).all()


def test_benchmark_runs_on_a_tiny_bundle(tmp_path):
    from conftest import randomized_unet, tiny_unet_config
    from nextframe.export.bundle import export_bundle
    from nextframe.training.checkpoint import save_model

    model = randomized_unet(tiny_unet_config(height=210, width=160, fold=4, widths=(8, 8), context=4))
    path = str(tmp_path / "m.safetensors")
    save_model(model, path, {"default_steps": "1"})
    export_bundle(model, str(tmp_path / "b"), n_steps=1)
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "nextframe.benchmarks.midplay_quality", "--entry", f"m={path}:1,2,1/0.3/0",
           "--entry", f"b={tmp_path / 'b'}", "--clips-cache", str(tmp_path / "clips.npz"), "--n-sources", "1",
           "--n-per-episode", "1", "--horizon", "12", "--fps", "--fps-frames", "20", "--threads", "1", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    r = json.loads(out.read_text())
    assert [(row["label"], row["steps"], row["engine"]) for row in r["rows"]] == [
        ("m@1", 1, "pytorch"), ("m@2", 2, "pytorch"), ("m@1/0.3/0", 2, "pytorch"), ("b@1", 1, "cpp-runtime")]
    assert r["rows"][2]["times"] == [1.0, 0.3, 0.0] and "times" not in r["rows"][1]
    assert all(row["fps"]["fps"] > 0 for row in r["rows"])
    assert set(r["rows"][0]["metrics"]) == set(r["rows"][3]["metrics"]) == {"1-10", "11-12"} and r["clips"]["n"] == 1
    assert set(r["rows"][0]["targets_met"]) == {"ball_found_1_10", "ball_found_11_30", "brick_agreement",
                                                 "psnr_above_copy", "fps"}


@pytest.mark.parametrize("item, expected", [("4", 4), ("1/0.2/0", [1.0, 0.2, 0.0]), ("1/0.6/0.2/0", [1.0, 0.6, 0.2, 0.0])])
def test_benchmark_step_items(item, expected):
    from nextframe.benchmarks.midplay_quality import parse_steps

    assert parse_steps(item) == expected


@pytest.mark.parametrize("item", ["0.9/0.2/0", "1/0.2", "1/0.2/0.4/0", "1/0.5/0.5/0"])
def test_benchmark_refuses_schedules_that_do_not_fall_from_1_to_0(item):
    from nextframe.benchmarks.midplay_quality import parse_steps

    with pytest.raises(ValueError, match=r"^midplay: schedule .* must fall from 1 to 0"):
        parse_steps(item)


def test_mean_over_seeds_averages_scores_and_keeps_each_seeds_ball():
    def result(found, psnr, before):
        row = {"ball_found": found, "n_ball_found": 20, "break_recall": None, "n_break_recall": 0, "psnr": psnr}
        return {"model": {"1-10": row}, "n_clips": 3,
                "ball_around_first_bounce": {"before": before, "from_first_bounce": None, "n_clips_with_a_bounce": 0,
                                             "horizon": 30}}

    r = midplay.mean_over_seeds([result(0.5, 30.0, 0.6), result(0.7, 32.0, 0.8), result(0.6, 31.0, 0.7)])
    row = r["model"]["1-10"]
    assert row["ball_found"] == 0.6 and row["psnr"] == 31.0
    assert row["n_ball_found"] == 20 and row["break_recall"] is None
    assert r["ball_found_by_seed"]["1-10"] == [0.5, 0.7, 0.6] and r["ball_found_range"]["1-10"] == [0.5, 0.7]
    assert r["ball_around_first_bounce"]["before"] == 0.7 and r["ball_around_first_bounce"]["from_first_bounce"] is None
    assert r["n_seeds"] == 3
    with pytest.raises(ValueError, match="no results"):
        midplay.mean_over_seeds([])


def test_ball_next_frame_scores_exact_and_off_by_a_few_pixels():
    from nextframe.benchmarks.ball_next_frame import score

    ep, _ = record_episode("Breakout", 600, 9201, 0, "tracker")
    clip = midplay.cut_clips(ep.frames, ep.actions, "t", 4, 20, 1, np.random.default_rng(0))[0]
    real = clip.frames[4:]
    exact = score([clip], [real], 4)["all"]
    assert exact["n"] > 10 and exact["exact"] == 1.0 and exact["found"] == 1.0
    shifted = np.roll(real, 3, axis=2)  # every ball 3 px to the right: found, not exact
    r = score([clip], [shifted], 4)["all"]
    assert r["exact"] == 0.0 and r["found"] == 1.0
    assert score([clip], [np.zeros_like(real)], 4)["all"]["found"] == 0.0


def test_ball_next_frame_motion_classes():
    from nextframe.benchmarks.ball_next_frame import motion_class

    assert motion_class(np.array([3.0, 2.0]), np.array([-3.0, 2.0])) == "bounce"
    assert motion_class(np.array([3.0, 2.0]), np.array([0.0, 2.0])) == "turn"
    assert motion_class(np.array([0.0, 2.0]), np.array([-3.0, 2.0])) == "turn"
    assert motion_class(np.array([3.0, -2.0]), np.array([2.6, -4.0])) == "3,4"


def test_open_loop_hazard_follows_a_clip_until_its_first_miss():
    from nextframe.benchmarks.ball_next_frame import open_loop_hazard

    ep, _ = record_episode("Breakout", 600, 9201, 0, "tracker")
    clip = midplay.cut_clips(ep.frames, ep.actions, "t", 4, 20, 1, np.random.default_rng(0))[0]
    real = clip.frames[4:]
    r = open_loop_hazard([clip], [real], 4, horizon=12)
    assert r["all"]["miss"] == 0.0 and r["all"]["n"] >= 10 and r["clips_exact_through"]["10"] == 1.0
    broken = real.copy()
    broken[3:] = np.roll(real[3:], 3, axis=2)  # the ball 3 px off from the fourth predicted frame on
    r = open_loop_hazard([clip], [broken], 4, horizon=12)
    assert r["all"] == {"n": 4, "miss": 0.25} and r["clips_exact_through"]["10"] == 0.0
