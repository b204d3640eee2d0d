"""`nextframe bench` end to end on a tiny model (seconds): one JSON object with the side-by-side loops, the
device named, parity checked; and its one-line errors."""
from __future__ import annotations

import json

import torch

from conftest import randomized_model, tiny_config
from nextframe.cli import main
from nextframe.training.checkpoint import save_model


def test_bench_json(tmp_path, capsys):
    model_path = tmp_path / "tiny.safetensors"
    save_model(randomized_model(tiny_config(prev_action_input=True)), str(model_path), {"default_steps": "2"})
    threads = torch.get_num_threads()
    try:
        rc = main(["bench", "--model", str(model_path), "--frames", "14", "--warmup", "2", "--threads", "1", "--json",
                   "--out", str(tmp_path / "r.json")])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == json.loads((tmp_path / "r.json").read_text())
    assert out["device"]["cpu"] and out["n_steps"] == 2
    assert out["runtime_fps"] > 0 and out["torch_fps"] > 0
    assert out["parity_cpp_vs_torch_max_nmse"] <= 1e-6
    assert set(out["loops"]) == {"cpp_runtime", "cpp_runtime_step_graph_only", "python_ort_loop", "torch_eager_cached",
                                 "torch_eager_no_cache"}
    assert out["loops"]["cpp_runtime"]["core_stats"]["uses_kv_graph"] and out["speedup_kv_graph"] > 0
    assert out["loops"]["cpp_runtime"]["n_frames"] == 12  # warm-up frames are not timed
    assert 0.0 <= out["cpp_runtime_overhead_fraction"] < 1.0


def test_bench_errors(tmp_path, capsys):
    model_path = tmp_path / "tiny.safetensors"
    save_model(randomized_model(tiny_config()), str(model_path))
    assert main(["bench", str(tmp_path / "nope"), "--model", str(model_path)]) == 2
    assert "not a bundle" in capsys.readouterr().err
    assert main(["bench", "--model", str(model_path), "--frames", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nextframe: bench: --frames must be at least") and "\n" not in err


def test_distill_table_fps_interleaves_entries(tmp_path):
    from conftest import square_episode
    from nextframe.benchmarks.distill_table import runtime_fps

    models = [randomized_model(tiny_config(), seed) for seed in (0, 1)]
    rows = runtime_fps(models, [2, 1], square_episode(8, 0), n_frames=30, warmup=5, threads=1)
    assert len(rows) == 2
    for row in rows:
        assert row["fps"] > 0 and row["latency_p50_ms"] <= row["latency_p99_ms"] and 0 < row["engine_fraction"] <= 1
