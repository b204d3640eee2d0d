"""The TensorRT backend (issue 4), tested honestly: what runs everywhere (the engine cache key, precision ->
graph mapping of strongly typed builds, the fp16/bf16 graph converter and its numerics against the fp32 graph
in ONNX Runtime, the clear errors without TensorRT, the bundle manifest's "tensorrt" section, backend "trt" on
a core built without TensorRT), the TensorRT names the builder uses against the installed bindings (skipped
without tensorrt), and one end-to-end test, TensorRT against onnxruntime on the tiny bundle, that skips
without TensorRT and a GPU (the machines this project is developed on have no GPU; no engine has been built)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nextframe import _core
from nextframe.export import onnx_lowp
from nextframe.export import tensorrt as nf_trt
from nextframe.runtime import Session
from conftest import randomized_model, randomized_unet, tiny_config, tiny_unet_config
from runtime_helpers import copy_bundle, nmse, read_manifest, tiny_bundle, write_manifest

KEY_ARGS = dict(trt_version="10.16.0.72", compute_capability=(8, 9), gpu_name="NVIDIA L4", precision="fp16",
                onnx_sha256="ab" * 32, input_shapes={"x": [1, 3, 16, 16], "t": [1], "ages": [4]})


# ---- engine cache key ----------------------------------------------------------------------------------

def test_engine_cache_key_is_stable():
    key = nf_trt.engine_cache_key(**KEY_ARGS)
    assert len(key) == 64 and all(c in "0123456789abcdef" for c in key)
    assert key == nf_trt.engine_cache_key(**KEY_ARGS)
    # equivalent spellings of the same inputs give the same key
    same = dict(KEY_ARGS, compute_capability="sm_89", input_shapes=[("t", (1,)), ("ages", [4]), ("x", [1, 3, 16, 16])])
    assert nf_trt.engine_cache_key(**same) == key


@pytest.mark.parametrize("field, value", [
    ("trt_version", "10.16.1.11"),
    ("compute_capability", (9, 0)),
    ("gpu_name", "NVIDIA L40S"),
    ("precision", "fp32"),
    ("onnx_sha256", "cd" * 32),
    ("input_shapes", {"x": [1, 3, 32, 32], "t": [1], "ages": [4]}),
    ("input_shapes", {"x": [1, 3, 16, 16], "t": [1], "ages": [5]}),
    ("input_shapes", {"x": [1, 3, 16, 16], "t": [1], "ages": [4], "prev_action": [1]}),
])
def test_engine_cache_key_changes_with_each_input(field, value):
    assert nf_trt.engine_cache_key(**dict(KEY_ARGS, **{field: value})) != nf_trt.engine_cache_key(**KEY_ARGS)


def test_engine_file_name_and_names():
    key = nf_trt.engine_cache_key(**KEY_ARGS)
    assert nf_trt.engine_file_name("fp16", (8, 9), "10.16.0.72", key) == f"engines/step_fp16_sm89_trt10.16.0_{key[:16]}.plan"
    assert nf_trt.sm_name((12, 0)) == "sm_120" and nf_trt.sm_name("9.0") == "sm_90" and nf_trt.sm_name("sm_86") == "sm_86"
    with pytest.raises(ValueError, match=r"^export: compute capability 'ampere' \(expected sm_XY, X.Y or \(X, Y\)\)$"):
        nf_trt.sm_name("ampere")


@pytest.mark.parametrize("precision, cc, quantized_as, message", [
    ("fp16", (5, 2), None, r"^export: precision fp16 needs compute capability >= 5.3 \(this GPU: 5.2\)$"),
    ("bf16", (7, 5), None, r"^export: precision bf16 needs compute capability >= 8.0 \(this GPU: 7.5\)$"),
    ("fp8", (8, 6), "fp8", r"^export: precision fp8 needs compute capability >= 8.9 \(this GPU: 8.6\)$"),
    ("int8", (8, 9), None, r"^export: precision int8 needs a quantized step graph \(QuantizeLinear/DequantizeLinear"),
    ("fp8", (9, 0), None, r"^export: precision fp8 needs a quantized step graph"),
    ("fp64", (9, 0), None, r"^export: unknown precision 'fp64' \(expected fp32, fp16, bf16, fp8, int8\)$"),
    # strongly typed: a Q/DQ graph builds only as what it was quantized to
    ("fp8", (9, 0), "int8", r"^export: precision fp8 from a step graph quantized to int8 \(its Q/DQ nodes set the "
                            r"precision\); build int8, or fp8 from the unquantized bundle$"),
    ("fp16", (9, 0), "int8", r"^export: precision fp16 from a step graph quantized to int8"),
    ("fp32", (9, 0), "fp8", r"^export: precision fp32 from a step graph quantized to fp8"),
    ("int8", (9, 0), "uint8", r"^export: the step graph is quantized to uint8; TensorRT needs signed int8 or fp8 Q/DQ "
                              r"\(nextframe quantize --backend modelopt\)$"),
])
def test_check_precision_errors(precision, cc, quantized_as, message):
    with pytest.raises(ValueError, match=message):
        nf_trt.check_precision(precision, cc, quantized_as)


def test_check_precision_accepts():
    nf_trt.check_precision("fp16", (7, 5), None)
    nf_trt.check_precision("bf16", "sm_80", None)
    nf_trt.check_precision("int8", (8, 6), "int8")
    nf_trt.check_precision("fp8", (8, 9), "fp8")
    nf_trt.check_precision("fp32", (7, 5), None)


def test_precision_to_graph_mapping():
    """What TensorRT parses per precision, now that the graph's types are the precision (no BuilderFlags)."""
    assert nf_trt.GRAPH_FOR_PRECISION == {"fp32": "as is", "fp16": "converted", "bf16": "converted",
                                          "int8": "qdq", "fp8": "qdq"}
    assert set(nf_trt.GRAPH_FOR_PRECISION) == set(nf_trt.PRECISIONS)
    assert {p for p, g in nf_trt.GRAPH_FOR_PRECISION.items() if g == "converted"} == set(onnx_lowp.LOWP_TYPES)
    assert not hasattr(nf_trt, "BUILDER_FLAGS")  # TensorRT 11 removed the precision flags


def test_exported_step_graph_has_no_quantize_nodes():
    bundle, _ = tiny_bundle()
    assert not nf_trt.onnx_has_quantize_nodes(str(Path(bundle) / "step.onnx"))
    assert nf_trt.onnx_quantized_as(str(Path(bundle) / "step.onnx")) is None


