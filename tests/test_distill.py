"""Step distillation (distill/): consistency distillation and one-step f-distill on a tiny teacher, their
pieces (boundary target, h(r) weights), resumable state, the one-step student through the C++ runtime, and
one-line errors for bad input."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open

from conftest import randomized_model, tiny_config
from nextframe.data.dataset import WindowDataset
from nextframe.distill.config import DistillConfig, load_distill_config
from nextframe.distill.consistency import cd_grid, consistency_loss, consistency_target, student_times
from nextframe.distill.fdistill import density_ratio, generator_weights, h_of_r, normalise_per_bin
from nextframe.distill.trainer import DistillTrainer
from nextframe.distill.continuous_consistency import (BOUNDARY_T, consistency_function, consistency_tangent,
                                                      normalise_tangent)
from nextframe.distill.windows import Window, per_slot
from nextframe.models.flow import add_noise
from nextframe.training.rollout_pool import RolloutPool
from nextframe.training.checkpoint import load_model, save_model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def teacher(tmp_path):
    path = str(tmp_path / "teacher.safetensors")
    save_model(randomized_model(tiny_config()), path, {"default_steps": "4"})
    return path


def _cfg(tmp_path, data, **kw):
    base = dict(data=tuple(data), out_dir=str(tmp_path / "run"), seq_len=4, batch_size=4, lr=2e-3, warmup_steps=2,
                total_steps=20, log_every=5, eval_every=10, ckpt_every=10, bf16=False, teacher_eval_steps=4,
                cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return DistillConfig(**base)


def _batch(cfg, n=8, seed=123):
    data = WindowDataset(cfg.data, 16, 16, cfg.seq_len, 4, cfg.cache_dir)
    frames, actions = data.sample(n, np.random.default_rng(seed))
    return Window.from_batch(frames, actions, cfg.context_noise_max, False, torch.Generator().manual_seed(1))


def test_features_leave_forward_sequence_unchanged():
    m = randomized_model(tiny_config())
    g = torch.Generator().manual_seed(0)
    clean, noisy = torch.randn(2, 3, 3, 16, 16, generator=g), torch.randn(2, 3, 3, 16, 16, generator=g)
    args = (clean, torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), noisy, torch.full((2, 3), 0.5),
            torch.ones(2, 3, dtype=torch.long), torch.arange(1, 4))
    with torch.no_grad():
        plain = m.forward_sequence(*args)
        out, feats = m.forward_sequence(*args, return_features=True)
    assert torch.equal(plain, out)
    assert feats.shape == (2, 3, m.cfg.tokens_per_frame, m.cfg.dim)
    with pytest.raises(ValueError, match="feature_block must be in 0..1"):
        m.forward_sequence(*args, return_features=True, feature_block=2)


def test_consistency_boundary_target_and_grid():
    g = torch.Generator().manual_seed(0)
    x_next, pred = torch.randn(2, 3, 3, 4, 4, generator=g), torch.randn(2, 3, 3, 4, 4, generator=g)
    t_next = torch.tensor([[0.0, 0.5, 0.0625], [0.0, 0.0, 0.25]])
    tgt = consistency_target(x_next, t_next, pred)
    at_zero = t_next == 0
    assert torch.equal(tgt[at_zero], x_next[at_zero]) and torch.equal(tgt[~at_zero], pred[~at_zero])
    grid = cd_grid(16)
    assert grid[0] == 1.0 and grid[-1] == 0.0 and len(grid) == 17
    for n in (4, 2, 1):  # every student schedule lies on the teacher grid
        assert set(student_times(n)) <= set(grid.tolist())


def test_cd_loss_falls_student_samples_and_resume(tmp_path, square_episodes, teacher):
    cfg = _cfg(tmp_path, square_episodes, method="cd", cd_intervals=4, cd_target_decay=0.5, student_steps=2,
               eval_steps=(4, 2, 1), lr=5e-3, total_steps=12, ckpt_every=5, eval_every=6)
    tr = DistillTrainer(teacher, cfg, progress=False)
    w = _batch(cfg)

    def held_out():  # same batch, same noise and k: only the student (and its target) change
        with torch.no_grad():
            return consistency_loss(tr.student, tr.teacher, tr.target, w, tr.grid, cfg.motion_weight,
                                    torch.Generator().manual_seed(0)).item()

    before = held_out()
    tr.train(max_steps=10)
    after = held_out()
    assert np.isfinite(after) and after < 0.8 * before, (before, after)  # ~0.65 seen after 8 steps
    noise = torch.randn(w.target.shape)
    for n in (4, 2, 1):
        assert w.sample(tr.ema, noise, student_times(n)).shape == w.target.shape
    again = DistillTrainer(teacher, cfg, progress=False)
    assert again.step == 10
    again.train()
    assert again.step == 12
    with pytest.raises(ValueError, match="holds a cd run, not fdistill"):
        DistillTrainer(teacher, dataclasses.replace(cfg, method="fdistill", student_steps=1), progress=False)
    recs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert evals and set(evals[-1]["student"]) == {"4", "2", "1"}
    with safe_open(str(tmp_path / "run" / "student.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["default_steps"] == "2" and meta["distill_method"] == "cd" and meta["distill_step"] == "12"
    _runtime_matches_pytorch(load_model(str(tmp_path / "run" / "student.safetensors")), str(tmp_path / "bundle"),
                             student_times(2))  # the multi-step student: its schedule comes from the manifest


def test_continuous_tangent_is_the_derivative_along_the_teacher_ode():
    student, teacher = randomized_model(tiny_config()), randomized_model(tiny_config(), seed=1)
    g = torch.Generator().manual_seed(0)
    frames, actions = torch.rand(2, 4, 3, 16, 16, generator=g) * 2 - 1, torch.randint(0, 4, (2, 4), generator=g)
    w = Window.from_batch(frames, actions, 0.0, False)
    t = torch.tensor([[0.6, 0.3, 0.9], [0.45, 0.7, 0.2]])
    x = add_noise(w.target, t, torch.randn(w.target.shape, generator=g))
    f, tangent = consistency_tangent(student, teacher, w, x, t, r=1.0)
    assert f.requires_grad and not tangent.requires_grad
    d = 1e-5  # one tiny Euler step of the teacher's ODE, then f there: f - d * df/dt to first order
    with torch.no_grad():
        x_back = x - d * (x - w.predict(teacher, x, t)) / per_slot(t)
        f_back = consistency_function(student, w, x_back, t - d)
    rel = ((f.detach() - d * tangent - f_back).norm() / (f.detach() - f_back).norm()).item()
    assert rel < 0.05, rel  # 0.0045 seen (float32, the 1000 t time embedding is steep)
    # r = 0 (start of the warm-up): only the velocity gap to the teacher, zero for a student equal to it
    _, warm = consistency_tangent(teacher, teacher, w, x, t, r=0.0)
    assert warm.abs().max() < 1e-5
    # the boundary is structural: f(x, 0) = x whatever the network, and the network's x0 from BOUNDARY_T on
    zero, late = torch.zeros(2, 3), torch.full((2, 3), BOUNDARY_T)
    with torch.no_grad():
        assert torch.equal(consistency_function(student, w, x, zero), x)
        torch.testing.assert_close(consistency_function(student, w, x, late), w.predict(student, x, late))
    assert normalise_tangent(torch.full((1, 1, 3, 4, 4), 10.0), 0.1).max() < 1.0


def test_continuous_cd_trains_its_time_weight_and_resumes(tmp_path, square_episodes, teacher):
    cfg = _cfg(tmp_path, square_episodes, method="cd", cd_variant="continuous", lr=3e-4, scm_warmup_steps=0,
               student_steps=1, cd_intervals=4, eval_steps=(2, 1), total_steps=12, ckpt_every=5, eval_every=6,
               scm_weight_lr=0.05)
    tr = DistillTrainer(teacher, cfg, progress=False)
    assert "target" not in tr.modules  # theta^- is the student itself, no EMA target network
    before = [p.detach().clone() for p in tr.student.parameters()]
    tr.train(max_steps=10)
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.student.parameters()))
    recs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    logs = [r for r in recs if r["kind"] == "distill"]
    assert all(np.isfinite(r["loss"]) for r in logs)
    # the learned log-weight w(t) (starting at 0) moves towards log(error), the minimum of err * exp(-w) + w
    target = math.log(logs[-1]["consistency_mse"])
    with torch.no_grad():
        w_now = tr.time_weight(torch.linspace(0.1, 0.9, 9)).mean().item()
    assert abs(w_now - target) < 0.8 * abs(target), (w_now, target)
    again = DistillTrainer(teacher, cfg, progress=False)
    assert again.step == 10
    torch.testing.assert_close(again.time_weight.linear.bias, tr.time_weight.linear.bias)
    again.train()
    assert again.step == 12
    with pytest.raises(ValueError, match="holds a continuous cd run, not discrete"):
        DistillTrainer(teacher, dataclasses.replace(cfg, cd_variant="discrete"), progress=False)
    with safe_open(str(tmp_path / "run" / "student.safetensors"), framework="pt") as f:
        assert f.metadata()["cd_variant"] == "continuous"
    with pytest.raises(ValueError, match="cd_variant must be one of"):
        _cfg(tmp_path, square_episodes, cd_variant="trig")


def test_own_context_conditions_on_teacher_predictions(tmp_path, square_episodes, teacher):
    cfg = _cfg(tmp_path, square_episodes, own_context_prob=1.0, own_context_passes=2)
    tr = DistillTrainer(teacher, cfg, progress=False)
    frames, actions = WindowDataset(cfg.data, 16, 16, cfg.seq_len, 4, cfg.cache_dir).sample(8, np.random.default_rng(5))
    shown = tr._own_context(frames, actions, np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert shown.shape == frames.shape
    torch.testing.assert_close(shown[:, 0], frames[:, 0])  # frame 0 has no context to predict it from
    assert (shown[:, 1:] - frames[:, 1:]).abs().max() > 1e-3  # the rest are the teacher's predictions
    w = Window.from_batch(frames, actions, 0.0, False, torch.Generator().manual_seed(0), shown)
    torch.testing.assert_close(w.clean, shown[:, :-1])
    torch.testing.assert_close(w.target, frames[:, 1:])  # targets stay real
    assert tr._own_context(frames, actions, np.random.default_rng(0), None) is not None
    off = DistillTrainer(teacher, dataclasses.replace(cfg, own_context_prob=0.0, out_dir=str(tmp_path / "off")), progress=False)
    assert off._own_context(frames, actions, np.random.default_rng(0), None) is None
    tr.train(max_steps=3)
    assert tr.step == 3


def test_pool_context_is_the_teachers_deep_rollout(tmp_path, square_episodes, teacher):
    cfg = _cfg(tmp_path, square_episodes, method="fdistill", student_steps=1, pool_context_prob=1.0,
               pool_min_len=6, pool_max_len=9, pool_frames_per_step=2, gen_every=2, context_noise_max=0.0)
    tr = DistillTrainer(teacher, cfg, progress=False)
    data = WindowDataset(cfg.data, 16, 16, cfg.seq_len, 4, cfg.cache_dir)
    pool = RolloutPool(tr.teacher, data, cfg.batch_size, cfg.seq_len, cfg.pool_min_len, cfg.pool_max_len,
                       np.random.default_rng(0), torch.Generator().manual_seed(0))
    w = tr._window(data, pool, np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert w.deep and pool.horizon == 2
    shown, real, _ = pool.window()
    torch.testing.assert_close(w.clean, shown[:, :-1], rtol=0, atol=1e-6)
    torch.testing.assert_close(w.target, real[:, 1:])
    assert (shown[:, -1] - real[:, -1]).abs().max() > 1e-3  # the teacher's frames, not the recording's
    # a deep window trains the fake score and (every gen_every-th step) the generator, never the discriminator
    disc_before = [p.detach().clone() for p in tr.disc.parameters()]
    tr.train(max_steps=4)
    assert tr.step == 4 and all(torch.equal(a, b) for a, b in zip(disc_before, tr.disc.parameters()))
    recs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert "loss_disc" not in recs[0] and np.isfinite(recs[0]["loss"])
    with pytest.raises(ValueError, match="seq_len <= pool_min_len"):
        _cfg(tmp_path, square_episodes, pool_context_prob=0.5, pool_min_len=2)
    with pytest.raises(ValueError, match="pool_context_prob must be in"):
        _cfg(tmp_path, square_episodes, pool_context_prob=1.5)


def test_h_of_r_ratio_clamp_and_bins():
    r = torch.tensor([0.5, 1.0, 2.0, 10.0])
    assert torch.equal(h_of_r(r, "rkl"), torch.ones(4))
    assert torch.allclose(h_of_r(r, "js"), r / (1 + r))
    assert torch.equal(h_of_r(r, "fkl"), r)
    with pytest.raises(ValueError, match="unknown divergence 'kl'"):
        h_of_r(r, "kl")
    assert torch.allclose(density_ratio(torch.tensor([-10.0, 0.0, math.log(3.0), 10.0]), 0.1, 20.0),
                          torch.tensor([0.1, 1.0, 3.0, 20.0]))
    t = torch.tensor([0.1, 0.2, 0.9, 0.95])  # two of four bins used
    nb = normalise_per_bin(torch.tensor([1.0, 3.0, 4.0, 12.0]), t, 4)
    assert torch.allclose(nb, torch.tensor([0.5, 1.5, 0.5, 1.5]))
    for div in ("rkl", "js", "fkl"):
        h = generator_weights(torch.tensor([[-1.0, 0.5], [2.0, 0.0]]), torch.tensor([[0.1, 0.3], [0.6, 0.8]]), div, 0.1, 20.0, 2)
        assert h.mean().item() == pytest.approx(1.0)


def test_fdistill_steps_resume_and_runtime_parity(tmp_path, square_episodes, teacher):
    cfg = _cfg(tmp_path, square_episodes, method="fdistill", student_steps=1, gen_every=2, total_steps=6,
               lr=1e-3, fake_lr=1e-3, disc_lr=1e-3, log_every=2, ckpt_every=2, eval_every=4)
    tr = DistillTrainer(teacher, cfg, progress=False)
    before = [p.clone() for p in tr.student.parameters()]
    tr.train(max_steps=4)
    assert tr.step == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.student.parameters()))  # G was updated
    again = DistillTrainer(teacher, cfg, progress=False)
    assert again.step == 4
    for (k, a), b in zip(tr.disc.state_dict().items(), again.disc.state_dict().values()):
        assert torch.equal(a, b), k
    again.train()
    recs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in recs if r["kind"] == "distill"]
    assert [r["step"] for r in steps] == [2, 4, 6]
    assert all(np.isfinite(r[k]) for r in steps for k in ("loss", "loss_fake", "loss_disc", "loss_dm", "loss_gan"))

    student_path = str(tmp_path / "run" / "student.safetensors")
    with safe_open(student_path, framework="pt") as f:
        assert f.metadata()["default_steps"] == "1"
    _runtime_matches_pytorch(load_model(student_path), str(tmp_path / "bundle"), [1.0, 0.0])


def _runtime_matches_pytorch(student, bundle: str, times: list[float]) -> None:
    """Export the student with `times` as its schedule and roll it out through the C++ runtime and the PyTorch
    cached sampler on the same noise: NMSE <= 1e-6 per frame (fp32 ORT vs PyTorch)."""
    from nextframe.export.bundle import export_bundle
    from nextframe.runtime import Session
    from runtime_helpers import FedCachedSampler, nmse, noise_draws

    manifest = export_bundle(student, bundle, context_noise=0.05, times=times)
    assert manifest["sampler"]["kind"] == "flow_euler_x0" and manifest["sampler"]["times"] == times
    n_steps = len(times) - 1
    actions, context_actions = [0, 2, 3, 1, 2, 2], [4, 0]
    noise = noise_draws(2 + (1 + n_steps) * len(actions), (3, 16, 16), seed=7)
    ctx = (torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1).numpy()
    with Session(bundle, backend="ort-cpu", threads=1) as s:
        s.feed_noise(np.concatenate([n.reshape(-1) for n in noise]))
        s.reset(ctx, context_actions)
        got = np.stack([s.step_raw(a) for a in actions])
    ref = FedCachedSampler(student, noise, n_steps=n_steps, context_noise=0.05)
    ref.reset(torch.from_numpy(ctx), context_actions)
    want = np.stack([ref.step(a)[0].numpy() for a in actions])
    assert max(nmse(g, w) for g, w in zip(got, want)) <= 1e-6
    assert want.std() > 0.05


def test_config_and_input_errors(tmp_path, teacher, capsys):
    from nextframe.cli import main

    p = tmp_path / "c.json"
    p.write_text(json.dumps({"distill": {"method": "cd", "batch_sise": 3}}))
    with pytest.raises(ValueError, match=r"unknown distill keys \['batch_sise'\]"):
        load_distill_config(str(p))
    p.write_text(json.dumps({"distill": {"method": "cd"}}))
    with pytest.raises(ValueError, match="--method fdistill but .* is a cd config"):
        load_distill_config(str(p), method="fdistill")
    with pytest.raises(ValueError, match="cd_intervals 6 is not a multiple of the student step count 4"):
        DistillConfig(cd_intervals=6)
    with pytest.raises(ValueError, match="student_steps must be 1"):
        DistillConfig(method="fdistill", student_steps=2)
    with pytest.raises(ValueError, match="divergence must be one of"):
        DistillConfig(divergence="kl")
    cases = [
        (["--method", "progressive", "--config", str(p), "--teacher", teacher], "unknown method 'progressive'"),
        (["--method", "cd", "--config", str(p), "--teacher", str(tmp_path / "none.safetensors")], "model: file not found"),
        (["--method", "cd", "--config", str(tmp_path / "none.json")], "distill config: file not found"),
    ]
    p2 = tmp_path / "m.json"
    p2.write_text(json.dumps({"model": dataclasses.asdict(tiny_config(dim=64)), "distill": {"method": "cd"}}))
    cases.append((["--method", "cd", "--config", str(p2), "--teacher", teacher],
                  "does not match the config's model section (dim: config 64 vs teacher 32)"))
    for argv, msg in cases:
        assert main(["distill", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("nextframe: ") and msg in err, err


def test_shipped_distill_configs_parse():
    cd, model = load_distill_config("configs/distill_cd.json", method="cd")
    assert cd.method == "cd" and cd.batch_size == 8 and cd.seq_len == 8 and model["dim"] == 192
    fd, _ = load_distill_config("configs/distill_fdistill.json", method="fdistill")
    assert fd.method == "fdistill" and fd.student_steps == 1 and fd.divergence == "js"
    scm, _ = load_distill_config("configs/distill_scm.json", method="cd")
    assert scm.cd_variant == "continuous" and cd.cd_variant == "discrete"
    # the comparison is fair: both consistency runs see the same batches, context mix and learning rate
    same = ("data", "seq_len", "batch_size", "lr", "pool_context_prob", "own_context_prob", "seed", "motion_weight")
    assert all(getattr(scm, k) == getattr(cd, k) for k in same)
    # every shipped transformer distillation config is written for the shipped transformer
    from nextframe.training.checkpoint import load_model
    from nextframe.distill.config import check_teacher
    for path in ("configs/distill_cd.json", "configs/distill_fdistill.json", "configs/distill_scm.json"):
        check_teacher(load_model("nextframe/default_model/breakout_dit.safetensors").cfg, load_distill_config(path)[1], path)
