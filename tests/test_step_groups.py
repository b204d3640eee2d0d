"""Activation scales per group of denoising steps (`nextframe quantize --groups N`): one INT8 graph per group,
the manifest's step_groups mapping noise levels to graphs, the C++ core picking the graph per step.

* the quantized bundle lists its groups, the core runs each group's graph exactly on its steps (run counts),
  and its frames equal bit for bit a NumPy reference loop that picks the graph per noise level in Python;
* calibration is deterministic for a seed (same graph bytes twice);
* a manifest whose groups overlap, leave 0..1 or name a missing or unlisted graph is refused in one line;
* --groups needs a time-step-aware method and at most one group per step.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from conftest import native_unet_bundle, square_episode
from nextframe import _core
from nextframe.cli import main
from nextframe.runtime import Session
from nextframe.runtime import reference as ref
from runtime_helpers import noise_draws

ACTIONS = [0, 1, 2, 2, 3]


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups")
    fp32, data, model = native_unet_bundle(root, n_steps=4)
    q = str(root / "int8_g2")
    assert main(["quantize", fp32, "--out", q, "--groups", "2", "--calib", *data, "--windows", "4", "--frames", "2"]) == 0
    return {"root": root, "data": data, "fp32": fp32, "q": q, "model": model}


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def open_text(path):
    with open(path) as f:
        return f.read()


def test_grouped_bundle_lists_its_groups_and_the_core_runs_each_on_its_steps(grouped, capsys):
    m = json.loads(open_text(os.path.join(grouped["q"], "manifest.json")))
    # times 1, .75, .5, .25: group 0 (the step graph) takes 1 and .75, group 1 takes .5 and .25
    assert m["step_groups"] == [{"file": "step_group1.onnx", "t_min": 0.0, "t_max": 0.625}]
    q = m["quantization"]
    assert [g["n_calibration_feeds"] for g in q["step_groups"]] == [16, 16]
    assert set(q["error_vs_fp32"]["nmse_by_noise_level"]) == {"1.0", "0.75", "0.5", "0.25"}
    assert _core.Bundle.open(grouped["q"]).step_groups == [{"file": "step_group1.onnx", "t_min": 0.0, "t_max": 0.625}]
    ctx = np.stack([square_episode(3, 0).frames[i] for i in range(2)])
    with Session(grouped["q"], backend="ort-cpu", threads=1, seed=1) as s:
        assert s.loop.n_step_groups == 1
        s.reset(ctx, [4, 2])
        for a in ACTIONS:
            s.step(a)
        assert s.loop.group_runs() == [2 * len(ACTIONS), 2 * len(ACTIONS)]


def test_grouped_rollout_matches_a_reference_that_picks_graphs_per_level_bit_for_bit(grouped):
    cfg = grouped["model"].cfg
    noise = noise_draws(2 + 2 * len(ACTIONS), (cfg.channels, cfg.height, cfg.width), 4)
    ctx = np.stack([square_episode(3, 0).frames[i] for i in range(2)]).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1
    with Session(grouped["q"], backend="ort-cpu", threads=1) as s:
        s.feed_noise(np.concatenate([n.reshape(-1) for n in noise]))
        s.reset(ctx, [4, 2])
        got = np.stack([s.step_raw(a) for a in ACTIONS])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    sess = {f: ort.InferenceSession(os.path.join(grouped["q"], f), so, providers=["CPUExecutionProvider"])
            for f in ("step.onnx", "step_group1.onnx")}
    outs = [o.name for o in sess["step.onnx"].get_outputs()]
    used = []

    def step_fn(feed):
        t = float(np.asarray(feed["t"]).reshape(-1)[0])
        f = "step_group1.onnx" if 0.0 < t <= 0.625 else "step.onnx"
        used.append(f)
        return dict(zip(outs, sess[f].run(None, feed)))

    with open(os.path.join(grouped["q"], "manifest.json")) as f:
        manifest = json.load(f)
    loop = ref.ReferenceLoop(manifest, step_fn, noise)
    loop.reset(ctx, [4, 2])
    want = np.stack([loop.step(a) for a in ACTIONS])
    assert used.count("step_group1.onnx") == 2 * len(ACTIONS)
    assert np.array_equal(got, want)
    # and the group graph does change the frames: the step graph alone gives others
    with Session(grouped["q"], backend="ort-cpu", threads=1) as s:
        s.feed_noise(np.concatenate([n.reshape(-1) for n in noise]))
        s.reset(ctx, [4, 2])
        assert s.loop.n_step_groups == 1
    only_step = ref.ReferenceLoop(manifest, lambda feed: dict(zip(outs, sess["step.onnx"].run(None, feed))), noise)
    only_step.reset(ctx, [4, 2])
    assert not np.array_equal(np.stack([only_step.step(a) for a in ACTIONS]), want)


def test_calibration_is_deterministic_for_a_seed(grouped, tmp_path):
    again = str(tmp_path / "again")
    assert main(["quantize", grouped["fp32"], "--out", again, "--groups", "2", "--calib", *grouped["data"],
                 "--windows", "4", "--frames", "2"]) == 0
    for f in ("step.onnx", "step_group1.onnx"):
        assert _sha(os.path.join(again, f)) == _sha(os.path.join(grouped["q"], f))


def _rewrite(src: str, dst: str, edit) -> str:
    shutil.copytree(src, dst)
    p = os.path.join(dst, "manifest.json")
    m = json.loads(open_text(p))
    edit(m)
    with open(p, "w") as f:
        f.write(json.dumps(m))
    return dst


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["step_groups"].append({"file": "step_group1.onnx", "t_min": 0.5, "t_max": 0.7}), "overlaps"),
    (lambda m: m["step_groups"][0].update(t_max=1.5), "t_min < t_max <= 1"),
    (lambda m: m["step_groups"][0].update(file="step.onnx"), "other than the step graph"),
    (lambda m: m["step_groups"][0].update(file="nowhere.onnx"), "not listed in files"),
    (lambda m: m["files"].pop("step_group1.onnx"), "not listed in files"),
    (lambda m: m.update(step_groups={"file": "x"}), "must be an array"),
])
def test_bad_step_groups_are_refused_in_one_line(grouped, tmp_path, edit, message):
    bad = _rewrite(grouped["q"], str(tmp_path / "bad"), edit)
    with pytest.raises(ValueError) as e:
        _core.Bundle.open(bad)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_group_graph_is_refused(grouped, tmp_path):
    bad = str(tmp_path / "bad")
    shutil.copytree(grouped["q"], bad)
    os.remove(os.path.join(bad, "step_group1.onnx"))
    with pytest.raises(ValueError, match="step_group1.onnx' is missing"):
        Session(bad, backend="ort-cpu")


def test_groups_need_a_time_aware_method_and_enough_steps(grouped, tmp_path, capsys):
    args = ["--calib", *grouped["data"], "--windows", "2", "--frames", "2"]
    assert main(["quantize", grouped["fp32"], "--out", str(tmp_path / "a"), "--groups", "2", "--method", "naive", *args]) == 2
    assert main(["quantize", grouped["fp32"], "--out", str(tmp_path / "b"), "--groups", "5", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "time-step-aware method" in err[0] and "--groups must be in 1..4" in err[1]
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


def test_disa_schedules_find_a_graph_for_every_level(grouped):
    """DiSA anneals 4 -> 2 steps over the first frames: levels the bundle's 4-step schedule never had (2/3,
    1/3) each go to the group whose range holds them, and every evaluation runs exactly one graph."""
    from nextframe.models.flow import flow_schedule

    ctx = np.stack([square_episode(3, 0).frames[i] for i in range(2)])
    with Session(grouped["q"], backend="ort-cpu", threads=1, seed=2,
                 disa={"n_max": 4, "n_min": 2, "n_anneal_frames": 4}) as s:
        s.reset(ctx, [4, 2])
        frames = [s.step(a) for a in ACTIONS]
        runs = s.loop.group_runs()
    counts = [_core.disa_steps(i, 4, 2, 4, "linear") for i in range(len(ACTIONS))]
    assert counts[0] == 4 and counts[-1] == 2  # the schedule really changes within the rollout
    levels = [t for n in counts for t in flow_schedule(n)[:-1]]
    assert runs == [sum(t > 0.625 for t in levels), sum(t <= 0.625 for t in levels)]
    assert all(np.isfinite(f).all() for f in frames)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["quantization"].update(precision="int3"), "quantization.precision 'int3' unknown"),
    (lambda m: m.update(quantization=[]), "'quantization' must be an object"),
    (lambda m: m["quantization"].pop("precision"), "quantization.precision' missing"),
])
def test_unknown_quantization_precision_is_refused(grouped, tmp_path, edit, message):
    bad = _rewrite(grouped["q"], str(tmp_path / "bad"), edit)
    with pytest.raises(ValueError) as e:
        _core.Bundle.open(bad)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_rollout_bundle_runs_the_quantized_bundle_within_30db_of_fp32(grouped, tmp_path, capsys):
    """`nextframe rollout --bundle` on the INT8 bundle and on its FP32 source (same seed): both print the
    rollout JSON; the INT8 frames stay within 30 dB PSNR of the FP32 ones (random tiny weights: a bound that
    catches a broken graph or a wrong group, not a quality claim)."""
    ep = grouped["data"][0]
    frames = {}
    for name in ("fp32", "q"):
        out = tmp_path / name
        assert main(["rollout", ep, "--bundle", grouped[name], "--out", str(out), "--no-video"]) == 0
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert line["source"] == grouped[name] and line["n_steps"] == 4 and "1-10" in line["model"]
        with np.load(out / "ep0.npz") as d:
            frames[name] = d["frames"]
    mse = float(np.mean((frames["q"].astype(np.float64) - frames["fp32"]) ** 2))
    assert 10 * np.log10(255.0**2 / max(mse, 1e-12)) >= 30.0


def test_calibration_records_every_step_of_a_schedule_not_exact_in_float32(tmp_path):
    """Noise levels reach the graph as float32 (0.15 -> 0.15000000596): calibration must still find each step of
    the schedule (it once matched 1.0 only, and --groups 2 then found no feed for its second group)."""
    fp32, data, _ = native_unet_bundle(tmp_path, n_steps=None, times=[1.0, 0.15, 0.0])
    q = str(tmp_path / "int8_g2")
    # no --groups: one graph per step by default (auto_groups)
    assert main(["quantize", fp32, "--out", q, "--calib", *data, "--windows", "2", "--frames", "2"]) == 0
    quant = json.loads(open_text(os.path.join(q, "manifest.json")))["quantization"]
    assert [g["n_calibration_feeds"] for g in quant["step_groups"]] == [4, 4]
    assert set(quant["error_vs_fp32"]["nmse_by_noise_level"]) == {"1.0", "0.15"}


def test_default_groups_are_one_per_step_up_to_four_where_scales_are_per_step():
    from nextframe.quant.bundle import auto_groups

    assert [auto_groups(n, "qdiff", "onnxruntime", True) for n in (1, 2, 4, 8)] == [1, 2, 4, 4]
    assert auto_groups(4, "ptq4dm", "onnxruntime", True) == 4
    assert auto_groups(4, "naive", "onnxruntime", True) == 1  # one noise level seen: nothing to split
    assert auto_groups(4, "qdiff", "modelopt", True) == 1
    assert auto_groups(4, "qdiff", "onnxruntime", False) == 1  # w4a8: no activation scales
