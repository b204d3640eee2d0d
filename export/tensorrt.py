"""TensorRT engines for a bundle's graphs: `nextframe export --trt`, or for an existing bundle
`python -m nextframe.export.tensorrt BUNDLE [--precision fp16]`.

build_trt_engines() parses each of the bundle's graphs (the step graph, and the kv graph of a transformer bundle,
which writes the K/V cache) with TensorRT's ONNX parser, builds a serialized engine (a plan) for this GPU with the
fixed shapes the manifest lists, writes it to <bundle>/engines/<graph>_<precision>_sm<XY>_trt<version>_<key16>.plan
and records it in manifest.json: in the "tensorrt" section ({"engines": [{graph, file, precision,
compute_capability, trt_version, gpu, key, sha256, bytes}]}; an entry without "graph" is a step engine, as older
bundles wrote them) and in "files", so the bundle's checksums stay whole. The C++ backend "trt"
(csrc/engine_trt.cpp) picks the step engine that fits the GPU and TensorRT it runs with, and the kv engine of the
same precision for the cache writes (without one, the step engine writes the cache, as ONNX Runtime did before
bundles had kv graphs).

Networks are strongly typed (TensorRT 11 has no other kind and no precision BuilderFlags; TensorRT 10 gets the
STRONGLY_TYPED flag), so the graph's own types set the precision (GRAPH_FOR_PRECISION):
- fp32: the graph as exported, TF32 off;
- fp16, bf16: a converted copy (export/onnx_lowp.py) that computes in fp16/bf16 behind fp32 inputs and outputs,
  normalisation, softmax, reductions and the noise-level embedding kept in fp32;
- int8, fp8: the graph as it is, which must be a Q/DQ graph of that type (`nextframe quantize --backend
  modelopt`); layers between its Q/DQ pairs run in the type the graph gives them (fp32 from ModelOpt here).

Engines are cached by engine_cache_key() (TensorRT version, compute capability, GPU name, precision, the
ONNX file's sha256, the input shapes): an engine already in the bundle with the same key and an intact file
is reused, as is <cache_dir>/<key>.plan when a cache_dir is given.

Unverified: no engine has been built (no GPU on the machines this project is developed on). Checked there:
every TensorRT name this module uses exists in the TensorRT 11.4 Python bindings from PyPI (TENSORRT_API,
tests/test_tensorrt.py), and the fp16/bf16 graphs against the fp32 graph in ONNX Runtime on CPU.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Iterable, Mapping, Sequence

from nextframe.export.bundle import sha256_file

PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8")
# Lowest compute capability with native support (fp16 arithmetic 5.3, int8 dp4a 6.1, bf16 Ampere, fp8 Ada).
MIN_COMPUTE_CAPABILITY = {"fp32": (0, 0), "fp16": (5, 3), "int8": (6, 1), "bf16": (8, 0), "fp8": (8, 9)}
# Which graph TensorRT parses per precision (module docstring): "as is", "converted" (onnx_lowp) or "qdq".
GRAPH_FOR_PRECISION = {"fp32": "as is", "fp16": "converted", "bf16": "converted", "int8": "qdq", "fp8": "qdq"}
# What a Q/DQ graph's QuantizeLinear nodes produce -> our precision name (TensorRT takes signed int8 and fp8 E4M3).
QDQ_PRECISION = {"INT8": "int8", "FLOAT8E4M3FN": "fp8"}
# The majors this builder is written for: 11 (names checked against 11.4) and 10 (>= 10.0 has strongly typed networks).
TRT_MAJORS = ("10", "11")
ENGINES_DIR = "engines"
# Bump when the build settings change what an engine computes. 2: strongly typed networks, fp16/bf16 from
# onnx_lowp's converted graphs (also bump when that converter changes what it keeps in fp32).
KEY_VERSION = 2
NO_TENSORRT = ("export: --trt needs TensorRT 10 or 11 (pip install 'nextframe[trt]', i.e. tensorrt-cu13 11.x from PyPI, whose "
               "libraries come from https://pypi.nvidia.com, on a machine with an NVIDIA GPU); tensorrt is not installed here")
# Every name of the tensorrt module this file uses ("Class.member"), checked against the installed bindings by
# missing_tensorrt_api() (tests/test_tensorrt.py; TensorRT 11.4 from PyPI has them all).
TENSORRT_API = (
    "Logger", "Logger.WARNING", "Builder", "Builder.create_network", "Builder.create_builder_config",
    "Builder.create_optimization_profile", "Builder.build_serialized_network", "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
    "INetworkDefinition.num_inputs", "INetworkDefinition.get_input", "ITensor.name", "ITensor.shape",
    "IOptimizationProfile.set_shape", "IBuilderConfig.set_memory_pool_limit", "IBuilderConfig.clear_flag",
    "IBuilderConfig.add_optimization_profile", "MemoryPoolType.WORKSPACE", "BuilderFlag.TF32",
    "OnnxParser", "OnnxParser.parse_from_file", "OnnxParser.num_errors", "OnnxParser.get_error",
    "Runtime", "Runtime.deserialize_cuda_engine", "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name",
    "ICudaEngine.get_tensor_mode", "ICudaEngine.get_tensor_dtype", "ICudaEngine.get_tensor_shape",
    "TensorIOMode.INPUT", "TensorIOMode.OUTPUT", "DataType.FLOAT", "DataType.INT32", "DataType.INT64",
)


def missing_tensorrt_api(trt) -> list[str]:
    """The names of TENSORRT_API that the tensorrt module trt lacks."""
    missing = []
    for name in TENSORRT_API:
        obj = trt
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                missing.append(name)
                break
    return missing


def import_tensorrt():
    """The tensorrt module, or RuntimeError with one line saying how to get TensorRT 10 or 11."""
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeError(NO_TENSORRT) from None
    version = str(getattr(trt, "__version__", "0"))
    if version.split(".")[0] not in TRT_MAJORS:
        raise RuntimeError(f"export: --trt needs TensorRT 10 or 11 (found tensorrt {version})")
    return trt


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def _cc_tuple(compute_capability) -> tuple[int, int]:
    """(9, 0) | "sm_90" | "9.0" -> (9, 0)."""
    if isinstance(compute_capability, str):
        s = compute_capability.strip()
        if s.startswith("sm_") and s[3:].isdigit() and len(s) >= 5:
            return int(s[3:-1]), int(s[-1])
        parts = s.split(".")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return int(parts[0]), int(parts[1])
        raise ValueError(f"export: compute capability '{compute_capability}' (expected sm_XY, X.Y or (X, Y))")
    major, minor = compute_capability
    return int(major), int(minor)


def sm_name(compute_capability) -> str:
    """(8, 9) -> "sm_89" (the manifest's compute_capability spelling, also the C++ runtime's)."""
    major, minor = _cc_tuple(compute_capability)
    return f"sm_{major}{minor}"


def trt_release(trt_version: str) -> str:
    """"10.16.0.72" -> "10.16.0": plans are tied to the release; the C++ side compares this much."""
    return ".".join(str(trt_version).split(".")[:3])


def engine_cache_key(trt_version: str, compute_capability, gpu_name: str, precision: str, onnx_sha256: str,
                     input_shapes: Mapping[str, Sequence[int]] | Iterable[tuple[str, Sequence[int]]]) -> str:
    """sha256 (64 hex digits) of everything that makes a TensorRT plan valid for reuse. input_shapes: {name:
    shape} or (name, shape) pairs (order does not matter). A pure function: no TensorRT needed."""
    pairs = input_shapes.items() if isinstance(input_shapes, Mapping) else input_shapes
    doc = {"v": KEY_VERSION, "trt_version": str(trt_version), "compute_capability": sm_name(compute_capability),
           "gpu": str(gpu_name), "precision": str(precision), "onnx_sha256": str(onnx_sha256),
           "input_shapes": sorted([str(n), [int(d) for d in s]] for n, s in pairs)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def engine_file_name(precision: str, compute_capability, trt_version: str, key: str, graph: str = "step") -> str:
    major, minor = _cc_tuple(compute_capability)
    return f"{ENGINES_DIR}/{graph}_{precision}_sm{major}{minor}_trt{trt_release(trt_version)}_{key[:16]}.plan"


def check_precision(precision: str, compute_capability, quantized_as: str | None, graph: str = "step") -> None:
    """ValueError when this GPU cannot build `precision` from this graph. quantized_as: None for a float graph,
    else what its QuantizeLinear nodes produce (onnx_quantized_as()). A strongly typed network takes its
    precision from the graph, so int8 and fp8 need a Q/DQ graph of that type (calibration is not implemented
    here), and a Q/DQ graph builds only as what it was quantized to."""
    if precision not in PRECISIONS:
        raise ValueError(f"export: unknown precision '{precision}' (expected {', '.join(PRECISIONS)})")
    cc = _cc_tuple(compute_capability)
    need = MIN_COMPUTE_CAPABILITY[precision]
    if cc < need:
        raise ValueError(f"export: precision {precision} needs compute capability >= {need[0]}.{need[1]} "
                         f"(this GPU: {cc[0]}.{cc[1]})")
    if quantized_as is None:
        if GRAPH_FOR_PRECISION[precision] == "qdq":
            raise ValueError(f"export: precision {precision} needs a quantized {graph} graph (QuantizeLinear/DequantizeLinear "
                             "nodes, e.g. nextframe quantize --backend modelopt); this one has none and calibration is "
                             "not supported")
        return
    if quantized_as not in QDQ_PRECISION.values():
        raise ValueError(f"export: the {graph} graph is quantized to {quantized_as}; TensorRT needs signed int8 or fp8 Q/DQ "
                         "(nextframe quantize --backend modelopt)")
    if precision != quantized_as:
        raise ValueError(f"export: precision {precision} from a {graph} graph quantized to {quantized_as} (its Q/DQ nodes "
                         f"set the precision); build {quantized_as}, or {precision} from the unquantized bundle")


def onnx_quantized_as(path: str) -> str | None:
    """What the ONNX graph's QuantizeLinear nodes produce ("int8", "fp8", "uint8", ...; several joined by "+"),
    or None when it has none (subgraphs and local functions included)."""
    import onnx
    from onnx import TensorProto

    model = onnx.load(path, load_external_data=False)
    types = {t.name: t.data_type for t in model.graph.initializer}
    types.update({n.output[0]: a.t.data_type for n in model.graph.node if n.op_type == "Constant"
                  for a in n.attribute if a.name == "value"})
    found = set()

    def visit(nodes) -> None:
        for node in nodes:
            if node.op_type == "QuantizeLinear":
                attrs = {a.name: a.i for a in node.attribute}
                zero_point = node.input[2] if len(node.input) > 2 else ""
                # the zero point's type, else output_dtype (opset 21), else uint8 (the default)
                t = types.get(zero_point) or attrs.get("output_dtype") or TensorProto.UINT8
                name = TensorProto.DataType.Name(t)
                found.add(QDQ_PRECISION.get(name, name.lower()))
            for attr in node.attribute:
                for g in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                    visit(g.node)

    visit(model.graph.node)
    for f in model.functions:
        visit(f.node)
    return "+".join(sorted(found)) or None


def onnx_has_quantize_nodes(path: str) -> bool:
    """True when the ONNX graph (subgraphs and local functions included) has a QuantizeLinear node."""
    return onnx_quantized_as(path) is not None


def cuda_device(device: int = 0) -> tuple[tuple[int, int], str]:
    """((major, minor), name) of a CUDA device: torch.cuda when it sees a GPU, else the CUDA driver
    (libcuda.so.1, present wherever the NVIDIA driver is; the default torch install is CPU-only)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return (int(major), int(minor)), torch.cuda.get_device_name(device)
    except ImportError:
        pass
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        raise RuntimeError("export: --trt needs an NVIDIA GPU (no CUDA driver: libcuda.so.1 not found)") from None

    def check(rc: int, what: str) -> None:
        if rc != 0:
            raise RuntimeError(f"export: CUDA driver {what} failed (CUresult {rc}); is GPU {device} visible?")

    handle, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    check(cuda.cuInit(0), "cuInit")
    check(cuda.cuDeviceGet(ctypes.byref(handle), int(device)), "cuDeviceGet")
    check(cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, handle), "cuDeviceGetAttribute")  # ..._COMPUTE_CAPABILITY_MAJOR
    check(cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, handle), "cuDeviceGetAttribute")  # ..._COMPUTE_CAPABILITY_MINOR
    check(cuda.cuDeviceGetName(name, len(name), handle), "cuDeviceGetName")
    return (major.value, minor.value), name.value.decode(errors="replace")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _build_plan(trt, onnx_path: str, inputs: list[dict], precision: str, workspace_gb: float) -> bytes:
    with tempfile.TemporaryDirectory(prefix="nextframe-trt-") as tmp:  # kept until the build is done
        if GRAPH_FOR_PRECISION[precision] == "converted":
            from nextframe.export.onnx_lowp import convert_file

            graph_path = os.path.join(tmp, f"{precision}_{os.path.basename(onnx_path)}")
            try:
                convert_file(onnx_path, graph_path, precision)
            except ValueError as e:
                raise ValueError(f"export: cannot build {precision} from {onnx_path}: {e}") from None
        else:
            graph_path = onnx_path
        return _build_plan_from(trt, graph_path, onnx_path, inputs, precision, workspace_gb)


