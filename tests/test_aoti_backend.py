"""Backend "aoti": AOTInductor packages exported beside the ONNX graphs (export/aoti.py) and run by the C++ core
through its torch plugin (csrc/engine_aoti.cpp, csrc/aoti_plugin.cpp). Parity with ONNX Runtime on the same bundle,
seed and inputs: a frame-stack U-Net (its frames are compared after the same uint8 rounding; tolerance: at most one
level in 0.5% of values, none more than 2) and a transformer with a kv graph (its own package); bad packages and a
missing plugin are one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import randomized_model, randomized_unet, tiny_config, tiny_unet_config
from nextframe import _core
from nextframe.runtime import Session

why = ""
if not _core.aoti_available():
    why = _core.aoti_unavailable_reason()
pytestmark = pytest.mark.skipif(bool(why), reason=f"AOTInductor plugin not built here: {why}")


def _rollout(bundle, backend, ctx, lead):
    with Session(bundle, backend=backend, threads=1, seed=5) as s:
        s.reset(ctx, lead)
        return s.backend, np.stack([s.step(a) for a in [1, 2, 3, 0, 2, 2]]), s.loop.uses_kv_graph


def _close(a, b):
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    assert d.max() <= 2 and (d > 0).mean() <= 0.005, (d.max(), (d > 0).mean())


@pytest.fixture(scope="module")
def unet_bundle(tmp_path_factory):
    from nextframe.export.bundle import export_bundle

    path = str(tmp_path_factory.mktemp("aoti") / "unet")
    from nextframe.training.checkpoint import save_model

    cfg = tiny_unet_config(height=210, width=160, fold=4, widths=(8, 8), context=2)  # native: real episodes fit
    model = randomized_unet(cfg)
    m = export_bundle(model, path, n_steps=2, aoti=("cpu",))
    save_model(model, path + ".safetensors")  # beside the bundle, not in it: bench's PyTorch loop reads it
    return path, m


def test_unet_package_runs_in_the_core_like_onnx_runtime(unet_bundle):
    path, manifest = unet_bundle
    (pkg,) = manifest["aoti"]["packages"]
    assert pkg["graph"] == "step" and pkg["device"] == "cpu" and pkg["file"] in manifest["files"]
    assert pkg["max_abs_vs_torch"] < 1e-4
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 255, (2, 210, 160, 3), dtype=np.uint8)
    name, ref, _ = _rollout(path, "ort-cpu", ctx, [4, 0])
    name2, got, _ = _rollout(path, "aoti", ctx, [4, 0])
    assert (name, name2) == ("ort-cpu", "aoti")
    _close(ref, got)


def test_transformer_packages_step_and_kv_graphs(tmp_path):
    from nextframe.export.bundle import export_bundle

    path = str(tmp_path / "dit")
    m = export_bundle(randomized_model(tiny_config()), path, n_steps=1, aoti=("cpu",))
    assert sorted(p["graph"] for p in m["aoti"]["packages"]) == ["kv", "step"]
    ctx = np.stack([np.full((16, 16, 3), 40 * i, np.uint8) for i in range(3)])
    _, ref, _ = _rollout(path, "ort-cpu", ctx, [4, 0, 1])
    _, got, kv = _rollout(path, "aoti", ctx, [4, 0, 1])
    assert kv, "the aoti step engine writes the cache with the bundle's kv package"
    _close(ref, got)


def _edited(src, dst, edit):
    import shutil

    shutil.copytree(src, dst)
    with open(os.path.join(dst, "manifest.json")) as f:
        m = json.load(f)
    edit(m)
    with open(os.path.join(dst, "manifest.json"), "w") as f:
        json.dump(m, f)
    return dst


def test_bad_packages_are_one_line_errors(unet_bundle, tmp_path):
    path, _ = unet_bundle
    other_torch = _edited(path, str(tmp_path / "t"), lambda m: m["aoti"]["packages"][0].update(torch="1.0.0"))
    with pytest.raises(ValueError, match="built by torch 1.0.0, the aoti backend runs torch"):
        Session(other_torch, backend="aoti")
    bad_device = _edited(path, str(tmp_path / "d"), lambda m: m["aoti"]["packages"][0].update(device="tpu"))
    with pytest.raises(ValueError, match=r"device 'tpu' \(expected cpu or cuda\)"):
        _core.Bundle.open(bad_device)
    unlisted = _edited(path, str(tmp_path / "u"), lambda m: m["files"].pop("aoti/step_cpu.pt2"))
    with pytest.raises(ValueError, match="aoti package file 'aoti/step_cpu.pt2' not listed in files"):
        _core.Bundle.open(unlisted)
    none = _edited(path, str(tmp_path / "n"), lambda m: m.pop("aoti"))
    with pytest.raises(ValueError, match="no AOTInductor package of the step graph for cpu"):
        Session(none, backend="aoti")
    with pytest.raises(ValueError, match="no AOTInductor package of the step graph for cuda"):
        Session(path, backend="aoti-cuda")


def test_missing_plugin_is_a_one_line_error(unet_bundle):
    path, _ = unet_bundle
    code = ("from nextframe.runtime import Session\n"
            f"try:\n    Session({path!r}, backend='aoti')\nexcept RuntimeError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NEXTFRAME_AOTI_LIB": "/nonexistent/libnf_aoti.so"})
    line = [l for l in out.stdout.splitlines() if l.startswith("ERR")]
    assert line and "backend 'aoti' unavailable" in line[0] and "/nonexistent/libnf_aoti.so" in line[0], out.stdout + out.stderr


def test_bench_times_backends_side_by_side(unet_bundle, tmp_path, capsys):
    from conftest import square_episode
    from nextframe.cli import main
    from nextframe.data.episode import save_episode

    path, _ = unet_bundle
    ep = str(tmp_path / "ep.npz")
    save_episode(ep, square_episode(45, 0))
    assert main(["bench", path, "--backend", "ort-cpu,aoti,torch", "--model", path + ".safetensors", "--frames", "10",
                 "--threads", "1", "--episode", ep, "--json"]) in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(out["backends"]) == ["ort-cpu", "aoti", "torch"] and out["backends"]["aoti"]["backend"] == "aoti"
    assert out["model"] == {"arch": "unet", "resolution": [210, 160], "n_steps": 2}
    assert all(r["fps"] > 0 and r["latency_p99_ms"] >= r["latency_p50_ms"] for r in out["backends"].values())
    assert main(["bench", path, "--backend", "torch", "--model", path + ".safetensors", "--episode", ep]) == 2
    assert "name a C++ runtime backend beside them" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():  # (on a GPU machine the loop runs: benchmarks/device/run.sh)
        assert main(["bench", path, "--backend", "ort-cpu,torch-cuda", "--model", path + ".safetensors",
                     "--episode", ep]) == 2
        assert "backend torch-cuda cannot run here: torch sees no CUDA device" in capsys.readouterr().err
    assert main(["bench", path, "--backend", "ort-cpu,torch", "--episode", ep]) == 2  # the shipped model is not its model
    assert "is not the model" in capsys.readouterr().err
    assert main(["bench", path, "--backend", "aoti-cuda", "--frames", "10", "--episode", ep]) == 2
    assert "backend aoti-cuda cannot run here: the bundle has no AOTInductor package for cuda" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", path, "--backend", "tpu"])
    assert e.value.code == 2 and "unknown backend tpu" in capsys.readouterr().err