def _qdq_model(zero_point_type: int | None, output_dtype: int | None = None) -> onnx.ModelProto:
    """y = DequantizeLinear(QuantizeLinear(x)): the smallest Q/DQ graph, its type set as a quantizer would."""
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "scale")]
    q_inputs = ["x", "scale"]
    if zero_point_type is not None:
        inits.append(helper.make_tensor("zp", zero_point_type, [], [0]))
        q_inputs.append("zp")
    q = helper.make_node("QuantizeLinear", q_inputs, ["q"], **({"output_dtype": output_dtype} if output_dtype else {}))
    dq = helper.make_node("DequantizeLinear", ["q", "scale"] + (["zp"] if zero_point_type is not None else []), ["y"])
    g = helper.make_graph([q, dq], "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


@pytest.mark.parametrize("zero_point_type, output_dtype, expected", [
    (TensorProto.INT8, None, "int8"),                       # ModelOpt int8
    (TensorProto.FLOAT8E4M3FN, None, "fp8"),                # ModelOpt fp8
    (TensorProto.UINT8, None, "uint8"),                     # onnxruntime's QDQ U8S8
    (None, None, "uint8"),                                  # no zero point: uint8 by default
    (None, TensorProto.INT8, "int8"),                       # opset 21 output_dtype
])
def test_onnx_quantized_as(tmp_path, zero_point_type, output_dtype, expected):
    onnx.save(_qdq_model(zero_point_type, output_dtype), tmp_path / "q.onnx")
    assert nf_trt.onnx_quantized_as(str(tmp_path / "q.onnx")) == expected
    assert nf_trt.onnx_has_quantize_nodes(str(tmp_path / "q.onnx"))


# ---- without TensorRT ----------------------------------------------------------------------------------

def test_build_without_tensorrt_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` now fails, installed or not
    bundle, _ = tiny_bundle()
    with pytest.raises(RuntimeError, match=r"^export: --trt needs TensorRT 10 or 11 \(pip install 'nextframe\[trt\]'.*"
                                           r"https://pypi.nvidia.com.*\); tensorrt is not installed here$"):
        nf_trt.build_trt_engines(bundle, precision="fp16")
    assert "tensorrt" not in read_manifest(Path(bundle))  # the bundle is untouched


@pytest.mark.parametrize("version", ["8.6.1", "12.0.0.1"])
def test_build_with_another_tensorrt_is_a_clear_error(monkeypatch, version):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))  # only its version is read
    with pytest.raises(RuntimeError, match=rf"^export: --trt needs TensorRT 10 or 11 \(found tensorrt {re.escape(version)}\)$"):
        nf_trt.import_tensorrt()


def test_cli_export_trt_without_tensorrt(monkeypatch, tmp_path, capsys):
    from nextframe.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["export", "--out", str(tmp_path / "b"), "--trt"]) == 2
    assert capsys.readouterr().err.startswith("nextframe: export: --trt needs TensorRT 10 or 11 (")
    assert not (tmp_path / "b").exists()  # failed before the ONNX export
    assert main(["export", "--out", str(tmp_path / "b"), "--precision", "fp32"]) == 2
    assert capsys.readouterr().err == "nextframe: export: --precision needs --trt\n"


def test_session_trt_backend_not_built():
    if _core.has_tensorrt():
        pytest.skip("this nextframe._core was built with TensorRT")
    bundle, _ = tiny_bundle()
    with pytest.raises(RuntimeError, match=r"^engine: backend 'trt' not built \(TensorRT was not found at build time; "
                                           r"rebuild with -DNF_WITH_TENSORRT=ON -DTENSORRT_ROOT=<TensorRT 10 or 11 dir>\)$"):
        Session(bundle, backend="trt")
    with pytest.raises(RuntimeError, match=r"^engine: backend 'trt' not built"):
        _core.Engine(_core.Bundle.open(bundle), backend="trt")


def test_session_trt_precision_arguments():
    bundle, _ = tiny_bundle()
    with pytest.raises(ValueError, match=r"^session: unknown trt_precision 'fp64' \(expected fp32, fp16, bf16, fp8, int8\)$"):
        Session(bundle, backend="trt", trt_precision="fp64")
    with pytest.raises(ValueError, match=r"^session: trt_precision needs backend 'trt' \(got backend 'ort-cpu'\)$"):
        Session(bundle, backend="ort-cpu", trt_precision="fp16")


# ---- build_trt_engines' bookkeeping, with a stand-in for the tensorrt module ------------------------------
# FakeTrt answers the few TensorRT 11 calls build_trt_engines makes, from the ONNX graph itself, and "builds" a
# plan of bytes that records the network flags, builder flags and the element types of the graph it parsed.
# Like TensorRT 11.4 it has no precision BuilderFlags (FP16, INT8, ...): setting one fails. It checks our
# file naming, manifest update, cache hits, which graph each precision parses and that the C++ loader accepts
# what we write; it says nothing about TensorRT (the test at the end of this file does, where TensorRT exists).

class FakeTrt:
    __version__ = "11.4.0.106"

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class BuilderFlag:  # TensorRT 11.4's precision-related flags: TF32 only
        TF32 = "TF32"

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 0  # 11.x (deprecated, ignored); 1 in 10.x

    class DataType:
        FLOAT, INT32, INT64 = "FLOAT", "INT32", "INT64"

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    parse_ok = True
    builds = 0

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return FakeTrt.Network(flags)

        def create_builder_config(self):
            return FakeTrt.Config()

        def build_serialized_network(self, network, config):
            FakeTrt.builds += 1
            return json.dumps({"network_flags": network.flags, "flags": sorted(config.flags),
                               "inputs": network.shapes, "outputs": network.outputs, "graph": network.graph}).encode()

    class Network:
        def __init__(self, flags):
            self.flags, self.shapes, self.outputs, self.graph = flags, {}, {}, {}

        @property
        def num_inputs(self):
            return len(self.shapes)

        def get_input(self, i):
            name = list(self.shapes)[i]
            return type("T", (), {"name": name, "shape": tuple(self.shapes[name])})()

    class Config:
        def __init__(self):
            self.flags = {"TF32"}  # on by default, as in TensorRT

        def set_memory_pool_limit(self, pool, size):
            assert pool == "workspace" and size > 0

        def set_flag(self, flag):
            self.flags.add(flag)

        def clear_flag(self, flag):
            self.flags.discard(flag)

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0 if FakeTrt.parse_ok else 2

        def parse_from_file(self, path):
            g = onnx.load(path).graph
            self.network.shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in g.input}
            # an output dim ONNX does not fix (a traced U-Net's batch) is data-dependent to TensorRT too: -1
            self.network.outputs = {o.name: [d.dim_value if d.HasField("dim_value") else -1
                                             for d in o.type.tensor_type.shape.dim] for o in g.output}
            io = {v.name: TensorProto.DataType.Name(v.type.tensor_type.elem_type) for v in list(g.input) + list(g.output)}
            weights = sorted({TensorProto.DataType.Name(t.data_type) for t in g.initializer})
            self.network.graph = {"io": io, "initializer_types": weights,
                                  "ops": sorted({n.op_type for n in g.node})}
            return FakeTrt.parse_ok

        def get_error(self, i):
            return f"In node {i} (Op): UNSUPPORTED_NODE:\n  no kernel"

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return FakeTrt.Engine(json.loads(bytes(plan)))

    class Engine:
        """The engine of the graph the plan was parsed from: its IO as the (original) ONNX graph declares it."""

        def __init__(self, plan):
            dtype = {"FLOAT": "float32", "INT64": "int64"}
            io = plan["graph"]["io"]
            self.specs = {n: ({"shape": s, "dtype": dtype[io[n]]}, "INPUT") for n, s in plan["inputs"].items()}
            self.specs.update({n: ({"shape": s, "dtype": dtype[io[n]]}, "OUTPUT") for n, s in plan["outputs"].items()})
            self.num_io_tensors = len(self.specs)

        def get_tensor_name(self, i):
            return list(self.specs)[i]

        def get_tensor_mode(self, name):
            return self.specs[name][1]

        def get_tensor_dtype(self, name):
            return {"float32": "FLOAT", "int64": "INT64"}[self.specs[name][0]["dtype"]]

        def get_tensor_shape(self, name):
            return tuple(self.specs[name][0]["shape"])


@pytest.fixture
def fake_trt(monkeypatch):
    FakeTrt.parse_ok, FakeTrt.builds, FakeTrt.__version__ = True, 0, "11.4.0.106"
    FakeTrt.NetworkDefinitionCreationFlag.STRONGLY_TYPED = 0
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTrt)
    monkeypatch.setattr(nf_trt, "cuda_device", lambda device=0: ((8, 9), "NVIDIA L4"))
    yield FakeTrt
    FakeTrt.__version__ = "11.4.0.106"
    FakeTrt.NetworkDefinitionCreationFlag.STRONGLY_TYPED = 0


def _plan(bundle: Path, entry: dict) -> dict:
    return json.loads((bundle / entry["file"]).read_bytes())


def _step(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e["graph"] == "step"]


def test_build_records_engines_in_the_manifest(tmp_path, fake_trt, monkeypatch):
    b = copy_bundle(tmp_path / "b")
    fp16, kv16 = nf_trt.build_trt_engines(str(b), precision="fp16")  # a transformer bundle: step and kv graphs
    m = read_manifest(b)
    key = nf_trt.engine_cache_key("11.4.0.106", (8, 9), "NVIDIA L4", "fp16", m["files"]["step.onnx"]["sha256"],
                                  {s["name"]: s["shape"] for s in m["graphs"]["step"]["inputs"]})
    assert fp16["file"] == f"engines/step_fp16_sm89_trt11.4.0_{key[:16]}.plan" and fp16["key"] == key
    kv_key = nf_trt.engine_cache_key("11.4.0.106", (8, 9), "NVIDIA L4", "fp16", m["files"]["kv.onnx"]["sha256"],
                                     {s["name"]: s["shape"] for s in m["graphs"]["kv"]["inputs"]})
    assert (fp16["graph"], kv16["graph"]) == ("step", "kv") and kv16["key"] == kv_key
    assert kv16["file"] == f"engines/kv_fp16_sm89_trt11.4.0_{kv_key[:16]}.plan"
    assert not fp16.pop("cached") and not kv16.pop("cached") and m["tensorrt"] == {"engines": [fp16, kv16]}
    assert m["files"][fp16["file"]] == {"sha256": fp16["sha256"], "bytes": fp16["bytes"]}
    # the kv engine is built from the kv graph: its IO, not the step graph's
    kv_plan = _plan(b, kv16)
    assert set(kv_plan["outputs"]) == {o["name"] for o in m["graphs"]["kv"]["outputs"]} != set(_plan(b, fp16)["outputs"])
    plan = _plan(b, fp16)
    # strongly typed: no precision flag (TF32 stays on by default), the fp16 copy of the graph parsed, fp32 IO
    assert plan["network_flags"] == 0 and plan["flags"] == ["TF32"] and plan["inputs"]["x"] == [1, 3, 16, 16]
    assert "FLOAT16" in plan["graph"]["initializer_types"] and "Cast" in plan["graph"]["ops"]
    assert set(plan["graph"]["io"].values()) <= {"FLOAT", "INT64"}
    assert [p.suffix for p in (b / "engines").iterdir()] == [".plan", ".plan"]  # the fp16 copies are not left there
    # the C++ loader accepts what was written, checksums included
    assert _core.Bundle.open(str(b)).tensorrt_engines == [fp16, kv16]

    # same key, intact file: nothing is built; another precision is added after it
    again, fp32, kv_again, kv32 = nf_trt.build_trt_engines(str(b), precision=["fp16", "fp32"])
    assert again["cached"] and kv_again["cached"] and not fp32["cached"] and not kv32["cached"] and fake_trt.builds == 4
    plan32 = _plan(b, fp32)
    assert plan32["flags"] == []  # fp32: TF32 cleared, and no precision flag exists
    assert "FLOAT16" not in plan32["graph"]["initializer_types"]  # the graph as exported
    engines = _core.Bundle.open(str(b)).tensorrt_engines
    assert [(e["graph"], e["precision"]) for e in engines] == [("step", "fp16"), ("kv", "fp16"), ("step", "fp32"), ("kv", "fp32")]

    # a damaged plan is rebuilt, not reused
    (b / fp16["file"]).write_bytes(b"damaged")
    rebuilt, kv_cached = nf_trt.build_trt_engines(str(b), precision="fp16")
    assert not rebuilt["cached"] and kv_cached["cached"] and fake_trt.builds == 5
    _core.Bundle.open(str(b))

    # another GPU with the same compute capability but another name: its own engines, the others stay
    monkeypatch.setattr(nf_trt, "cuda_device", lambda device=0: ((8, 9), "NVIDIA GeForce RTX 4090"))
    other, _ = nf_trt.build_trt_engines(str(b), precision="fp16")
    assert other["file"] != fp16["file"] and len(_core.Bundle.open(str(b)).tensorrt_engines) == 6


def test_build_frame_stack_bundle_has_a_step_engine_only(tmp_path, fake_trt, unet_step):
    """A frame-stack U-Net bundle has no kv graph: one engine, of the step graph."""
    import shutil

    b = tmp_path / "unet"
    shutil.copytree(Path(unet_step).parent, b)
    (fp16,) = nf_trt.build_trt_engines(str(b), precision="fp16")
    assert fp16["graph"] == "step" and fake_trt.builds == 1
    assert [e["graph"] for e in _core.Bundle.open(str(b)).tensorrt_engines] == ["step"]
    _add_engine(b, graph="kv")
    with pytest.raises(ValueError, match=r"^bundle: tensorrt\.engines\[0\]\.graph 'kv' \(expected step\)$"):
        _core.Bundle.open(str(b))


def test_build_frame_graph_bundle_has_a_frame_engine(tmp_path, fake_trt):
    """A bundle exported with --frame-graph gets an engine of its frame graph beside the step graph's (the device loop's,
    csrc/trt_device_loop.h), built from the frame graph's IO; a core without TensorRT says the loop was not built."""
    from nextframe.export.bundle import export_bundle

    b = tmp_path / "frame"
    export_bundle(randomized_unet(tiny_unet_config()), str(b), n_steps=2, frame_graph=True)
    step16, frame16 = nf_trt.build_trt_engines(str(b), precision="fp16")
    assert (step16["graph"], frame16["graph"]) == ("step", "frame") and fake_trt.builds == 2
    assert frame16["file"].startswith("engines/frame_fp16_sm89_")
    m = read_manifest(b)
    assert set(_plan(b, frame16)["outputs"]) == {o["name"] for o in m["graphs"]["frame"]["outputs"]}
    assert [e["graph"] for e in _core.Bundle.open(str(b)).tensorrt_engines] == ["step", "frame"]
    if not _core.has_tensorrt():
        with pytest.raises(RuntimeError, match="^trt_device_loop: not built \\(TensorRT was not found at build time"):
            _core.TrtDeviceLoop(_core.Bundle.open(str(b)))


def test_build_transformer_frame_graph_bundle_has_three_engines(tmp_path, fake_trt):
    """A transformer bundle with a frame graph: engines of its step, kv and frame graphs (the device loop runs the
    frame engine per frame and the kv engine in reset, csrc/trt_device_loop.h); the frame plan writes the new K/V."""
    from nextframe.export.bundle import export_bundle

    b = tmp_path / "dit_frame"
    export_bundle(randomized_model(tiny_config()), str(b), n_steps=2, frame_graph=True)
    engines = nf_trt.build_trt_engines(str(b), precision="fp16")
    assert [e["graph"] for e in engines] == ["step", "kv", "frame"] and fake_trt.builds == 3
    frame16 = engines[2]
    assert {"k_new", "v_new", "next_prev"} <= set(_plan(b, frame16)["outputs"])
    assert [e["graph"] for e in _core.Bundle.open(str(b)).tensorrt_engines] == ["step", "kv", "frame"]


def test_build_bf16_parses_a_bf16_copy(tmp_path, fake_trt):
    b = copy_bundle(tmp_path / "b")
    bf16, _ = nf_trt.build_trt_engines(str(b), precision="bf16")
    plan = _plan(b, bf16)
    assert "BFLOAT16" in plan["graph"]["initializer_types"] and "FLOAT16" not in plan["graph"]["initializer_types"]
    assert set(plan["graph"]["io"].values()) <= {"FLOAT", "INT64"} and plan["flags"] == ["TF32"]


def test_build_with_tensorrt_10_sets_strongly_typed(tmp_path, fake_trt):
    """TensorRT 10 builds weakly typed networks unless told: the STRONGLY_TYPED bit (1 << 1 in 10.x)."""
    fake_trt.__version__ = "10.16.0.72"
    fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED = 1
    b = copy_bundle(tmp_path / "b")
    fp16, _ = nf_trt.build_trt_engines(str(b), precision="fp16")
    assert _plan(b, fp16)["network_flags"] == 2 and fp16["file"].startswith("engines/step_fp16_sm89_trt10.16.0_")


def _quantize_step_graph(bundle: Path, zero_point_type: int, file: str = "step.onnx") -> None:
    """The bundle's step (or kv) graph with a Q/DQ pair on input x (as a quantizer would), re-hashed in the manifest."""
    path = bundle / file
    model = onnx.load(path)
    g = model.graph
    for n in g.node:
        n.input[:] = ["x_dq" if i == "x" else i for i in n.input]
    g.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
                          helper.make_tensor("x_zp", zero_point_type, [], [0])])
    g.node.insert(0, helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"]))
    g.node.insert(0, helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"]))
    onnx.save(model, path)
    m = read_manifest(bundle)
    m["files"][file] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}
    write_manifest(bundle, m)


def test_build_int8_parses_the_qdq_graph_as_is(tmp_path, fake_trt):
    b = copy_bundle(tmp_path / "b")
    _quantize_step_graph(b, TensorProto.INT8)
    # a kv graph left in float cannot give an int8 engine: refused before anything is built
    with pytest.raises(ValueError, match=r"^export: precision int8 needs a quantized kv graph"):
        nf_trt.build_trt_engines(str(b), precision="int8")
    assert fake_trt.builds == 0 and "tensorrt" not in read_manifest(b)
    _quantize_step_graph(b, TensorProto.INT8, "kv.onnx")  # as `quantize --backend modelopt` does: both graphs
    int8, kv8 = nf_trt.build_trt_engines(str(b), precision="int8")
    for entry in (int8, kv8):
        plan = _plan(b, entry)
        assert plan["flags"] == ["TF32"] and plan["network_flags"] == 0  # no INT8 flag: the Q/DQ nodes say it
        assert {"QuantizeLinear", "DequantizeLinear"} <= set(plan["graph"]["ops"])
        assert "FLOAT16" not in plan["graph"]["initializer_types"]
    for precision in ("fp8", "fp16", "fp32"):
        with pytest.raises(ValueError, match=rf"^export: precision {precision} from a step graph quantized to int8"):
            nf_trt.build_trt_engines(str(b), precision=precision)
    assert fake_trt.builds == 2


def test_build_refuses_onnxruntime_uint8_qdq(tmp_path, fake_trt):
    b = copy_bundle(tmp_path / "b")
    _quantize_step_graph(b, TensorProto.UINT8)
    with pytest.raises(ValueError, match=r"^export: the step graph is quantized to uint8; TensorRT needs signed int8"):
        nf_trt.build_trt_engines(str(b), precision="int8")
    assert fake_trt.builds == 0 and "tensorrt" not in read_manifest(b)


def test_build_uses_a_shared_cache_dir(tmp_path, fake_trt):
    b1, b2 = copy_bundle(tmp_path / "b1"), copy_bundle(tmp_path / "b2")
    first, first_kv = nf_trt.build_trt_engines(str(b1), precision="fp16", cache_dir=str(tmp_path / "cache"))
    assert (tmp_path / "cache" / f"{first['key']}.plan").is_file() and (tmp_path / "cache" / f"{first_kv['key']}.plan").is_file()
    second, second_kv = nf_trt.build_trt_engines(str(b2), precision="fp16", cache_dir=str(tmp_path / "cache"))
    assert second["cached"] and second_kv["cached"] and fake_trt.builds == 2 and second["sha256"] == first["sha256"]
    _core.Bundle.open(str(b2))


def test_build_reports_parser_errors_on_one_line(tmp_path, fake_trt):
    b = copy_bundle(tmp_path / "b")
    fake_trt.parse_ok = False
    with pytest.raises(RuntimeError, match=r"^export: TensorRT's ONNX parser rejected .*step\.onnx \(fp16 copy\): In node 0 "
                                           r"\(Op\): UNSUPPORTED_NODE: no kernel; In node 1 \(Op\): UNSUPPORTED_NODE: no kernel$"):
        nf_trt.build_trt_engines(str(b), precision="fp16")
    with pytest.raises(RuntimeError, match=r"^export: TensorRT's ONNX parser rejected .*step\.onnx: In node 0 "):
        nf_trt.build_trt_engines(str(b), precision="fp32")
    assert "tensorrt" not in read_manifest(b)


def test_build_refuses_int8_without_quantize_nodes(tmp_path, fake_trt):
    b = copy_bundle(tmp_path / "b")
    with pytest.raises(ValueError, match=r"^export: precision int8 needs a quantized step graph"):
        nf_trt.build_trt_engines(str(b), precision="int8")
    with pytest.raises(ValueError, match=r"^export: unknown precision 'fp4'"):
        nf_trt.build_trt_engines(str(b), precision="fp4")
    assert fake_trt.builds == 0


# ---- the TensorRT names the builder uses ------------------------------------------------------------------

def test_tensorrt_api_list_covers_the_builder():
    """Every trt.<Name>[.<member>] spelled in export/tensorrt.py is in TENSORRT_API (so the check below is whole)."""
    source = Path(nf_trt.__file__).read_text()
    used = set(re.findall(r"\btrt\.([A-Z]\w*(?:\.[A-Za-z_]\w*)?)", source))
    assert used and used <= set(nf_trt.TENSORRT_API), sorted(used - set(nf_trt.TENSORRT_API))


def test_missing_tensorrt_api_names_what_is_missing():
    root = types.SimpleNamespace()
    for name in nf_trt.TENSORRT_API:
        obj = root
        for part in name.split("."):
            if not hasattr(obj, part):
                setattr(obj, part, types.SimpleNamespace())
            obj = getattr(obj, part)
    assert nf_trt.missing_tensorrt_api(root) == []
    del root.BuilderFlag.TF32, root.OnnxParser
    assert nf_trt.missing_tensorrt_api(root) == ["BuilderFlag.TF32", "OnnxParser", "OnnxParser.parse_from_file",
                                                 "OnnxParser.num_errors", "OnnxParser.get_error"]


@pytest.mark.trt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt not installed (pip install 'nextframe[trt]')")
def test_installed_tensorrt_has_every_name_the_builder_uses():
    """Runs without a GPU: importing the bindings and reading their types needs no device. Seen passing against
    the TensorRT 11.4.0.106 bindings from PyPI (README, "TensorRT")."""
    import tensorrt as trt

    assert str(trt.__version__).split(".")[0] in nf_trt.TRT_MAJORS
    assert nf_trt.missing_tensorrt_api(trt) == []
    if nf_trt.trt_major(trt) >= 11:  # the weak-typing flags are gone; our builder must not need them
        assert not any(hasattr(trt.BuilderFlag, f) for f in ("FP16", "BF16", "INT8", "FP8"))


# ---- fp16/bf16 graphs for strongly typed networks (export/onnx_lowp.py) -------------------------------------
# The converted graph must pass onnx.checker's full check (to_lowp runs it), keep fp32 IO, compute the matrix
# products and convolutions in the low type and keep the listed ops in fp32. Its numerics are checked on CPU
# by emulate_in_fp32 (every low-type tensor rounded through Cast(low) -> Cast(float)) against the fp32 graph.
# Bounds, NMSE per output (10x the largest measured on the tiny DiT and U-Net bundles, 3 seeds each: fp16
# 5.3e-7, bf16 4.7e-5; per-value rounding of fp16 is 2^-11, of bf16 2^-8, so bf16/fp16 ~ 64 as measured):
LOWP_NMSE = {"fp16": 5e-6, "bf16": 5e-4}
LOWP = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}


def _model(nodes, inputs, outputs, inits, opset: int = 20) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    m = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    t = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info)}
    t.update({i.name: i.data_type for i in m.graph.initializer})
    return t


def _run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def test_lowp_casts_around_kept_ops():
    """x -> MatMul -> LayerNormalization -> Softmax -> Add -> y, worked out by hand: the product and the add in
    fp16, the normalisation and softmax in fp32, a Cast wherever the type changes, y still fp32 and named y."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((8, 8)).astype(np.float32), "scale": np.ones(8, np.float32),
             "bias": np.zeros(8, np.float32), "b": rng.standard_normal(8).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
             helper.make_node("LayerNormalization", ["mm", "scale", "bias"], ["ln"], axis=-1),
             helper.make_node("Softmax", ["ln"], ["sm"], axis=-1), helper.make_node("Add", ["sm", "b"], ["y"])]
    model = _model(nodes, [("x", F32, [2, 8])], [("y", F32, [2, 8])], inits)
    low, report = onnx_lowp.to_lowp(model, "fp16")
    t = _types(low)
    got = [(n.op_type, [t[i] for i in n.input], [t[o] for o in n.output]) for n in low.graph.node]
    assert got == [("Cast", [F32], [F16]), ("MatMul", [F16, F16], [F16]), ("Cast", [F16], [F32]),
                   ("LayerNormalization", [F32, F32, F32], [F32]), ("Softmax", [F32], [F32]), ("Cast", [F32], [F16]),
                   ("Add", [F16, F16], [F16]), ("Cast", [F16], [F32])]
    assert low.graph.node[-1].output[0] == "y" and t["x"] == t["y"] == F32
    assert {i.name: i.data_type for i in low.graph.initializer} == {"w_fp16": F16, "b_fp16": F16, "scale": F32, "bias": F32}
    assert report == {"precision": "fp16", "opset": 20, "n_lowp": 2, "n_fp32": 2, "n_casts": 4, "n_lowp_constants": 2,
                      "fp32_ops": {"LayerNormalization": 1, "Softmax": 1}}
    feeds = {"x": rng.standard_normal((2, 8)).astype(np.float32)}
    assert nmse(_run(onnx_lowp.emulate_in_fp32(low), feeds)[0], _run(model, feeds)[0]) <= LOWP_NMSE["fp16"]


def test_lowp_leaves_other_domains_in_fp32():
    """An op without an ONNX schema (onnxruntime's com.microsoft Gelu, typed by the exporter's value_info) gets
    its inputs back in fp32 and keeps its type; the products around it still run in fp16."""
    w = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Gelu", ["a"], ["b"], domain="com.microsoft"),
             helper.make_node("MatMul", ["b", "w"], ["y"])]
    model = _model(nodes, [("x", F32, [2, 4])], [("y", F32, [2, 4])], {"w": w})
    model.graph.value_info.append(helper.make_tensor_value_info("b", F32, [2, 4]))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    low, report = onnx_lowp.to_lowp(model, "fp16")
    t = _types(low)
    gelu = next(n for n in low.graph.node if n.op_type == "Gelu")
    assert t[gelu.input[0]] == t["b"] == F32 and report["fp32_ops"] == {"Gelu": 1} and report["n_lowp"] == 2
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)}
    assert nmse(_run(onnx_lowp.emulate_in_fp32(low), feeds)[0], _run(model, feeds)[0]) <= LOWP_NMSE["fp16"]


@pytest.mark.parametrize("precision, opset", [("fp16", 20), ("bf16", 22)])
def test_lowp_conv_resize_follow_the_schema(precision, opset):
    """Conv and Resize compute in the low type, Resize's scales stay fp32 (its schema fixes them to float);
    bf16 moves the graph to opset 22, the first whose Conv takes bf16."""
    w = np.random.default_rng(1).standard_normal((4, 2, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="nearest")]
    model = _model(nodes, [("x", F32, [1, 2, 4, 4])], [("y", F32, [1, 4, 8, 8])],
                   {"w": w, "scales": np.array([1, 1, 2, 2], np.float32)})
    low, report = onnx_lowp.to_lowp(model, precision)
    t = _types(low)
    conv, resize = (next(n for n in low.graph.node if n.op_type == op) for op in ("Conv", "Resize"))
    assert report["opset"] == opset and onnx_lowp._opset(low) == opset
    assert [t[i] for i in conv.input] == [LOWP[precision]] * 2 and t[resize.input[0]] == LOWP[precision]
    assert t[resize.input[2]] == F32 and t["y"] == F32
    feeds = {"x": np.random.default_rng(2).standard_normal((1, 2, 4, 4)).astype(np.float32)}
    assert nmse(_run(onnx_lowp.emulate_in_fp32(low), feeds)[0], _run(model, feeds)[0]) <= LOWP_NMSE[precision]


@pytest.mark.parametrize("precision, top", [("fp16", 65504.0), ("bf16", 3.3895313892515355e38)])
def test_lowp_constants_stay_finite(precision, top):
    """An attention mask of -3.4e38 (float32's lowest) must not become -inf (a fully masked row would give NaN);
    infinities and NaN stay what they are."""
    c = np.array([-3.4e38, np.inf, -np.inf, 1.0, 7e4, np.nan], np.float32)
    model = _model([helper.make_node("Add", ["x", "c"], ["y"])], [("x", F32, [6])], [("y", F32, [6])], {"c": c})
    low, _ = onnx_lowp.to_lowp(model, precision)
    (stored,) = [numpy_helper.to_array(i).astype(np.float32) for i in low.graph.initializer]
    expected = [-top, np.inf, -np.inf, 1.0, 65504.0 if precision == "fp16" else 70144.0, np.nan]
    np.testing.assert_array_equal(stored, np.array(expected, np.float32))


@pytest.mark.parametrize("precision, kept_bound, unkept_floor", [("fp16", 1e-6, 1e-3), ("bf16", 1e-4, 1e-1)])
def test_lowp_keeps_the_noise_level_embedding_in_fp32(monkeypatch, precision, kept_bound, unkept_floor):
    """sin(t * f) with f up to 1000, then a product: in fp16 the argument 736 has a spacing of 0.5 rad, so the
    embedding is noise. Kept in fp32 (the default) the error is the product's rounding only; measured NMSE
    5.8e-8 (fp16) / 5.8e-6 (bf16) kept, 7.8e-3 / 0.28 when the cone is converted too."""
    freqs = np.geomspace(1.0, 1000.0, 16).astype(np.float32).reshape(1, 16)
    w = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    nodes = [helper.make_node("Unsqueeze", ["t", "ax"], ["t2"]), helper.make_node("Mul", ["t2", "freqs"], ["arg"]),
             helper.make_node("Sin", ["arg"], ["s"]), helper.make_node("MatMul", ["s", "w"], ["y"])]
    model = _model(nodes, [("t", F32, [1])], [("y", F32, [1, 4])],
                   {"freqs": freqs, "w": w, "ax": np.array([1], np.int64)})
    feeds = {"t": np.array([0.7361], np.float32)}
    ref = _run(model, feeds)[0]
    low, report = onnx_lowp.to_lowp(model, precision)
    assert report["fp32_ops"] == {"Mul": 1, "Sin": 1, "Unsqueeze": 1} and report["n_lowp"] == 1  # the MatMul
    assert nmse(_run(onnx_lowp.emulate_in_fp32(low), feeds)[0], ref) <= kept_bound
    monkeypatch.setattr(onnx_lowp, "CONE_SINKS", frozenset())
    unkept, _ = onnx_lowp.to_lowp(model, precision)
    assert nmse(_run(onnx_lowp.emulate_in_fp32(unkept), feeds)[0], ref) >= unkept_floor


@pytest.mark.parametrize("make, precision, message", [
    (lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F32, [2])], [("y", F32, [2])], {}), "fp8",
     r"^onnx_lowp: unknown precision 'fp8' \(expected fp16, bf16\)$"),
    (lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F16, [2])], [("y", F16, [2])], {}), "fp16",
     r"^onnx_lowp: graph input/output 'x' is FLOAT16 \(expected fp32 or integer\)$"),
    (lambda: _qdq_model(TensorProto.INT8), "fp16", r"^onnx_lowp: the graph has Q/DQ nodes, whose types set its precision"),
    (lambda: _model([helper.make_node("If", ["c"], ["y"], name="branch",
                                      then_branch=helper.make_graph([], "t", [], [helper.make_tensor_value_info("x", F32, [2])]),
                                      else_branch=helper.make_graph([], "e", [], [helper.make_tensor_value_info("x", F32, [2])]))],
                    [("c", TensorProto.BOOL, []), ("x", F32, [2])], [("y", F32, [2])], {}), "bf16",
     r"^onnx_lowp: control flow \(If node 'branch'\) is not converted$"),
])
def test_lowp_refusals_are_one_line(make, precision, message):
    with pytest.raises(ValueError, match=message):
        onnx_lowp.to_lowp(make(), precision)


@pytest.fixture(scope="module")
def unet_step(tmp_path_factory) -> str:
    from nextframe.export.bundle import export_bundle

    out = tmp_path_factory.mktemp("unet") / "bundle"
    export_bundle(randomized_unet(tiny_unet_config()), str(out), n_steps=2, context_noise=0.05)
    return str(out / "step.onnx")


def _feeds(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    """Inputs every tiny step graph takes: normal floats, noise levels 0.7, ages 1, 2, 0, 3, other integers 1."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in model.graph.input:
        shape = [d.dim_value for d in v.type.tensor_type.shape.dim]
        if v.name in ("t", "ctx_t"):
            feeds[v.name] = np.full(shape, 0.7, np.float32)
        elif v.type.tensor_type.elem_type == F32:
            feeds[v.name] = rng.standard_normal(shape).astype(np.float32)
        elif v.name == "ages":
            feeds[v.name] = np.resize(np.array([1, 2, 0, 3], np.int64), shape)
        else:
            feeds[v.name] = np.full(shape, 1, np.int64)
    return feeds


@pytest.mark.parametrize("graph", ["dit", "unet"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_lowp_step_graphs(request, graph, precision):
    """The tiny DiT and U-Net step graphs: checker-clean (inside to_lowp), same IO, every product and convolution
    in the low type, normalisation and softmax inputs fp32, and the emulated error within LOWP_NMSE."""
    path = str(Path(tiny_bundle()[0]) / "step.onnx") if graph == "dit" else request.getfixturevalue("unet_step")
    model = onnx.load(path)
    low, report = onnx_lowp.to_lowp(model, precision)
    t = _types(low)
    io = lambda m: [(v.name, v.type.tensor_type.elem_type) for v in list(m.graph.input) + list(m.graph.output)]
    assert io(low) == io(model)
    heavy = [n for n in low.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    assert heavy and all(t[n.output[0]] == LOWP[precision] for n in heavy)
    kept = [n for n in low.graph.node if n.op_type in ("LayerNormalization", "InstanceNormalization", "Softmax")]
    assert kept and all(t[n.input[0]] == F32 and t[n.output[0]] == F32 for n in kept)
    assert report["n_lowp"] > 5 * report["n_fp32"]
    assert sum(i.data_type == LOWP[precision] for i in low.graph.initializer) > 0
    emulated = onnx_lowp.emulate_in_fp32(low)
    for seed in range(2):
        feeds = _feeds(model, seed)
        for name, got, want in zip([o.name for o in model.graph.output], _run(emulated, feeds), _run(model, feeds)):
            err = nmse(got, want)
            assert 1e-12 < err <= LOWP_NMSE[precision], f"{graph} {precision} seed {seed} output {name}: NMSE {err:.3g}"


@pytest.mark.parametrize("graph", ["dit", "unet"])
def test_lowp_fp16_graph_runs_in_onnxruntime(request, graph):
    """The fp16 graph itself in ONNX Runtime's fp16 CPU kernels, where it has them (1.32 has all these graphs
    need); measured NMSE 1.4e-8-2.1e-7 on the tiny DiT, 1.6e-7 on the tiny U-Net."""
    path = str(Path(tiny_bundle()[0]) / "step.onnx") if graph == "dit" else request.getfixturevalue("unet_step")
    model = onnx.load(path)
    low, _ = onnx_lowp.to_lowp(model, "fp16")
    feeds = _feeds(model, 0)
    try:
        got = _run(low, feeds)
    except Exception as e:  # onnxruntime's NOT_IMPLEMENTED: no fp16 kernel for one of the ops
        if "NOT_IMPLEMENTED" not in str(e):
            raise
        pytest.skip(f"onnxruntime {ort.__version__} lacks an fp16 CPU kernel this graph needs")
    for g, w in zip(got, _run(model, feeds)):
        assert nmse(g, w) <= LOWP_NMSE["fp16"]


# ---- the manifest's "tensorrt" section (a fake plan of bytes: manifest validation only) ---------------------

def _add_engine(bundle: Path, data: bytes = b"not a real TensorRT plan\x00\x01", file: str | None = None,
                listed: bool = True, **overrides) -> dict:
    key = nf_trt.engine_cache_key(**KEY_ARGS)
    file = file or nf_trt.engine_file_name("fp16", (8, 9), "10.16.0.72", key)
    if not file.startswith("/") and ".." not in file.split("/"):  # never write outside the bundle
        (bundle / file).parent.mkdir(parents=True, exist_ok=True)
        (bundle / file).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    entry = {"file": file, "precision": "fp16", "compute_capability": "sm_89", "trt_version": "10.16.0.72",
             "gpu": "NVIDIA L4", "key": key, "sha256": digest, "bytes": len(data)}
    entry.update(overrides)
    m = read_manifest(bundle)
    m["tensorrt"] = {"engines": [entry]}
    if listed:
        m["files"][file] = {"sha256": digest, "bytes": len(data)}
    write_manifest(bundle, m)
    return entry


def test_bundle_accepts_tensorrt_section(tmp_path):
    b = copy_bundle(tmp_path / "b")
    entry = _add_engine(b)
    bundle = _core.Bundle.open(str(b))
    assert bundle.tensorrt_engines == [dict(entry, graph="step")]  # no "graph": a step engine (older bundles)
    _add_engine(b, graph="kv")
    assert [e["graph"] for e in _core.Bundle.open(str(b)).tensorrt_engines] == ["kv"]
    # the ORT path does not care: the bundle still runs on onnxruntime
    with Session(str(b), backend="ort-cpu", threads=1) as s:
        s.reset(np.zeros((1, 16, 16, 3), np.uint8), [s.no_action])
        assert s.step(0).shape == (16, 16, 3)


def test_bundle_without_tensorrt_section_has_no_engines():
    bundle, _ = tiny_bundle()
    assert _core.Bundle.open(bundle).tensorrt_engines == []


def test_bundle_rejects_missing_engine_file(tmp_path):
    b = copy_bundle(tmp_path / "b")
    entry = _add_engine(b)
    (b / entry["file"]).unlink()
    with pytest.raises(ValueError, match=rf"^bundle: file '{entry['file']}' is missing"):
        _core.Bundle.open(str(b))


def test_bundle_rejects_engine_checksum_mismatch(tmp_path):
    b = copy_bundle(tmp_path / "b")
    entry = _add_engine(b)
    (b / entry["file"]).write_bytes(b"Not a real TensorRT plan\x00\x01")  # same size, other bytes
    with pytest.raises(ValueError, match=rf"^bundle: file '{entry['file']}' sha256 mismatch \(got [0-9a-f]{{64}}, "
                                         rf"expected {entry['sha256']}\)$"):
        _core.Bundle.open(str(b))


def test_bundle_rejects_engine_path_escaping_the_bundle(tmp_path):
    b = copy_bundle(tmp_path / "b")
    _add_engine(b, file="../outside.plan", listed=False)
    with pytest.raises(ValueError, match=r"^bundle: file path '\.\./outside\.plan' escapes the bundle$"):
        _core.Bundle.open(str(b))
    _add_engine(b, file="/tmp/outside.plan", listed=False)
    with pytest.raises(ValueError, match=r"^bundle: file path '/tmp/outside\.plan' escapes the bundle$"):
        _core.Bundle.open(str(b))


def test_bundle_rejects_engine_not_in_files(tmp_path):
    b = copy_bundle(tmp_path / "b")
    entry = _add_engine(b, listed=False)
    with pytest.raises(ValueError, match=rf"^bundle: tensorrt engine file '{entry['file']}' not listed in files$"):
        _core.Bundle.open(str(b))


@pytest.mark.parametrize("overrides, message", [
    ({"sha256": "0" * 64}, r"^bundle: tensorrt\.engines\[0\] sha256/bytes disagree with files\.engines/"),
    ({"precision": "fp4"}, r"^bundle: tensorrt\.engines\[0\]\.precision 'fp4' not supported \(expected fp32, fp16, bf16, fp8, int8\)$"),
    ({"compute_capability": "8.9"}, r"^bundle: tensorrt\.engines\[0\]\.compute_capability '8\.9' \(expected sm_<digits>, e\.g\. sm_89\)$"),
    ({"key": "xyz"}, r"^bundle: tensorrt\.engines\[0\]\.key is not 64 lower-case hex digits$"),
    ({"graph": "refiner"}, r"^bundle: tensorrt\.engines\[0\]\.graph 'refiner' \(expected step or kv\)$"),
    ({"trt_version": 10}, r"^bundle: manifest key 'tensorrt\.engines\[0\]\.trt_version' must be a string \(got number\)$"),
])
def test_bundle_rejects_bad_engine_entries(tmp_path, overrides, message):
    b = copy_bundle(tmp_path / "b")
    _add_engine(b, **overrides)
    with pytest.raises(ValueError, match=message):
        _core.Bundle.open(str(b))


def test_bundle_rejects_malformed_tensorrt_section(tmp_path):
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    m["tensorrt"] = {"engines": {}}
    write_manifest(b, m)
    with pytest.raises(ValueError, match=r"^bundle: manifest key 'tensorrt\.engines' must be an array \(got object\)$"):
        _core.Bundle.open(str(b))
    m["tensorrt"] = []
    write_manifest(b, m)
    with pytest.raises(ValueError, match=r"^bundle: manifest key 'tensorrt' must be an object \(got array\)$"):
        _core.Bundle.open(str(b))


def test_trt_backend_on_a_bundle_without_engines():
    """With TensorRT compiled in, a bundle with no engines is a clear error (not reachable on this build)."""
    if not _core.has_tensorrt():
        pytest.skip("nextframe._core built without TensorRT (the 'not built' error is tested above)")
    bundle, _ = tiny_bundle()
    with pytest.raises(RuntimeError, match=r"^engine_trt: the bundle has no TensorRT engine"):
        Session(bundle, backend="trt")


# ---- the real thing: TensorRT vs onnxruntime (skipped without TensorRT and a GPU) -------------------------

TRT_MISSING = importlib.util.find_spec("tensorrt") is None
# fp16 engine vs onnxruntime fp32 on the tiny bundle: fp16 rounding (~5e-4 relative per value) through two
# transformer layers gives an NMSE around 1e-6 (the converted graph, emulated on CPU: 5e-7); 1e-4 leaves room
# without hiding a wrong binding (a swapped or unfilled tensor gives NMSE ~1). bf16 rounds 8x coarser (emulated
# 3.5e-5), hence 1e-3. fp32 (TF32 off) differs only by kernel summation order.
TOLERANCE_NMSE = {"fp16": 1e-4, "bf16": 1e-3, "fp32": 1e-8}


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(TRT_MISSING, reason="tensorrt not installed (pip install 'nextframe[trt]' on a machine with an NVIDIA GPU)")
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_trt_engine_matches_onnxruntime(tmp_path, precision):
    if not _core.has_tensorrt():
        pytest.skip("nextframe._core built without TensorRT (rebuild with -DNF_WITH_TENSORRT=ON -DTENSORRT_ROOT=...)")
    try:
        cc, _ = nf_trt.cuda_device(0)
    except RuntimeError as e:
        pytest.skip(f"no CUDA device: {e}")
    if cc < nf_trt.MIN_COMPUTE_CAPABILITY[precision]:
        pytest.skip(f"{precision} needs compute capability {nf_trt.MIN_COMPUTE_CAPABILITY[precision]} (this GPU: {cc})")
    b = copy_bundle(tmp_path / "b")
    entries = nf_trt.build_trt_engines(str(b), precision=precision, workspace_gb=1.0)  # step and kv engines
    assert [(e["graph"], e["precision"], e["cached"]) for e in entries] == [("step", precision, False), ("kv", precision, False)]
    assert all(e["cached"] for e in nf_trt.build_trt_engines(str(b), precision=precision, workspace_gb=1.0))  # cache hit
    bundle = _core.Bundle.open(str(b))  # checksums of the plans verified
    assert [e["file"] for e in bundle.tensorrt_engines] == [e["file"] for e in entries]

    rng = np.random.default_rng(0)
    feeds = {}
    for spec in bundle.step_inputs:
        shape = spec["shape"]
        if spec["dtype"] == "float32":
            feeds[spec["name"]] = rng.standard_normal(shape).astype(np.float32)
        elif spec["name"] == "ages":
            feeds[spec["name"]] = np.array([1, 2, 0, 3][: shape[0]] + [0] * max(0, shape[0] - 4), np.int64)
        else:
            feeds[spec["name"]] = np.full(shape, 1, np.int64)
    feeds["t"] = np.array([0.7], np.float32)
    ort = _core.Engine(bundle, backend="ort-cpu", threads=1).run(feeds)
    trt_engine = _core.Engine(bundle, backend="trt", trt_precision=precision)
    assert trt_engine.backend == "trt"
    for run in range(3):  # run 0 plain, then captured into a CUDA graph and replayed
        got = trt_engine.run(feeds)
        for name, want in ort.items():
            assert got[name].shape == want.shape
            err = nmse(got[name], want)
            assert err <= TOLERANCE_NMSE[precision], f"{precision} run {run} output {name}: NMSE {err:.3g}"
    assert "cuda graph" in trt_engine.note

    # and the frame loop on TensorRT follows the ORT loop closely over a few frames
    with Session(str(b), backend="trt", trt_precision=precision, seed=3) as s_trt, \
            Session(str(b), backend="ort-cpu", threads=1, seed=3) as s_ort:
        ctx = np.zeros((1, 16, 16, 3), np.uint8)
        s_trt.reset(ctx, [s_trt.no_action])
        s_ort.reset(ctx, [s_ort.no_action])
        assert s_trt.stats()["uses_kv_graph"]  # the cache is written by the kv engine
        for action in (0, 1, 2):
            err = nmse(s_trt.step_raw(action), s_ort.step_raw(action))
            assert err <= 10 * TOLERANCE_NMSE[precision], f"frame NMSE {err:.3g}"