def _build_plan_from(trt, graph_path: str, onnx_path: str, inputs: list[dict], precision: str,
                     workspace_gb: float) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 11: every network is strongly typed (its STRONGLY_TYPED flag is deprecated and ignored);
    # TensorRT 10 needs the flag, whose bit differs between the two (1 in 10.x, 0 in 11.x).
    flags = 0 if trt_major(trt) >= 11 else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(graph_path):
        errors = "; ".join(_one_line(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"export: TensorRT's ONNX parser rejected {onnx_path}"
                           f"{'' if graph_path == onnx_path else f' ({precision} copy)'}: {errors or 'no error reported'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    want = {s["name"]: [int(d) for d in s["shape"]] for s in inputs}
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = [int(d) for d in tensor.shape]
        if tensor.name not in want:
            raise RuntimeError(f"export: {onnx_path} input '{tensor.name}' is not in the manifest")
        if any(d < 0 for d in shape):  # a dynamic dim: pin it to the manifest's shape with a one-point profile
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(tensor.name, want[tensor.name], want[tensor.name], want[tensor.name])
        elif shape != want[tensor.name]:
            raise RuntimeError(f"export: {onnx_path} input '{tensor.name}' is {shape} (manifest: {want[tensor.name]})")
    if profile is not None:
        config.add_optimization_profile(profile)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: no TF32 matmuls (TF32 is on by default)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"export: TensorRT could not build the {precision} engine for {onnx_path} (its log above says why)")
    return memoryview(plan).tobytes()


def _check_plan(trt, plan: bytes, graph: dict, what: str) -> None:
    """The built engine's IO against the manifest (the C++ backend checks again at load time)."""
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise RuntimeError(f"export: TensorRT cannot deserialize the engine it just built ({what})")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    dtypes = {"float32": (trt.DataType.FLOAT,), "int64": (trt.DataType.INT64, trt.DataType.INT32)}
    for kind, mode in (("inputs", trt.TensorIOMode.INPUT), ("outputs", trt.TensorIOMode.OUTPUT)):
        for spec in graph[kind]:
            name = spec["name"]
            if name not in names or engine.get_tensor_mode(name) != mode:
                raise RuntimeError(f"export: {what} has no {kind[:-1]} '{name}' (the manifest lists it)")
            if engine.get_tensor_dtype(name) not in dtypes[spec["dtype"]]:
                raise RuntimeError(f"export: {what} {kind[:-1]} '{name}' is {engine.get_tensor_dtype(name)} "
                                   f"(manifest: {spec['dtype']})")
            shape = [int(d) for d in engine.get_tensor_shape(name)]
            if all(d >= 0 for d in shape) and shape != list(spec["shape"]):
                raise RuntimeError(f"export: {what} {kind[:-1]} '{name}' is {shape} (manifest: {spec['shape']})")


def _write_manifest(bundle_dir: str, manifest: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=bundle_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(bundle_dir, "manifest.json"))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# The graphs a bundle may have engines of, in build order (the manifest's "graphs" keys).
TRT_GRAPHS = ("step", "kv", "frame")


def build_trt_engines(bundle_dir: str, precision: str | Sequence[str] = "fp16", workspace_gb: float = 4.0,
                      cache_dir: str | None = None, device: int = 0) -> list[dict]:
    """Build (or reuse) a TensorRT engine of each of the bundle's graphs (step, and kv or frame where the bundle has one)
    per precision for CUDA device `device`, record each in manifest.json and return their manifest entries
    (graph by graph, precision by precision), each with "cached": True when reused.
    ValueError for what the caller can fix (precision, bundle); RuntimeError for the environment (no
    TensorRT 10 or 11, no GPU, a parser or build failure)."""
    precisions = [precision] if isinstance(precision, str) else list(precision)
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"export: unknown precision '{p}' (expected {', '.join(PRECISIONS)})")
    if not workspace_gb > 0:
        raise ValueError(f"export: workspace_gb must be positive (got {workspace_gb})")
    trt = import_tensorrt()

    manifest_path = os.path.join(bundle_dir, "manifest.json")
    if not os.path.isfile(manifest_path):
        raise ValueError(f"export: no manifest.json in '{bundle_dir}'")
    with open(manifest_path) as f:
        manifest = json.load(f)
    cc, gpu = cuda_device(device)
    trt_version = str(trt.__version__)
    section = manifest.setdefault("tensorrt", {"engines": []})
    engines = section.setdefault("engines", [])
    graphs = [g for g in TRT_GRAPHS if g in manifest["graphs"]]
    # every graph checked (and its precision allowed) before anything is built or written
    sources = {}
    for name in graphs:
        graph = manifest["graphs"][name]
        onnx_path = os.path.join(bundle_dir, graph["file"])
        onnx_sha256 = manifest["files"][graph["file"]]["sha256"]
        if sha256_file(onnx_path) != onnx_sha256:
            raise ValueError(f"export: {onnx_path} does not match its manifest sha256; re-export the bundle")
        quantized_as = onnx_quantized_as(onnx_path)
        for p in precisions:
            check_precision(p, cc, quantized_as, name)
        sources[name] = (graph, onnx_path, onnx_sha256)
    results = []
    for name in graphs:
        graph, onnx_path, onnx_sha256 = sources[name]
        input_shapes = {s["name"]: s["shape"] for s in graph["inputs"]}
        for p in precisions:
            key = engine_cache_key(trt_version, cc, gpu, p, onnx_sha256, input_shapes)
            file = engine_file_name(p, cc, trt_version, key, name)
            path = os.path.join(bundle_dir, file)
            entry = next((e for e in engines if e.get("key") == key and e.get("file") == file), None)
            cached = entry is not None and os.path.isfile(path) and sha256_file(path) == entry.get("sha256")
            if not cached:
                shared = os.path.join(cache_dir, f"{key}.plan") if cache_dir else None
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if shared and os.path.isfile(shared):
                    shutil.copyfile(shared, path)
                    cached = True
                else:
                    plan = _build_plan(trt, onnx_path, graph["inputs"], p, workspace_gb)
                    _check_plan(trt, plan, graph, file)
                    with open(path + ".tmp", "wb") as f:
                        f.write(plan)
                    os.replace(path + ".tmp", path)
                    if shared:
                        os.makedirs(cache_dir, exist_ok=True)
                        shutil.copyfile(path, shared + ".tmp")
                        os.replace(shared + ".tmp", shared)
            digest, size = sha256_file(path), os.path.getsize(path)
            new = {"graph": name, "file": file, "precision": p, "compute_capability": sm_name(cc),
                   "trt_version": trt_version, "gpu": gpu, "key": key, "sha256": digest, "bytes": size}
            _record_engine(bundle_dir, manifest, new)
            results.append(dict(new, cached=cached))
    return results


