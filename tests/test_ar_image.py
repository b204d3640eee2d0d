"""The MAR-style AR image model end to end on a tiny network: the schedules against their formulas (Python and C++),
training (the loss falls), export, the C++ masked-AR loop and the Distilled Decoding student against PyTorch for
the same noise and order, and the errors a user can cause. Tolerances: tokens NMSE <= 1e-9 (fp32 ORT vs PyTorch;
measured ~1e-13), images equal except rounding ties (at most 0.1% of values, each off by 1)."""
from __future__ import annotations

import json
import math
import os
import zlib

import numpy as np
import pytest
import torch

from nextframe import _core
from nextframe.cli import main
from nextframe.distill.distilled_decoding import DDStudent, dd_loss, trajectory_state
from nextframe.evaluation.frechet import frechet_distance
from nextframe.export.ar_bundle import export_ar_bundle, export_default_schedules, export_from_files
from nextframe.models.mar import MarModel
from nextframe.models.mar_config import MarConfig
from nextframe.models.mar_sampling import generate_tokens, random_order
from nextframe.models.mar_schedules import (KINDS, HeadSchedule, equal_budget_constant, head_evaluations,
                                            tokens_per_step)
from nextframe.runtime.image_session import ImageSession
from nextframe.runtime.png import grid, png_bytes
from nextframe.training.mar_checkpoint import load_mar, save_mar

N_AR = 8


def tiny_cfg() -> MarConfig:
    return MarConfig(dim=32, depth=2, heads=2, head_width=64, head_depth=2, classes=("Breakout", "Pong"),
                     token_mean=-0.6, token_std=0.5)


def nmse(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(((a - b) ** 2).mean() / max((b ** 2).mean(), 1e-30))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    teacher = MarModel(tiny_cfg()).eval()
    with torch.no_grad():  # the adaLN gates start at zero, where the head would ignore the backbone: wake them up
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    student = DDStudent.from_teacher(teacher)
    with torch.no_grad():  # a student that differs from the teacher, so the parity below tests the student graph
        student.noise_embedding.normal_(0, 0.5)
    student.eval()
    order = [int(i) for i in np.random.default_rng(3).permutation(64)]
    d = tmp_path_factory.mktemp("ar") / "bundle"
    schedules = export_default_schedules(6, 2, 6, N_AR, 64)
    export_ar_bundle(teacher, str(d), schedules, "disa_linear", N_AR, student=student, dd_order=order,
                     dd_two_step_revealed=32)
    return teacher, student, order, str(d)


# --- schedules --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("K,L", [(1, 64), (2, 64), (8, 64), (16, 64), (64, 64), (12, 256)])
def test_mask_schedule_follows_the_cosine_formula(K, L):
    counts = tokens_per_step(K, L)
    assert sum(counts) == L and min(counts) >= 1 and len(counts) == K
    masked = L - np.cumsum(counts)
    for k in range(K - 1):
        formula = math.floor(L * math.cos(math.pi / 2 * (k + 1) / K) + 1e-9)
        prev = L if k == 0 else masked[k - 1]
        assert masked[k] == max(0, min(prev - 1, formula))
    assert masked[-1] == 0
    assert list(_core.ar_tokens_per_step(K, L)) == counts


def test_mask_schedule_refuses_more_steps_than_tokens():
    with pytest.raises(ValueError, match="AR steps"):
        tokens_per_step(65, 64)
    with pytest.raises(ValueError, match="AR steps"):
        _core.ar_tokens_per_step(65, 64)


@pytest.mark.parametrize("K", [1, 2, 8, 16])
def test_head_schedules_follow_their_formulas(K):
    hi, lo = 50, 5
    for kind in KINDS:
        got = HeadSchedule(kind, hi, lo).steps(K)
        assert list(_core.ar_head_steps(kind, hi, lo, 0.5, K)) == got
        for k, t in enumerate(got):
            f = 1.0 if K == 1 else k / (K - 1)
            want = {"constant": hi, "linear": lo + math.floor((1 - f) * (hi - lo) + 1e-9),
                    "cosine": lo + math.floor((1 + math.cos(math.pi * f)) / 2 * (hi - lo) + 1e-9),
                    "two_stage": hi if k < math.ceil(0.5 * K) else lo}[kind]
            assert t == want, (kind, k)
    lin = HeadSchedule("linear", hi, lo).steps(16)
    assert lin[0] == hi and lin[-1] == lo and lin == sorted(lin, reverse=True)


def test_equal_budget_constant_matches_the_annealed_budget():
    s = HeadSchedule("linear", 50, 5)
    total = head_evaluations(s.steps(16), 16, 64)
    c = equal_budget_constant(s, 16, 64)
    assert abs(head_evaluations(c.steps(16), 16, 64) - total) <= 32  # nearest integer steps per token
    assert head_evaluations(HeadSchedule("constant", 50, 50).steps(16), 16, 64) == 50 * 64


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="unknown head schedule"):
        HeadSchedule("exponential")
    with pytest.raises(ValueError, match="t_lo <= t_hi"):
        HeadSchedule("linear", 3, 5)
    with pytest.raises(ValueError, match="unknown head schedule"):
        _core.ar_head_steps("exponential", 5, 1, 0.5, 8)


