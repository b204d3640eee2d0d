"""Step distillation and INT8 quantization of a frame-stack teacher, on tiny models:

* trajectory and consistency distillation run from a teacher file, the student file carries the schedule it
  was trained for (default_times), resumes, and the 2-step trajectory student exported to a bundle runs in
  the C++ runtime and matches PyTorch on fed noise (NMSE <= 1e-6, the bound of test_frame_stack_runtime.py);
* trajectory distillation pulls a student toward the teacher's 4-step samples: its one-step distance to them
  falls by at least 30% over 30 steps;
* `nextframe quantize` writes an INT8 bundle (QDQ nodes in the step graph, a quantization section with the
  measured error) that the C++ core runs, within 30 dB PSNR of the FP32 bundle's frames on the same noise
  (random tiny weights: a loose bound that catches a broken graph, not a quality claim), and refuses an
  existing output path, an unknown method and an unknown precision with one line.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import randomized_unet, square_episode, tiny_unet_config
from nextframe.data.episode import save_episode
from nextframe.runtime import Session
from runtime_helpers import nmse, noise_draws

NATIVE = dict(height=210, width=160, fold=4, widths=(8, 8), context=2)


@pytest.fixture(scope="module")
def teacher_and_data(tmp_path_factory):
    from nextframe.training.checkpoint import save_model

    root = tmp_path_factory.mktemp("fs")
    paths = []
    for i in range(2):
        p = root / f"ep{i}.npz"
        save_episode(p, square_episode(30, i))
        paths.append(str(p))
    teacher = randomized_unet(tiny_unet_config(**NATIVE))
    path = str(root / "teacher.safetensors")
    save_model(teacher, path, {"default_steps": "4"})
    return path, paths, root


def _distill(teacher, data, out_dir, method, total_steps, **kw):
    from nextframe.distill.config import DistillConfig
    from nextframe.distill.unet_trainer import UNetDistillTrainer

    cfg = DistillConfig(method=method, data=tuple(data), out_dir=str(out_dir), batch_size=4, total_steps=total_steps,
                        lr=1e-3, warmup_steps=1, teacher_steps=4, student_steps=2, cd_intervals=4, eval_steps=(2, 1),
                        log_every=5, ckpt_every=5, bf16=False, own_context_prob=0.5, own_context_passes=2, cache_dir="", **kw)
    return UNetDistillTrainer(teacher, cfg, progress=False)


@pytest.mark.parametrize("method", ["trajectory", "cd"])
def test_distill_runs_writes_schedule_and_resumes(teacher_and_data, tmp_path, method, one_thread):
    from nextframe.training.checkpoint import model_metadata

    teacher, data, _ = teacher_and_data
    tr = _distill(teacher, data, tmp_path, method, 5)
    assert tr.train() == 5
    meta = model_metadata(tr.student_path)
    assert json.loads(meta["default_times"]) == [1.0, 0.5, 0.0] and meta["distill_method"] == method
    again = _distill(teacher, data, tmp_path, method, 8)
    assert again.step == 5 and again.train() == 8  # resumed, not restarted


@pytest.mark.parametrize("explicit_times", [(), (1.0, 0.15, 0.0)])
def test_trajectory_distillation_approaches_the_teacher(teacher_and_data, tmp_path, one_thread, explicit_times):
    """Toward the teacher's sample at its schedule: 4 even steps, or an explicit one (teacher_times)."""
    from nextframe.data.frame_store import FrameStore
    from nextframe.distill.trajectory import teacher_sample, teacher_times
    from nextframe.training.unet_trainer import context_batch

    teacher, data, _ = teacher_and_data
    tr = _distill(teacher, data, tmp_path, "trajectory", 30, ema_decay=0.0, teacher_times=explicit_times)
    g = torch.Generator().manual_seed(0)
    store = FrameStore.from_files(data, "Breakout", 4)
    frames, actions = store.window(store.targets[:6], 2)
    batch = context_batch(frames, actions, 2, 0.0, g)
    eps = torch.randn(batch.target.shape, generator=g)
    goal = teacher_sample(tr.teacher, batch, eps, list(explicit_times) or teacher_times(4, 1.0), False)

    def distance():
        with torch.no_grad():
            return float((batch.predict(tr.student, eps, torch.ones(6), False) - goal).square().mean())

    before = distance()
    tr.train()
    assert distance() < 0.7 * before, (before, distance())