def _record_engine(bundle_dir: str, manifest: dict, new: dict) -> None:
    """Write the engine entry `new` into the manifest (and to disk). One engine per (graph, precision, GPU, TensorRT):
    it takes the place of the first old one (order is the C++ backend's preference); a stale one (another key) is
    dropped with its file."""
    engines, file = manifest["tensorrt"]["engines"], new["file"]
    slot = tuple(new[k] for k in ("graph", "precision", "compute_capability", "trt_version", "gpu"))
    same = [i for i, e in enumerate(engines) if e.get("file") == file or (
        (e.get("graph", "step"), e.get("precision"), e.get("compute_capability"), e.get("trt_version"),
         e.get("gpu")) == slot)]
    at = same[0] if same else len(engines)
    for i in reversed(same):
        old = engines.pop(i)
        old_file = str(old.get("file", ""))
        manifest["files"].pop(old_file, None)
        if old_file and old_file != file and not os.path.isabs(old_file) and ".." not in old_file.split("/"):
            try:
                os.unlink(os.path.join(bundle_dir, old_file))
            except FileNotFoundError:
                pass
    engines.insert(at, new)
    manifest["files"][file] = {"sha256": new["sha256"], "bytes": new["bytes"]}
    _write_manifest(bundle_dir, manifest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nextframe.export.tensorrt",
                                 description="Build TensorRT 10/11 engines of a bundle's graphs (step, kv) for this GPU.")
    ap.add_argument("bundle")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp16")
    ap.add_argument("--workspace-gb", type=float, default=4.0)
    ap.add_argument("--cache-dir", default=None, help="also keep engines here, by key, for other bundles of the same graph")
    ap.add_argument("--device", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        entries = build_trt_engines(args.bundle, args.precision, args.workspace_gb, args.cache_dir, args.device)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"nextframe: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"bundle": args.bundle, "tensorrt": entries}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
