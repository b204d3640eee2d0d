"""Name the machine in every result file: CPU model, cores, ISA extensions that change speed, library versions."""
from __future__ import annotations

import os
import platform
import subprocess


def cpu_info() -> dict:
    info = {"cpu": platform.processor() or "unknown", "logical_cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
        info["isa"] = sorted(f for f in flags if f in {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
    except OSError:
        pass
    return info


def versions() -> dict:
    import numpy
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "torch_threads": torch.get_num_threads()}
    try:
        out["nextframe_git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                              cwd=os.path.dirname(__file__), check=False).stdout.strip() or None
    except OSError:
        out["nextframe_git"] = None
    return out
