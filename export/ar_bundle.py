"""Export a MAR image model (models/mar.py), and optionally its Distilled Decoding student, to an AR image bundle:
ONNX graphs with a dynamic batch, gated on ONNX Runtime vs PyTorch parity, a manifest with the sampler's named
head schedules (DiSA and fixed), and sha256 of every file. The runtime side is csrc/ar_bundle.h / ar_loop.h.
"""
from __future__ import annotations

import os
import warnings

import torch

from nextframe.export.bundle import sha256_file, write_bundle_dir
from nextframe.export.check import NMSE_BOUND, nmse
from nextframe.export.onnx import OPSET
from nextframe.models.mar import MarModel
from nextframe.models.mar_schedules import HeadSchedule

FORMAT = "nextframe.ar_bundle"
FORMAT_VERSION = 1
# Bump when the exported graphs change for the same weights (the cached export of the shipped model is keyed by it)
GRAPH_REVISION = 1


def _io(model: MarModel) -> dict:
    L, D, C = model.cfg.n_tokens, model.cfg.token_dim, model.cfg.dim
    f, i = "float32", "int64"
    return {
        "backbone": ([("tokens", f, [-1, L, D]), ("unknown", f, [-1, L]), ("label", i, [-1])], [("z", f, [-1, L, C])]),
        "head": ([("x", f, [-1, D]), ("t", f, [-1]), ("z", f, [-1, C])], [("velocity", f, [-1, D])]),
        "dd": ([("state", f, [-1, L, D]), ("unknown", f, [-1, L]), ("label", i, [-1])], [("tokens", f, [-1, L, D])]),
    }


def _example(specs, n: int, n_classes: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, dtype, shape in specs:
        shape = [n if d == -1 else d for d in shape]
        if dtype == "int64":
            out[name] = torch.randint(0, n_classes, shape, generator=g)
        elif name == "unknown":
            out[name] = (torch.rand(shape, generator=g) < 0.6).float()
        elif name == "t":
            out[name] = torch.rand(shape, generator=g) * 0.9 + 0.1
        else:
            out[name] = torch.randn(shape, generator=g)
    return out


def _export_graph(module: torch.nn.Module, specs, path: str, n_classes: int) -> float:
    """Export with a dynamic batch dim, then the parity gate at a batch other than the traced one."""
    inputs, outputs = specs
    example = _example(inputs, 2, n_classes, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes (export/onnx.py)
        torch.onnx.export(module, tuple(example.values()), path, input_names=[s[0] for s in inputs],
                          output_names=[s[0] for s in outputs], opset_version=OPSET, dynamo=False,
                          do_constant_folding=True,
                          dynamic_axes={s[0]: {0: "batch"} for s in inputs + outputs})
    import onnxruntime as ort

    feeds = _example(inputs, 3, n_classes, 1)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in feeds.items()})[0]
    with torch.no_grad():
        want = module(*feeds.values()).numpy()
    err = nmse(got, want)
    if not err <= NMSE_BOUND:
        raise RuntimeError(f"export: {os.path.basename(path)} differs from PyTorch (NMSE {err:.3g} > {NMSE_BOUND:g})")
    return err


def schedule_entry(s: HeadSchedule, n_ar_steps: int) -> dict:
    return {**s.to_dict(), "steps": s.steps(n_ar_steps)}


