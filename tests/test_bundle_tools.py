"""`nextframe rollout --bundle` (what users run, measured through the C++ runtime) and `nextframe bench A B`
(several bundles timed side by side): the same JSON as the PyTorch rollout, the frames the runtime makes, and
outputs that never overwrite an input."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from nextframe.cli import main
from nextframe.data.dataset import to_model_resolution
from nextframe.data.episode import save_episode
from nextframe.models.native_decoder import DetailTransferDecoder
from nextframe.runtime import Session
from nextframe.training.checkpoint import save_model
from conftest import randomized_model, square_episode, tiny_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from nextframe.export.bundle import export_bundle

    root = tmp_path_factory.mktemp("bundle_tools")
    model = randomized_model(tiny_config())
    model_path = str(root / "m.safetensors")
    save_model(model, model_path)
    bundle = str(root / "bundle")
    export_bundle(model, bundle, n_steps=2, context_noise=0.0)
    ep = root / "ep.npz"
    save_episode(ep, square_episode(12, 0))
    return {"model": model_path, "bundle": bundle, "episode": str(ep), "root": root}


def _json_lines(text: str) -> list[dict]:
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def test_rollout_bundle_runs_the_runtime_and_prints_the_pytorch_rollouts_json(tiny, capsys):
    out = tiny["root"] / "out_bundle"
    assert main(["rollout", tiny["episode"], "--bundle", tiny["bundle"], "--out", str(out), "--no-video"]) == 0
    line = _json_lines(capsys.readouterr().out)[0]
    assert main(["rollout", tiny["episode"], "--model", tiny["model"], "--out", str(tiny["root"] / "out_torch"),
                 "--no-video", "--steps", "2"]) == 0
    torch_line = _json_lines(capsys.readouterr().out)[0]
    assert set(line) == set(torch_line) and line["source"] == tiny["bundle"]
    assert set(line["model"]) == set(torch_line["model"]) and line["n_steps"] == 2

    # the written frames are the runtime's own, decoded to native by the core as users run it: a Session driven by
    # hand gives the same bytes, and the PyTorch decoder of the same low-resolution frames agrees within 1 level
    from nextframe.data.episode import load_episode

    ep = load_episode(tiny["episode"])
    with Session(tiny["bundle"], seed=0) as s:
        low = to_model_resolution(ep.frames, s.height, s.width)
        leading = [s.no_action] + ep.actions.tolist()
        s.reset(low[:4].transpose(0, 2, 3, 1), leading[:4], native_reference=ep.frames[3])
        native = np.stack([s.step_native(int(a)) for a in leading[4:]])
    with Session(tiny["bundle"], seed=0) as s:
        s.reset(low[:4].transpose(0, 2, 3, 1), leading[:4])
        pred = np.stack([s.step(int(a)).transpose(2, 0, 1) for a in leading[4:]])
    python_decoded = DetailTransferDecoder(ep.frames[3], low[3])(pred)
    with np.load(out / "ep.npz") as d:
        np.testing.assert_array_equal(d["frames"], native)
    assert np.abs(native.astype(int) - python_decoded).max() <= 1  # the core decodes the float frame, not uint8
    assert not [f for f in os.listdir(out) if "partial" in f]


def test_rollout_refuses_outputs_that_overwrite_inputs(tiny, tmp_path, capsys):
    ep_dir = tmp_path / "eps"
    ep_dir.mkdir()
    ep = ep_dir / "ep.npz"
    save_episode(ep, square_episode(8, 1))
    before = ep.read_bytes()
    assert main(["rollout", str(ep), "--bundle", tiny["bundle"], "--out", str(ep_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "would overwrite the input episode" in err and "\n" not in err
    assert ep.read_bytes() == before

    other = tmp_path / "other"
    other.mkdir()
    save_episode(other / "ep.npz", square_episode(8, 2))
    assert main(["rollout", str(ep), str(other / "ep.npz"), "--model", tiny["model"], "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "would both write ep.npz" in err and not (tmp_path / "o").exists()


def test_rollout_bundle_refuses_sampler_flags_and_bad_bundles(tiny, tmp_path, capsys):
    assert main(["rollout", tiny["episode"], "--bundle", tiny["bundle"], "--out", str(tmp_path / "o"),
                 "--steps", "3"]) == 2
    assert "come from the bundle's manifest" in capsys.readouterr().err
    assert main(["rollout", tiny["episode"], "--bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nextframe:") and "\n" not in err


def test_bench_times_several_bundles_side_by_side(tiny, tmp_path, capsys):
    import shutil

    second = tmp_path / "copy"
    shutil.copytree(tiny["bundle"], second)
    assert main(["bench", tiny["bundle"], str(second), "--json", "--frames", "30", "--threads", "1"]) == 0
    out = _json_lines(capsys.readouterr().out)[0]
    assert list(out["bundles"]) == ["bundle", "copy"]
    for r in out["bundles"].values():
        assert r["fps"] > 0 and r["latency_p50_ms"] <= r["latency_p99_ms"] and r["precision"] == "fp32"
        assert r["n_steps"] == 2 and r["n_frames"] == 25
    assert out["fps_ratio_vs_first"]["bundle"] == 1.0 and "cpu" in out["device"]