def test_two_step_student_runs_in_the_runtime(teacher_and_data, tmp_path, one_thread):
    from nextframe.export.bundle import export_bundle
    from nextframe.models.unet_sampling import FrameStackSampler
    from nextframe.training.checkpoint import load_model, model_metadata

    teacher, data, _ = teacher_and_data
    tr = _distill(teacher, data, tmp_path / "d", "trajectory", 3)
    tr.train()
    student = load_model(tr.student_path)
    times = json.loads(model_metadata(tr.student_path)["default_times"])
    bundle = str(tmp_path / "bundle")
    export_bundle(student, bundle, times=times)
    cfg = student.cfg
    noise = noise_draws(2 + 2 * 6, (3, cfg.height, cfg.width), 3)
    ctx = np.stack([square_episode(3, 0).frames[i] for i in range(2)])
    actions = [4, 2]
    with Session(bundle, backend="ort-cpu", threads=1) as s:
        s.feed_noise(np.concatenate([n.reshape(-1) for n in noise]))
        s.reset(ctx, actions)
        got = np.stack([s.step_raw(a) for a in [0, 1, 2, 3, 2, 2]])

    class Fed(FrameStackSampler):
        def _noise(self):
            return torch.from_numpy(noise.pop(0)).reshape(1, 3, cfg.height, cfg.width)

    noise = list(noise)
    ref = Fed(student, times=times)
    ref.reset(torch.from_numpy(ctx.transpose(0, 3, 1, 2)).float() / 127.5 - 1, actions)
    want = np.stack([ref.step(a)[0].numpy() for a in [0, 1, 2, 3, 2, 2]])
    assert max(nmse(g, w) for g, w in zip(got, want)) <= 1e-6


def _psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_quantize_cli_writes_a_bundle_the_core_runs(teacher_and_data, tmp_path, one_thread, capsys):
    from nextframe.cli import main
    from nextframe.export.bundle import export_bundle
    from nextframe.training.checkpoint import load_model

    teacher, data, _ = teacher_and_data
    fp32 = str(tmp_path / "fp32")
    export_bundle(load_model(teacher), fp32, n_steps=2)
    q = str(tmp_path / "int8")
    assert main(["quantize", fp32, "--out", q, "--calib", *data, "--windows", "4", "--frames", "2"]) == 0
    m = json.loads((tmp_path / "int8" / "manifest.json").read_text())
    assert m["quantization"]["precision"] == "int8" and m["quantization"]["method"] == "qdiff"
    assert m["quantization"]["error_vs_fp32"]["n_feeds"] > 0
    import onnx

    ops = {n.op_type for n in onnx.load(os.path.join(q, "step.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    frames = {}
    ctx = np.stack([square_episode(3, 0).frames[i] for i in range(2)])
    for name, path in (("fp32", fp32), ("int8", q)):
        with Session(path, backend="ort-cpu", threads=1, seed=1) as s:
            s.reset(ctx, [4, 2])
            frames[name] = np.stack([s.step(a) for a in [0, 1, 2]])
    assert _psnr(frames["int8"], frames["fp32"]) >= 30.0
    capsys.readouterr()
    assert main(["quantize", fp32, "--out", q, "--calib", *data]) == 2  # exists: never overwritten
    assert main(["quantize", fp32, "--out", str(tmp_path / "x"), "--method", "fancy", "--calib", *data]) == 2
    assert main(["quantize", fp32, "--out", str(tmp_path / "y"), "--precision", "int4", "--calib", *data]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("nextframe: quantize:") and "exists" in err[0]
    assert "unknown method 'fancy'" in err[1] and "precision 'int4'" in err[2]


@pytest.mark.parametrize("times", [(1.0, 0.5, 0.5, 0.0), (0.9, 0.0), (1.0,)])
def test_teacher_times_must_fall_from_1_to_0(times):
    from nextframe.distill.config import DistillConfig

    with pytest.raises(ValueError, match=r"^distill config: teacher_times must fall from 1 to 0"):
        DistillConfig(method="trajectory", teacher_times=times)
