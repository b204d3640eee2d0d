"""benchmarks/compare.py turns results files of several machines and backends into one table and a plot;
benchmarks/gpu_bench.py runs its CPU path here (its CUDA path needs a GPU: benchmarks/device/run.sh)."""
from __future__ import annotations

import json
import os

import pytest


def _write(root, name, d):
    with open(os.path.join(root, name), "w") as f:
        json.dump(d, f)


def test_compare_renders_every_machine_and_backend(tmp_path):
    from nextframe.benchmarks.compare import collect, main, markdown

    cpu = {"cpu": "AMD EPYC", "logical_cores": 2, "isa": ["avx2", "avx512f"]}
    gpu = {"gpu": "NVIDIA H200", "compute_capability": "sm_90", "cuda": "13.0", "cpu": "Intel Xeon"}
    t = {"fps": 100.0, "latency_p50_ms": 9.5, "latency_p99_ms": 14.0}
    _write(tmp_path, "frame_loop.json", {"benchmark": "frame_loop", "device": cpu, "threads": 2, "model_arch": "unet",
                                         "resolution": [210, 160], "n_steps": 1, "loops": {"cpp_runtime": t}})
    _write(tmp_path, "gpu.json", {"benchmark": "gpu_bench", "device": gpu, "threads": 2,
                                  "model": {"arch": "dit", "resolution": [224, 384], "n_steps": 4},
                                  "backends": {"torch_cuda_graph": {**t, "fps": 900.0}, "cpp_aoti-cuda": {**t, "fps": 700.0}}})
    _write(tmp_path, "bundles.json", {"device": cpu, "threads": 1, "timing": "C++ runtime, ORT CPU",
                                      "bundles": {"int8": {**t, "precision": "int8"}}})
    _write(tmp_path, "notes.json", {"note": "no timing here"})
    rows = collect(str(tmp_path))
    # by model, then device, fastest first
    assert [(r["backend"], r["fps"]) for r in rows] == [("torch_cuda_graph", 900.0), ("cpp_aoti-cuda", 700.0),
                                                         ("C++ runtime (ort-cpu)", 100.0)]
    assert rows[0]["device"] == "NVIDIA H200 (sm_90, CUDA 13.0)" and rows[2]["device"].startswith("AMD EPYC, 2 vCPU")
    assert len(collect(str(tmp_path), variants=True)) == 4
    table = markdown(rows)
    assert table.count("\n") == 5 and "| dit 224x384, 4 steps | NVIDIA H200" in table
    pytest.importorskip("matplotlib")
    main(["--results", str(tmp_path), "--markdown", str(tmp_path / "t.md"), "--png", str(tmp_path / "t.png")])
    with open(tmp_path / "t.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_run_with_gpu_and_cpu_backends_names_each_rows_device(tmp_path):
    """nextframe bench on a GPU machine times CPU and GPU backends in one run: each row names where it ran."""
    from nextframe.benchmarks.compare import collect

    t = {"fps": 100.0, "latency_p50_ms": 9.5, "latency_p99_ms": 14.0}
    _write(tmp_path, "b.json", {"device": {"cpu": "AMD EPYC", "logical_cores": 16, "isa": []}, "threads": 2,
                                "gpu": {"gpu": "NVIDIA H200", "compute_capability": "sm_90", "cuda": "13.0"},
                                "model": {"arch": "unet", "resolution": [210, 160], "n_steps": 2},
                                "backends": {"ort-cpu": t, "ort-cuda": t, "trt-device": t, "aoti-cuda": t, "torch": t}})
    where = {r["backend"]: r["device"] for r in collect(str(tmp_path))}
    assert where["ort-cpu"] == where["torch"] == "AMD EPYC, 16 vCPU"
    assert where["ort-cuda"] == where["trt-device"] == where["aoti-cuda"] == "NVIDIA H200 (sm_90, CUDA 13.0)"


def test_readme_table_is_the_results_table(tmp_path):
    """The README's cross-device table is what compare.py makes of benchmarks/results/ now (after adding a results
    file: python benchmarks/compare.py --readme README.md); --readme replaces only the block between the markers."""
    from nextframe.benchmarks.compare import collect, main, markdown, readme_block

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
        text = f.read()
    start, end = readme_block(text)
    assert text[start:end] == markdown(collect(os.path.join(root, "benchmarks", "results"))), \
        "README's cross-device table is stale: run python benchmarks/compare.py --readme README.md"
    readme = tmp_path / "R.md"
    readme.write_text("intro\n" + text[start - len("<!-- cross-device table: python benchmarks/compare.py --readme "
                                                   "README.md -->") - 1:end] + "<!-- end of the cross-device table -->\nrest\n")
    t = {"fps": 50.0, "latency_p50_ms": 20.0, "latency_p99_ms": 30.0}
    _write(tmp_path, "one.json", {"device": {"cpu": "Zen", "logical_cores": 2, "isa": []}, "threads": 2,
                                  "model": {"arch": "unet", "resolution": [210, 160], "n_steps": 1}, "backends": {"ort-cpu": t}})
    main(["--results", str(tmp_path), "--readme", str(readme)])
    out = readme.read_text()
    assert out.startswith("intro\n<!-- cross-device") and out.endswith("-->\nrest\n")
    assert out.count("| unet 210x160, 1 step |") == 1 and "dit" not in out


@pytest.mark.slow
def test_gpu_bench_cpu_path_times_every_torch_path(tmp_path):
    from nextframe import _core
    from nextframe.benchmarks.gpu_bench import main

    if not _core.aoti_available():
        pytest.skip(_core.aoti_unavailable_reason())
    out = main(["--model", "tiny", "--device", "cpu", "--frames", "20", "--warmup", "2", "--threads", "1",
                "--out", str(tmp_path / "r.json")])
    assert set(out["backends"]) == {"torch_eager", "aoti_python", "cpp_aoti", "cpp_ort-cpu", "cpp_device_loop",
                                    "cpp_device_loop_no_fetch"}
    assert out["aoti_step_max_abs_vs_eager"] < 1e-4 and out["model"]["n_steps"] == 4
    assert out["device_loop_max_abs_vs_frame_loop"] < 1e-5  # the transformer's K/V ring on the device


@pytest.mark.slow
def test_gpu_bench_cpu_path_times_the_device_loop(tmp_path):
    from nextframe import _core
    from nextframe.benchmarks.gpu_bench import main

    if not _core.aoti_available():
        pytest.skip(_core.aoti_unavailable_reason())
    out = main(["--model", "tiny_unet", "--device", "cpu", "--frames", "20", "--warmup", "2", "--threads", "1",
                "--out", str(tmp_path / "r.json")])
    assert {"cpp_aoti", "cpp_device_loop", "cpp_device_loop_no_fetch"} <= set(out["backends"])
    assert out["device_loop_max_abs_vs_frame_loop"] < 1e-5 and out["device_loop_graph_replays"] == {"cpp_device_loop": 0}


def test_scale_model_writes_a_model_file_the_pipeline_reads(tmp_path):
    """benchmarks/scale_model.py: gpu_bench's shapes as model files (load_model reads them back), never over a file."""
    from nextframe.benchmarks.gpu_bench import build_model
    from nextframe.benchmarks.scale_model import main
    from nextframe.training.checkpoint import load_model

    out = str(tmp_path / "tiny.safetensors")
    main(["--model", "tiny", "--out", out])
    m, ref = load_model(out), build_model("tiny")
    assert (m.cfg.height, m.cfg.width, m.cfg.dim) == (32, 32, 64)
    assert all((a == b).all() for a, b in zip(m.state_dict().values(), ref.state_dict().values()))
    with pytest.raises(SystemExit, match="exists"):
        main(["--model", "tiny", "--out", out])
