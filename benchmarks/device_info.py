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


def gpu_info(index: int = 0) -> dict | None:
    """The GPU a CUDA result ran on: name, compute capability, memory, driver and CUDA versions (None without one).
    Read through torch (present wherever a CUDA backend runs here) and nvidia-smi for the driver."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    p = torch.cuda.get_device_properties(index)
    info = {"gpu": p.name, "compute_capability": f"sm_{p.major}{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1),
            "cuda": torch.version.cuda, "driver": None}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"--id={index}"],
                             capture_output=True, text=True, timeout=20, check=False).stdout.strip()
        info["driver"] = out or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def is_gpu_backend(name: str) -> bool:
    """Whether a bench or gpu_bench row ran on the GPU (ort-cuda, aoti-cuda, trt, their device loops, torch_cuda_*)."""
    return "cuda" in name or name.startswith("trt")


def runtime_versions() -> dict:
    """The inference libraries a bench run used, as loaded: ONNX Runtime's version and providers, whether the core
    has TensorRT and the AOTInductor plugin (for the result file; torch's is in versions())."""
    from nextframe import _core
    from nextframe.runtime.session import find_ort_lib

    out = {"nextframe_core": _core.version(), "tensorrt_built": bool(_core.has_tensorrt()),
           "aoti_plugin": bool(_core.aoti_available())}
    try:
        info = _core.ort_library_info(find_ort_lib())
        out["onnxruntime"] = info["version"]
        out["onnxruntime_providers"] = info["providers"]
    except RuntimeError as e:
        out["onnxruntime"] = f"not loadable ({e})"
    return out


def device_label(device: dict) -> str:
    """One line naming a result's machine: the GPU with its compute capability, or the CPU with its cores and the
    ISA extensions that change speed."""
    if device.get("gpu"):
        return f"{device['gpu']} ({device.get('compute_capability', '?')}, CUDA {device.get('cuda', '?')})"
    isa = "/".join(f for f in device.get("isa", []) if f.startswith(("avx512", "amx")))
    return f"{device.get('cpu', 'unknown CPU')}, {device.get('logical_cores', '?')} vCPU" + (f", {isa}" if isa else "")


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
