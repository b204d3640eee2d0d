"""Quantized bundles: the step graph (and, with groups, one graph per group of denoising steps) quantized by a
back end and calibrated on the runtime's own inputs (quant/calibrate.py).

Back ends: onnxruntime (quant/ort_int8.py: QDQ U8S8, what the C++ core runs fastest on CPU) and modelopt
(quant/modelopt_qdq.py: NVIDIA ModelOpt's Q/DQ ONNX, INT8 or FP8, the graphs TensorRT builds explicit-precision
engines from; they also run in ONNX Runtime on CPU, so they are checked here without a GPU). The quantized
bundle is an ordinary bundle (same manifest format, graph files replaced and re-hashed) with a "quantization"
section recording the back end, method, calibration set and the error measured against the FP32 graph on
held-out feeds, per noise level; every runtime path loads it unchanged. A transformer's kv graph (the cache
write of each finished frame, one call per frame like a one-step frame's step call) is quantized too, calibrated
on its own calls.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from nextframe.quant.calibrate import METHODS, collect_feeds, noise_level_of

BACKENDS = {"onnxruntime": ("int8", "w4a8"), "modelopt": ("int8", "fp8")}
PRECISION_ALIASES = {"w8a8": "int8"}  # int8 is W8A8: 8-bit weights (per channel) and activations (per tensor)
CALIBRATED = ("int8", "fp8")  # w4a8 needs no calibration: weight scales from the weights, activations per call


# Per-step scales by default, up to this many graphs. Measured side by side (README, "Quantization"): on the shipped
# two-step default (1, 0.15, 0) one set of scales drew the ball in 0.82 of frames 11-30 against FP32's 0.99, a graph
# per step 0.99 (results/quant_methods_cpu_teacher48500_2step.json); on the 4-step teacher a graph per step gave the
# best PSNR (59.95 / 41.23 dB against 57.09 / 40.52) at the same speed (results/quant_methods_cpu_default_student41500.json).
AUTO_MAX_GROUPS = 4


def auto_groups(n_steps: int, method: str, backend: str, calibrated: bool) -> int:
    """The default --groups: one per denoising step (at most AUTO_MAX_GROUPS) where scales are calibrated per
    step (a time-step-aware method on ONNX Runtime INT8), else 1."""
    if not calibrated or method == "naive" or backend != "onnxruntime":
        return 1
    return max(1, min(n_steps, AUTO_MAX_GROUPS))


def step_groups(times: list[float], n_groups: int) -> list[tuple[float, float]]:
    """Split the schedule's evaluated noise levels (times[:-1], 1 -> 0) into n_groups runs of consecutive steps,
    each a range [t_min, t_max] of noise levels, highest first; boundaries halfway between neighbouring steps so
    a schedule of another length (DiSA, --steps) still finds each of its levels in the nearest group."""
    levels = [float(t) for t in times[:-1]]
    if not 1 <= n_groups <= len(levels):
        raise ValueError(f"quantize: --groups must be in 1..{len(levels)} for a {len(levels)}-step bundle (got {n_groups})")
    chunks = np.array_split(np.arange(len(levels)), n_groups)
    out = []
    for i, c in enumerate(chunks):
        hi = 1.0 if i == 0 else (levels[chunks[i - 1][-1]] + levels[c[0]]) / 2.0
        lo = 0.0 if i == n_groups - 1 else (levels[c[-1]] + levels[chunks[i + 1][0]]) / 2.0
        out.append((lo, hi))
    return out


def in_group(t: float, group: tuple[float, float], first: bool) -> bool:
    """t_min < t <= t_max (the first, highest group also takes t = t_max = 1); mirrors csrc/frame_loop.cpp."""
    lo, hi = group
    return lo < t <= hi or (first and t >= hi)


def graph_error(fp32_path: str, q_paths: list[str], groups: list[tuple[float, float]], feeds: list[dict],
                output: str, level_names: set[str]) -> dict:
    """NMSE and max abs difference of the quantized graphs (each on the noise levels of its group) against
    FP32 over feeds, overall and per noise level."""
    import onnxruntime as ort

    a = ort.InferenceSession(fp32_path, providers=["CPUExecutionProvider"])
    qs = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in q_paths]
    per_t: dict[float, list[float]] = {}
    worst = 0.0
    for f in feeds:
        t = noise_level_of(f, level_names)
        g = next(i for i, grp in enumerate(groups) if in_group(t, grp, i == 0)) if len(groups) > 1 else 0
        ra, rb = a.run([output], f)[0].astype(np.float64), qs[g].run([output], f)[0]
        acc = per_t.setdefault(round(t, 4), [0.0, 0.0])
        acc[0] += float(np.sum((ra - rb) ** 2))
        acc[1] += float(np.sum(ra**2))
        worst = max(worst, float(np.abs(ra - rb).max()))
    num, den = sum(v[0] for v in per_t.values()), sum(v[1] for v in per_t.values())
    return {"nmse": num / max(den, 1e-30), "max_abs": worst, "n_feeds": len(feeds),
            "nmse_by_noise_level": {str(t): v[0] / max(v[1], 1e-30) for t, v in sorted(per_t.items(), reverse=True)}}


FORMATS = {("onnxruntime", "int8"): "qdq_u8s8_per_channel", ("modelopt", "int8"): "qdq_s8s8_per_channel_modelopt",
           ("modelopt", "fp8"): "qdq_fp8e4m3_modelopt",
           ("onnxruntime", "w4a8"): "matmulnbits_w4_sym_block32_a8_dynamic"}


def quantize_graph(backend: str, precision: str, src: str, out: str, feeds: list[dict], work_dir: str,
                   keep: tuple[str, ...] = (), calibration: str = "auto", attention: str = "auto") -> int:
    """One graph through the back end; returns how many product nodes stay in float."""
    if precision == "w4a8":
        from nextframe.quant.ort_w4a8 import quantize_graph as w4a8_quantize

        return w4a8_quantize(src, out, keep)
    if backend == "onnxruntime":
        from nextframe.quant.ort_int8 import quantize_graph as ort_quantize

        return ort_quantize(src, out, feeds, work_dir, keep, calibration, attention)
    from nextframe.quant.modelopt_qdq import quantize_graph as modelopt_quantize

    return modelopt_quantize(src, out, feeds, precision, work_dir, keep)


def quantize_bundle(bundle_dir: str, out_dir: str, episodes, method: str = "qdiff", precision: str = "int8",
                    n_windows: int = 16, frames_per_window: int = 6, seed: int = 0, calib_names=(),
                    groups: int | None = None, backend: str = "onnxruntime", split: bool | None = None,
                    keep_float: tuple[str, ...] = (), calibration: str = "auto", attention: str = "auto") -> dict:
    """Write an INT8 copy of the bundle to out_dir (new; never replaces an existing path). Returns its manifest.

    groups (None: auto_groups()) > 1: activation scales per group of denoising steps (Q-Diffusion's observation that activation
    ranges move with the noise level): one graph per group, each calibrated on its own steps' feeds; the
    manifest's "step_groups" maps noise-level ranges to graphs and the C++ core picks the graph per step.
    The step graph itself serves the highest-noise group (and any level outside the listed groups).

    split (default: on for qdiff where convolutions are quantized): Q-Diffusion's split quantization of
    convolutions over concatenations (quant/split_concat.py), exact in float, so each part has its own
    activation scale. ONNX Runtime INT8 keeps a transformer's convolutions (the motion refiner) in float.

    keep_float: node-name fragments whose products stay in float besides the built-in ones (e.g. "up.1", a U-Net's
    last up block); calibration: "auto" (percentile for a U-Net, min-max for a transformer), "minmax" or
    "percentile" activation ranges (ONNX Runtime INT8 only); attention: a transformer's attention products
    (query x cached keys, weights x cached values) in "int8", "float" or "auto" (int8 from
    quant/ort_int8.py's ATTENTION_INT8_MIN_TOKENS tokens a frame up; ONNX Runtime INT8 only)."""
    import onnx

    from nextframe.export.bundle import sha256_file
    from nextframe.quant.ort_int8 import (ATTENTION_CHOICES, CALIBRATIONS, calibration_for, float_nodes,
                                          products_to_quantize, reads_kv_cache)
    from nextframe.runtime.reference import input_roles

    if method not in METHODS:
        raise ValueError(f"quantize: unknown method {method!r} (expected {', '.join(METHODS)})")
    if backend not in BACKENDS:
        raise ValueError(f"quantize: unknown back end {backend!r} (expected {', '.join(BACKENDS)})")
    precision = PRECISION_ALIASES.get(precision, precision)
    if precision not in BACKENDS[backend]:
        raise ValueError(f"quantize: precision {precision!r} not supported by the {backend} back end "
                         f"(expected {', '.join(BACKENDS[backend])})")
    if calibration not in CALIBRATIONS:
        raise ValueError(f"quantize: unknown calibration {calibration!r} (expected {', '.join(CALIBRATIONS)})")
    if calibration not in ("auto", "minmax") and (backend != "onnxruntime" or precision not in CALIBRATED):
        raise ValueError("quantize: --calibration applies to the onnxruntime back end's int8 (ModelOpt calibrates by max)")
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"quantize: unknown attention precision {attention!r} (expected {', '.join(ATTENTION_CHOICES)})")
    keep_float = tuple(keep_float)
    if any(not k.strip() for k in keep_float):
        raise ValueError("quantize: --keep-float takes a non-empty node-name fragment")
    if os.path.exists(out_dir):
        raise ValueError(f"quantize: {out_dir} exists; choose a new output path")
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        manifest = json.load(f)
    if "quantization" in manifest:
        raise ValueError(f"quantize: {bundle_dir} is already quantized ({manifest['quantization']['precision']})")
    calibrated = precision in CALIBRATED
    if groups is None:
        groups = auto_groups(len(manifest["sampler"]["times"]) - 1, method, backend, calibrated)
    ranges = step_groups(manifest["sampler"]["times"], groups)
    if not calibrated:
        if groups > 1 or split:
            raise ValueError(f"quantize: {precision} has no activation scales to calibrate, so --groups and --split "
                             "do not apply")
        method, split = "none", False  # recorded as such: no calibration rollouts, held-out feeds only
    if groups > 1 and method == "naive":
        raise ValueError("quantize: --groups needs a time-step-aware method (qdiff or ptq4dm); naive sees t = 1 only")
    step = manifest["graphs"]["step"]
    step_file = step["file"]
    prediction = next(o["name"] for o in step["outputs"] if o["name"] in ("denoised", "velocity"))
    levels = {name for name, role, _, _ in input_roles(step) if role == "noise_level"}
    model = onnx.load(os.path.join(bundle_dir, step_file))
    convs_quantized = calibrated and (backend != "onnxruntime" or "Conv" in products_to_quantize(model))
    if split and not convs_quantized:
        raise ValueError("quantize: --split applies to quantized convolutions, and this back end keeps a "
                         "transformer's convolutions in float")
    split = method == "qdiff" and convs_quantized if split is None else split
    transformer = reads_kv_cache(model)
    attention_applies = backend == "onnxruntime" and precision == "int8" and transformer
    if attention != "auto" and not attention_applies:
        raise ValueError("quantize: --attention applies to a transformer bundle's onnxruntime int8 graphs")
    attention_int8 = attention_applies and "MatMul" in products_to_quantize(model, attention)
    activation_calibration = (calibration_for(model, calibration) if backend == "onnxruntime" and calibrated
                              else "max" if calibrated else "none")
    kv_calib: list[dict] = []
    kv_held: list[dict] = []
    calib = (collect_feeds(bundle_dir, episodes, method, n_windows, frames_per_window, seed, kv_feeds=kv_calib)
             if calibrated else [])
    held_out = collect_feeds(bundle_dir, episodes, "qdiff", max(2, n_windows // 4), frames_per_window, seed + 1,
                             kv_feeds=kv_held)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".qbundle-", dir=parent)
    # AOTInductor packages are compiled from the float model: a quantized bundle does not carry them
    for p in manifest.pop("aoti", {}).get("packages", []):
        manifest["files"].pop(p["file"], None)
    try:
        for name in manifest["files"]:
            if name != step_file:
                os.makedirs(os.path.dirname(os.path.join(tmp, name)) or tmp, exist_ok=True)
                shutil.copy2(os.path.join(bundle_dir, name), os.path.join(tmp, name))
        src = os.path.join(bundle_dir, step_file)
        split_convs: list[str] = []
        if split:
            from nextframe.quant.split_concat import concat_channels, split_concat_convs

            split_convs = split_concat_convs(model, concat_channels(model, calib[0]), set(float_nodes(model, keep_float)))
            src = os.path.join(tmp, "split_source.onnx")  # the FP32 graph, split: same function, exactly
            onnx.save(model, src)
        stem, ext = os.path.splitext(step_file)
        files = [step_file] + [f"{stem}_group{i}{ext}" for i in range(1, groups)]
        n_feeds = []
        for i, (grp, name) in enumerate(zip(ranges, files)):
            feeds = [f for f in calib if in_group(noise_level_of(f, levels), grp, i == 0)] if groups > 1 else calib
            if calibrated and not feeds:
                raise ValueError(f"quantize: no calibration feed at noise levels {grp[0]:.3f}..{grp[1]:.3f}")
            excluded = quantize_graph(backend, precision, src, os.path.join(tmp, name), feeds, tmp, keep_float, calibration,
                                      attention)
            n_feeds.append(len(feeds))
        error = graph_error(os.path.join(bundle_dir, step_file), [os.path.join(tmp, f) for f in files], ranges,
                            held_out, prediction, levels)
        kv_error = None
        if kv_held:  # a kv graph; one noise level (the context noise): no groups, no method difference
            kv_file = manifest["graphs"]["kv"]["file"]
            quantize_graph(backend, precision, os.path.join(bundle_dir, kv_file), os.path.join(tmp, kv_file), kv_calib, tmp,
                           keep_float, calibration, attention)
            kv_error = graph_error(os.path.join(bundle_dir, kv_file), [os.path.join(tmp, kv_file)], [(0.0, 1.0)],
                                   kv_held, "k_new", levels)
        if split:
            os.remove(src)
        for name in files + ([manifest["graphs"]["kv"]["file"]] if kv_error else []):
            manifest["files"][name] = {"sha256": sha256_file(os.path.join(tmp, name)),
                                       "bytes": os.path.getsize(os.path.join(tmp, name))}
        if groups > 1:
            manifest["step_groups"] = [{"file": f, "t_min": round(lo, 6), "t_max": round(hi, 6)}
                                       for f, (lo, hi) in zip(files[1:], ranges[1:])]
        manifest["quantization"] = {
            "precision": precision, "backend": backend, "format": FORMATS[(backend, precision)], "method": method,
            "graphs": ["step"] + (["kv"] if kv_error else []), "float_nodes": excluded, "split_convs": split_convs,
            "keep_float": list(keep_float),
            "activation_calibration": activation_calibration,
            **({"attention": "int8" if attention_int8 else "float"} if transformer else {}),
            "step_groups": [{"file": f, "t_min": round(lo, 6), "t_max": round(hi, 6), "n_calibration_feeds": n}
                            for f, (lo, hi), n in zip(files, ranges, n_feeds)],
            "calibration": {"n_feeds": len(calib), "n_windows": n_windows, "frames_per_window": frames_per_window,
                            "seed": seed, "episodes": list(calib_names)},
            "error_vs_fp32": error, **({"kv_error_vs_fp32": kv_error} if kv_error else {}),
            "source_bundle_sha256": sha256_file(os.path.join(bundle_dir, "manifest.json"))}
        manifest.pop("export_check", None)
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        os.chmod(tmp, 0o755)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
