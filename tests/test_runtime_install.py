"""`pip install nextframe` is the bundle runtime: numpy and onnxruntime only. The training stack (torch, ale-py,
gymnasium, safetensors, onnx, tqdm) and video writing (imageio) are extras. Checked two ways: the declared
dependencies, and the runtime paths run in a child process where importing any of those packages fails (a meta
path hook), as on a machine that never installed them: a Session steps, `nextframe rollout --bundle` scores an
episode, and commands that need the training stack say which extra to install, in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

from conftest import square_episode
from nextframe.data.episode import save_episode
from runtime_helpers import tiny_bundle

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "ale_py", "gymnasium", "safetensors", "onnx", "tqdm", "imageio", "imageio_ffmpeg")

PRELUDE = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, NotInstalled())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)


def test_base_dependencies_are_the_runtime_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert names == {"numpy", "onnxruntime"}
    train = " ".join(project["optional-dependencies"]["train"])
    assert all(pkg in train for pkg in ("torch==", "ale-py", "gymnasium", "safetensors", "onnx>="))


def test_session_runs_without_the_training_stack():
    bundle, _ = tiny_bundle()
    r = _run(f"""
import numpy as np
from nextframe.runtime import Session
with Session({bundle!r}, backend="ort-cpu", threads=1) as s:
    s.reset(np.zeros((2, s.height, s.width, s.channels), np.uint8), [s.no_action, 0])
    frame = s.step(1)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("ok", frame.shape, loaded)
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("ok (16, 16, 3) []"), r.stdout


def test_rollout_of_a_bundle_without_the_training_stack(tmp_path):
    bundle, _ = tiny_bundle()
    ep = tmp_path / "ep.npz"
    save_episode(ep, square_episode(8, 0))
    out = tmp_path / "out"
    r = _run(f"""
from nextframe.cli import main
sys.exit(main(["rollout", {str(ep)!r}, "--bundle", {bundle!r}, "--out", {str(out)!r}, "--no-video"]))
""")
    assert r.returncode == 0, r.stderr
    with np.load(out / "ep.npz") as d:
        assert d["frames"].shape == (8 + 1 - 4, 210, 160, 3)
    assert '"source"' in r.stdout


def test_bench_of_a_bundle_without_the_training_stack(tmp_path):
    bundle, _ = tiny_bundle()
    ep = tmp_path / "ep.npz"
    save_episode(ep, square_episode(45, 0))
    r = _run(f"""
from nextframe.cli import main
sys.exit(main(["bench", {bundle!r}, "--episode", {str(ep)!r}, "--frames", "10", "--threads", "1", "--json"]))
""")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert list(out["bundles"].values())[0]["n_frames"] > 0


def test_training_commands_name_the_missing_extra(tmp_path):
    bundle, _ = tiny_bundle()
    ep = tmp_path / "ep.npz"
    save_episode(ep, square_episode(8, 0))
    for argv, extra in ((["export", "--out", str(tmp_path / "b")], "train"),
                        (["rollout", str(ep), "--bundle", bundle, "--out", str(tmp_path / "v")], "video")):
        r = _run(f"from nextframe.cli import main\nsys.exit(main({argv!r}))")
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip()
        assert line.startswith("nextframe: this command needs ") and f"pip install 'nextframe[{extra}]'" in line
        assert "\n" not in line and "Traceback" not in r.stderr


def test_generate_runs_without_the_training_stack(tmp_path):
    """An AR image bundle (exported here, with torch) generates through the C++ loop in a process without it."""
    import torch

    from nextframe.export.ar_bundle import export_ar_bundle
    from nextframe.models.mar import MarModel
    from nextframe.models.mar_config import MarConfig
    from nextframe.models.mar_schedules import HeadSchedule

    torch.manual_seed(0)
    cfg = MarConfig(dim=16, depth=1, heads=2, head_width=32, head_depth=1, classes=("Breakout", "Pong"))
    bundle = str(tmp_path / "ar")
    export_ar_bundle(MarModel(cfg), bundle, {"fixed": HeadSchedule("constant", 2, 2)}, "fixed", 4)
    out = str(tmp_path / "g.png")
    r = _run(f"""
from nextframe.cli import main
rc = main(["generate", {bundle!r}, "--class", "Pong", "--n", "2", "--out", {out!r}])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("rc", rc, loaded)
""")
    assert r.returncode == 0 and "rc 0 []" in r.stdout, (r.stdout, r.stderr)
    assert os.path.getsize(out) > 100
