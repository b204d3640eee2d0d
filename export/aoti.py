"""AOTInductor packages of a bundle's graphs: the same module, inputs and outputs as the ONNX export (export/onnx.py),
compiled ahead of time by torch._inductor for one device, for the C++ core's "aoti" backend (csrc/engine_aoti.cpp,
which runs them through libtorch). A package is tied to the torch version that compiled it: the manifest records it
and the core refuses a package from another torch.
"""
from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import torch

from nextframe.export.onnx import _Graph, example_step_inputs
from nextframe.models.registry import is_frame_stack

AOTI_DIR = "aoti"
DEVICES = ("cpu", "cuda")


def compile_package(model, path: str, device: str = "cpu", kv_only: bool = False):
    """Compile model's step (or kv) graph into an AOTInductor package at path; returns (the max abs difference of its
    outputs from eager PyTorch on the export example, the loaded package, callable like the graph module)."""
    if device not in DEVICES:
        raise ValueError(f"export: --aoti device must be one of {', '.join(DEVICES)} (got {device!r})")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("export: --aoti cuda needs a CUDA device to compile on (none found)")
    # a copy on the device where the model is elsewhere: the caller's model never moves (an export for CUDA left it
    # on the GPU, and a second device's export then moved it again)
    on_device = all(p.device.type == device for p in model.parameters())
    module = _Graph((model if on_device else copy.deepcopy(model)).eval(), kv_only=kv_only).to(device)
    inputs = tuple(t.to(device) for t in example_step_inputs(model))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's and inductor's notes on a fixed-shape graph
        program = torch.export.export(module, inputs)
        torch._inductor.aoti_compile_and_package(program, package_path=path)
        want = module(*inputs)
        package = torch._inductor.aoti_load_package(path)
        got = package(*inputs)
    want = want if isinstance(want, tuple) else (want,)
    got = tuple(got) if isinstance(got, (tuple, list)) else (got,)
    return max(float(np.abs(a.detach().cpu().numpy() - b.detach().cpu().numpy()).max()) for a, b in zip(want, got)), package


def add_packages(model, bundle_dir: str, devices: tuple[str, ...], files: dict) -> dict:
    """Compile the step graph (and a transformer's kv graph) for each device into bundle_dir/aoti/; adds their
    entries to files (name -> sha256, bytes) and returns the manifest's "aoti" section."""
    from nextframe.export.bundle import sha256_file

    os.makedirs(os.path.join(bundle_dir, AOTI_DIR), exist_ok=True)
    packages = []
    for device in dict.fromkeys(devices):
        for graph in ("step",) if is_frame_stack(model) else ("step", "kv"):
            name = f"{AOTI_DIR}/{graph}_{device}.pt2"
            path = os.path.join(bundle_dir, name)
            err, _ = compile_package(model, path, device, kv_only=graph == "kv")
            files[name] = {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}
            packages.append({"graph": graph, "file": name, "device": device, "torch": torch.__version__,
                             "max_abs_vs_torch": err})
    return {"packages": packages}