# --- model and training -----------------------------------------------------------------------------------------

def test_tokens_round_trip_and_config_json():
    m = MarModel(tiny_cfg())
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    assert torch.equal(m.to_images(m.to_tokens(x)), x)
    assert MarConfig.from_json(m.cfg.to_json()) == m.cfg
    with pytest.raises(ValueError, match="unknown class"):
        m.cfg.class_index("Tetris")


def test_tiny_model_trains():
    torch.manual_seed(0)
    m = MarModel(tiny_cfg())
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(8, 3, 64, 64, dtype=torch.uint8)
    x[:4, 0, 10:20, 10:40] = 200  # two "games": a red bar, a green square
    x[4:, 1, 30:50, 30:50] = 180
    tokens, labels = m.to_tokens(x), torch.tensor([0] * 4 + [1] * 4)
    opt = torch.optim.AdamW(m.parameters(), 2e-3)
    losses = []
    for _ in range(60):
        loss = m.loss(tokens, labels, torch.Generator().manual_seed(1))  # same masks and noise: a fixed objective
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert np.isfinite(m.loss(tokens, labels, g).item())


def test_model_file_round_trip(tmp_path):
    m = MarModel(tiny_cfg())
    save_mar(m, str(tmp_path / "m.safetensors"), {"step": 3})
    back = load_mar(str(tmp_path / "m.safetensors"))
    assert back.cfg == m.cfg
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), m.state_dict().values()))
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_mar(str(tmp_path / "bad.safetensors"))
    with pytest.raises(FileNotFoundError):
        load_mar(str(tmp_path / "missing.safetensors"))


# --- runtime parity ---------------------------------------------------------------------------------------------

def _inputs(b: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 64, 192, generator=g), random_order(b, 64, g), torch.tensor([i % 2 for i in range(b)])


@pytest.mark.parametrize("schedule", ["disa_linear", "fixed", "disa_two_stage"])
def test_runtime_ar_loop_matches_pytorch(tiny, schedule):
    teacher, _, _, bundle = tiny
    noise, order, labels = _inputs(3, 1)
    with ImageSession(bundle, backend="ort-cpu", batch=3) as s:
        steps = s.head_steps(schedule)
        images, tokens = s.generate(None, 3, labels=labels.tolist(), noise=noise.numpy(), order=order.numpy(),
                                    schedule=schedule, return_tokens=True)
        counters = s.last_counters
    ref = generate_tokens(teacher, labels, noise, order, steps, N_AR)
    assert nmse(tokens, ref.numpy()) <= 1e-9
    ref_images = teacher.to_images(ref).permute(0, 2, 3, 1).numpy()
    diff = np.abs(ref_images.astype(int) - images)
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
    assert counters["backbone_calls"] == N_AR and counters["head_calls"] == sum(steps)
    assert counters["head_evaluations"] == 3 * head_evaluations(steps, N_AR, 64)