def export_ar_bundle(model: MarModel, out_dir: str, schedules: dict[str, HeadSchedule], default_schedule: str,
                     n_ar_steps: int, student=None, dd_order: list[int] | None = None, dd_two_step_revealed: int = 0,
                     force: bool = False, extra: dict | None = None) -> dict:
    cfg = model.cfg
    if default_schedule not in schedules:
        raise ValueError(f"export: default schedule '{default_schedule}' is not one of {sorted(schedules)}")
    if not 1 <= n_ar_steps <= cfg.n_tokens:
        raise ValueError(f"export: n_ar_steps must be in 1..{cfg.n_tokens} (got {n_ar_steps})")
    if student is not None:
        if dd_order is None or sorted(dd_order) != list(range(cfg.n_tokens)):
            raise ValueError(f"export: dd_order must be a permutation of 0..{cfg.n_tokens - 1}")
        if not 1 <= dd_two_step_revealed < cfg.n_tokens:
            raise ValueError(f"export: dd_two_step_revealed must be in 1..{cfg.n_tokens - 1}")
    io = _io(model)
    model = model.eval()

    def fill(tmp: str) -> dict:
        graphs, files, parity = {}, {}, {}
        modules = {"backbone": model.backbone, "head": model.head}
        if student is not None:
            modules["dd"] = student.eval()
        for name, module in modules.items():
            fname = f"{name}.onnx"
            path = os.path.join(tmp, fname)
            parity[name] = _export_graph(module, io[name], path, len(cfg.classes))
            ins, outs = io[name]
            graphs[name] = {"file": fname, "opset": OPSET,
                            "inputs": [{"name": n, "dtype": d, "shape": s} for n, d, s in ins],
                            "outputs": [{"name": n, "dtype": d, "shape": s} for n, d, s in outs]}
            files[fname] = {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model": {"kind": "mar", "classes": list(cfg.classes), "height": cfg.height, "width": cfg.width,
                      "channels": cfg.channels, "patch": cfg.patch, "n_tokens": cfg.n_tokens,
                      "token_dim": cfg.token_dim, "cond_dim": cfg.dim, "token_mean": cfg.token_mean,
                      "token_std": cfg.token_std, "config": cfg.to_json()},
            "sampler": {"kind": "mar_flow_euler", "n_ar_steps": n_ar_steps, "default_schedule": default_schedule,
                        "schedules": {k: schedule_entry(v, n_ar_steps) for k, v in schedules.items()}},
            "graphs": graphs,
            "files": files,
            "export_check": {"nmse": parity, "backend": "onnxruntime-cpu"},
            **(extra or {}),
        }
        if student is not None:
            manifest["distilled_decoding"] = {"order": [int(i) for i in dd_order],
                                              "two_step_revealed": int(dd_two_step_revealed)}
        return manifest

    return write_bundle_dir(out_dir, fill, force)


def export_default_schedules(t_hi: int, t_lo: int, disa_hi: int, n_ar_steps: int, n_tokens: int) -> dict[str, HeadSchedule]:
    """The schedules a bundle carries: the teacher at t_hi and t_lo fixed steps, DiSA linear / cosine / two-stage from
    disa_hi down to t_lo, and the constant schedule with linear DiSA's budget (the control)."""
    from nextframe.models.mar_schedules import equal_budget_constant

    s = {"fixed": HeadSchedule("constant", t_hi, t_hi),
         "fixed_low": HeadSchedule("constant", t_lo, t_lo),
         "disa_linear": HeadSchedule("linear", disa_hi, t_lo),
         "disa_cosine": HeadSchedule("cosine", disa_hi, t_lo),
         "disa_two_stage": HeadSchedule("two_stage", disa_hi, t_lo)}
    c = equal_budget_constant(s["disa_linear"], n_ar_steps, n_tokens)
    s["constant_same_budget"] = HeadSchedule("constant", c.t_hi, c.t_hi)
    return s



def export_from_files(teacher_path: str, out_dir: str, student_path: str | None = None, force: bool = False) -> dict:
    """Export model files as saved by the MAR tools: the teacher's metadata holds its sampler settings ("ar_sampler":
    n_ar_steps, t_hi, t_lo, disa_hi, default_schedule), the student's the distillation order ("dd_order",
    "dd_two_step_revealed")."""
    import json

    from nextframe.distill.distilled_decoding import DDStudent
    from nextframe.training.mar_checkpoint import load_mar, read_mar_metadata

    teacher = load_mar(teacher_path).float()
    try:
        s = json.loads(read_mar_metadata(teacher_path)["ar_sampler"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"export: {teacher_path} has no readable ar_sampler metadata ({e})") from None
    schedules = export_default_schedules(s["t_hi"], s["t_lo"], s["disa_hi"], s["n_ar_steps"], teacher.cfg.n_tokens)
    student, order, revealed = None, None, 0
    if student_path is not None:
        student = load_mar(student_path, cls=DDStudent).float()
        meta = read_mar_metadata(student_path)
        try:
            order, revealed = json.loads(meta["dd_order"]), int(meta["dd_two_step_revealed"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"export: {student_path} has no readable dd_order / dd_two_step_revealed ({e})") from None
    return export_ar_bundle(teacher, out_dir, schedules, s["default_schedule"], s["n_ar_steps"], student=student,
                            dd_order=order, dd_two_step_revealed=revealed, force=force)
