"""The device session's pieces that run without a GPU: gpu_bench stops the processes sharing the device while it
times and resumes them after; device_pipeline's finetune recipe is a valid training config over the shipped model."""
import importlib.util
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to read a process's state")
def test_others_paused_stops_and_resumes(tmp_path):
    from nextframe.benchmarks.process_pause import paused, pids_from_file

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = tmp_path / "pids"
        pid_file.write_text(f"{child.pid}\n999999999\n")  # a process that is gone is skipped
        with paused(pids_from_file(str(pid_file)), settle_s=0.01) as stopped:
            assert stopped == [child.pid]
            assert proc_state(child.pid) == "T"
        for _ in range(50):
            if proc_state(child.pid) != "T":
                break
            time.sleep(0.05)
        assert proc_state(child.pid) != "T"
        with paused(pids_from_file(None)) as stopped:  # no pid file: nothing stopped
            assert stopped == []
    finally:
        child.kill()
        child.wait()


def test_finetune_recipe_is_a_valid_config_over_the_shipped_model():
    spec = importlib.util.spec_from_file_location("device_pipeline", os.path.join(ROOT, "tools", "device_pipeline.py"))
    dp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dp)
    from nextframe.cli import DEFAULT_MODEL
    from nextframe.models.unet_config import UNetConfig
    from nextframe.training.checkpoint import load_model
    from nextframe.training.config import TrainConfig

    assert os.path.samefile(dp.FT_TRAIN["init_from"], DEFAULT_MODEL)
    shipped = load_model(DEFAULT_MODEL).cfg
    assert UNetConfig.from_dict(dp.FT_MODEL) == shipped  # warm start needs the same architecture
    for name, over in dp.FT_RUNS.items():
        cfg = TrainConfig(**{**dp.FT_TRAIN, **over, "out_dir": "unused", "device": "cpu", "data": ()})
        assert cfg.bounce_rule == "turn" and cfg.batch_size == 128, name