def test_batches_and_seeds_are_reproducible(tiny):
    _, _, _, bundle = tiny
    with ImageSession(bundle, batch=2) as s:
        a = s.generate("Pong", n=3, seed=5)  # two batches, the second filled up with a repeat
        b = s.generate("pong", n=3, seed=5)
        c = s.generate("Pong", n=3, seed=6)
    assert a.shape == (3, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with ImageSession(bundle, batch=3) as s:
        assert np.array_equal(s.generate("Pong", n=3, seed=5), a)  # the batch size does not change the images


def test_distilled_decoding_matches_pytorch(tiny):
    _, student, order, bundle = tiny
    noise, _, labels = _inputs(2, 2)
    with ImageSession(bundle, batch=2) as s:
        _, one = s.generate(None, 2, labels=labels.tolist(), noise=noise.numpy(), mode="dd1", return_tokens=True)
        _, two = s.generate(None, 2, labels=labels.tolist(), noise=noise.numpy(), mode="dd2", return_tokens=True)
        assert s.last_counters["backbone_calls"] == 2 and s.last_counters["head_calls"] == 0
    with torch.no_grad():
        ref1 = student(noise, torch.ones(2, 64), labels)
        ref2 = student.two_step(noise, labels, torch.tensor(order), 32)
    assert nmse(one, ref1.numpy()) <= 1e-9 and nmse(two, ref2.numpy()) <= 1e-9
    assert nmse(two, one) > 1e-6  # the second call changes what the first drew


def test_trajectory_state_and_dd_loss():
    torch.manual_seed(0)
    noise, final = torch.randn(2, 64, 192), torch.randn(2, 64, 192)
    order = torch.randperm(64)
    state, unknown = trajectory_state(noise, final, order, torch.tensor([0, 10]))
    assert torch.equal(state[0], noise[0]) and unknown[0].sum() == 64
    assert torch.equal(state[1, order[:10]], final[1, order[:10]]) and torch.equal(state[1, order[10:]], noise[1, order[10:]])
    assert unknown[1, order[:10]].sum() == 0
    student = DDStudent(tiny_cfg())
    loss = dd_loss(student, noise, torch.tensor([0, 1]), final, order, [8, 16, 32])
    loss.backward()
    assert np.isfinite(loss.item()) and student.noise_embedding.grad is not None


# --- errors -----------------------------------------------------------------------------------------------------

def test_bad_requests_are_one_line_errors(tiny):
    _, _, _, bundle = tiny
    with ImageSession(bundle, batch=2) as s:
        with pytest.raises(ValueError, match="unknown class 'Tetris'.*Breakout, Pong"):
            s.generate("Tetris", n=2)
        with pytest.raises(ValueError, match="unknown schedule 'fast'"):
            s.generate("Pong", n=2, schedule="fast")
        with pytest.raises(ValueError, match="unknown mode"):
            s.generate("Pong", n=2, mode="dd3")
        bad = np.tile(np.arange(64), (2, 1))
        bad[1, 5] = 6
        with pytest.raises(ValueError, match="order row 1 is not a permutation"):
            s.generate("Pong", n=2, order=bad)
        with pytest.raises(ValueError, match=r"noise shape \[2,64,191\] \(expected \[2,64,192\]\)"):
            s._gen.generate(np.zeros(2, np.int64), np.zeros((2, 64, 191), np.float32), bad, [1] * N_AR)
        with pytest.raises(ValueError, match="label 7 out of range"):
            s._gen.generate(np.array([0, 7]), np.zeros((2, 64, 192), np.float32), np.tile(np.arange(64), (2, 1)), [1] * N_AR)
        with pytest.raises(ValueError, match="head step counts"):
            s._gen.generate(np.zeros(2, np.int64), np.zeros((2, 64, 192), np.float32), np.tile(np.arange(64), (2, 1)), [1] * 3)
    with pytest.raises(ValueError, match="does not serve AR image bundles"):
        _core.ArGenerator(_core.ArBundle.open(bundle), backend="trt")


def _copy_bundle(src: str, dst) -> str:
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_damaged_bundles_are_refused(tiny, tmp_path):
    _, _, _, bundle = tiny
    d = _copy_bundle(bundle, tmp_path / "b1")
    with open(os.path.join(d, "head.onnx"), "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="head.onnx' sha256 mismatch"):
        _core.ArBundle.open(d)
    d = _copy_bundle(bundle, tmp_path / "b2")
    path = os.path.join(d, "manifest.json")
    with open(path) as f:
        original = json.load(f)

    def refused(edit, match):
        m = json.loads(json.dumps(original))
        edit(m)
        with open(path, "w") as f:
            json.dump(m, f)
        with pytest.raises(ValueError, match=match):
            _core.ArBundle.open(d)

    refused(lambda m: m["sampler"]["schedules"]["disa_linear"]["steps"].__setitem__(0, 99), "schedule 'disa_linear' lists steps")
    refused(lambda m: m["graphs"]["head"]["inputs"][0].__setitem__("shape", [-1, 100]), r"head graph inputs\[0\]")
    refused(lambda m: m.__setitem__("format", "nextframe.bundle"), "not an AR image bundle")
    refused(lambda m: m["distilled_decoding"]["order"].__setitem__(0, m["distilled_decoding"]["order"][1]), "permutation")
    refused(lambda m: m["model"].__setitem__("classes", []), "model.classes")
    refused(lambda m: m["sampler"].__setitem__("default_schedule", "nope"), "unknown schedule 'nope'")
    with pytest.raises(ValueError, match="no manifest.json"):
        _core.ArBundle.open(str(tmp_path))


def test_bundle_without_student_refuses_dd(tmp_path):
    teacher = MarModel(tiny_cfg()).eval()
    d = str(tmp_path / "nodd")
    export_ar_bundle(teacher, d, {"fixed": HeadSchedule("constant", 2, 2)}, "fixed", 4)
    with ImageSession(d, batch=1) as s:
        assert not s.bundle.has_dd
        with pytest.raises(ValueError, match="no Distilled Decoding student"):
            s.generate("Pong", n=1, mode="dd1")
        assert s.generate("Pong", n=1).shape == (1, 64, 64, 3)


# --- CLI, PNG, Frechet distance -----------------------------------------------------------------------------------

def test_cli_generate_writes_a_grid_and_never_overwrites(tiny, tmp_path, capsys):
    _, _, _, bundle = tiny
    out = tmp_path / "grid.png"
    assert main(["generate", bundle, "--class", "Breakout", "--n", "3", "--out", str(out), "--scale", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 3 and summary["schedule"] == "disa_linear" and summary["images_per_s"] > 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (w, h) == (3 * 64 + 4 * 2, 64 + 2 * 2)
    assert main(["generate", bundle, "--class", "Breakout", "--n", "1", "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert out.read_bytes() == data
    assert main(["generate", bundle, "--class", "Tetris", "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown class 'Tetris'" in capsys.readouterr().err


def test_png_bytes_decode_to_the_image():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = png_bytes(img)
    idat = data[data.index(b"IDAT") + 4: data.index(b"IEND") - 8]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(5, 1 + 7 * 3)
    assert (raw[:, 0] == 0).all() and np.array_equal(raw[:, 1:].reshape(5, 7, 3), img)
    g = grid(np.stack([img, img]), scale=2, pad=1)
    assert g.shape == (12, 31, 3) and np.array_equal(g[1:11, 1:15], img.repeat(2, 0).repeat(2, 1))


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = rng.standard_normal((4000, 4))
    shifted = b + np.array([3.0, 0, 0, 0])
    assert frechet_distance(a, shifted) == pytest.approx(9.0, rel=0.05)
    assert frechet_distance(a, 2 * b) == pytest.approx(4 * (2 - 1) ** 2, rel=0.1)  # per dim (sigma1 - sigma2)^2
    with pytest.raises(ValueError, match="feature sets"):
        frechet_distance(a, rng.standard_normal((10, 3)))


def test_export_from_files_reads_the_sampler_metadata(tmp_path):
    teacher = MarModel(tiny_cfg())
    sampler = {"n_ar_steps": 4, "t_hi": 4, "t_lo": 1, "disa_hi": 4, "default_schedule": "disa_cosine"}
    save_mar(teacher, str(tmp_path / "t.safetensors"), {"ar_sampler": json.dumps(sampler)})
    m = export_from_files(str(tmp_path / "t.safetensors"), str(tmp_path / "b"))
    assert m["sampler"]["default_schedule"] == "disa_cosine" and m["sampler"]["n_ar_steps"] == 4
    assert set(m["sampler"]["schedules"]) >= {"fixed", "disa_linear", "disa_cosine", "disa_two_stage", "constant_same_budget"}
    save_mar(teacher, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="no readable ar_sampler"):
        export_from_files(str(tmp_path / "plain.safetensors"), str(tmp_path / "b2"))


def test_ar_image_table_runs_on_a_tiny_bundle(tiny, tmp_path):
    """The benchmark end to end on synthetic 'games' (a classifier trained for a few steps): every row present,
    the fixed row's ratios exactly 1, the markdown table rendered."""
    from nextframe.benchmarks.ar_image_table import main as table, markdown
    from nextframe.data.episode import Episode, save_episode

    _, _, _, bundle = tiny
    for split, seed in (("train", 0), ("heldout", 1)):
        for game, colour in (("Breakout", 0), ("Pong", 1)):
            frames = np.zeros((41, 210, 160, 3), np.uint8)
            rng = np.random.default_rng([seed, colour])
            for t in range(41):
                y, x = rng.integers(0, 150, 2)
                frames[t, y:y + 50, x:x + 10, colour] = 200
            (tmp_path / split).mkdir(exist_ok=True)
            save_episode(tmp_path / split / f"{game}_{seed}.npz", Episode(frames, np.zeros(40, np.int64), game, 2))
    out = tmp_path / "r.json"
    table(["--bundle", bundle, "--train-data", str(tmp_path / "train"), "--train-cache", str(tmp_path / "c.npz"),
           "--heldout", str(tmp_path / "heldout"), "--classifier", str(tmp_path / "clf.safetensors"),
           "--classifier-steps", "5", "--rows", "fixed", "disa_linear", "dd1", "--n-per-class", "6", "--batch", "4",
           "--out", str(out), "--grids", str(tmp_path / "grids")])
    r = json.loads(out.read_text())
    rows = {x["row"]: x for x in r["rows"]}
    assert set(rows) == {"real frames (training set)", "fixed", "disa_linear", "dd1"}
    assert rows["fixed"]["speedup_vs_fixed"] == 1.0 and rows["fixed"]["head_evaluations_ratio_vs_fixed"] == 1.0
    assert rows["disa_linear"]["head_evaluations_per_image"] < rows["fixed"]["head_evaluations_per_image"]
    assert rows["dd1"]["head_evaluations_per_image"] == 0 and rows["dd1"]["network_calls_per_batch"] == 1
    assert "| disa_linear |" in markdown(r) and (tmp_path / "grids" / "dd1.png").is_file()


def test_train_mar_resumes_from_its_training_state(tmp_path):
    """Two steps, then two more in a second run of the same --run: the second continues (step 4, optimizer moments
    restored) from the state file, and the shipped EMA file is written with its step."""
    from nextframe.training.checkpoint import load_training_state
    from nextframe.training.mar_checkpoint import read_mar_metadata
    from nextframe.training.train_mar import main as train_mar

    rng = np.random.default_rng(0)
    classes = ("Breakout", "Pong")
    np.savez(tmp_path / "cache.npz", images=rng.integers(0, 256, (16, 3, 64, 64), dtype=np.uint8),
             labels=np.array([0, 1] * 8), classes=np.array(classes))
    args = ["--data", str(tmp_path), "--cache", str(tmp_path / "cache.npz"), "--run", str(tmp_path / "run"),
            "--classes", ",".join(classes), "--dim", "16", "--depth", "1", "--heads", "2", "--head-width", "32",
            "--head-depth", "1", "--batch", "4", "--log-every", "1"]
    train_mar(args + ["--steps", "2"])
    train_mar(args + ["--steps", "4"])
    state = str(tmp_path / "run" / "state.safetensors")
    model = MarModel(MarConfig.from_json(read_mar_metadata(state)["config"]))
    ema = MarModel(model.cfg)
    opt = torch.optim.AdamW(model.parameters())
    step, _ = load_training_state(state, model, ema, opt)
    assert step == 4 and all(float(s["step"]) == 4 for s in opt.state.values())
    assert read_mar_metadata(str(tmp_path / "run" / "model_ema.safetensors"))["step"] == "4"
    logged = [json.loads(x)["step"] for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]
