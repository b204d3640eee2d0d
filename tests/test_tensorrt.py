"""The TensorRT backend (issue 4), tested honestly: what runs everywhere (the engine cache key, the clear errors
without TensorRT, the bundle manifest's "tensorrt" section, backend "trt" on a core built without TensorRT)
and one end-to-end test, TensorRT against onnxruntime on the tiny bundle, that skips where TensorRT 10 is not
installed (it cannot be installed on the machines this project is developed on: no GPU, and PyPI's tensorrt
only redirects to NVIDIA's index)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from nextframe import _core
from nextframe.export import tensorrt as nf_trt
from nextframe.runtime import Session
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


@pytest.mark.parametrize("precision, cc, qdq, message", [
    ("fp16", (5, 2), False, r"^export: precision fp16 needs compute capability >= 5.3 \(this GPU: 5.2\)$"),
    ("bf16", (7, 5), False, r"^export: precision bf16 needs compute capability >= 8.0 \(this GPU: 7.5\)$"),
    ("fp8", (8, 6), True, r"^export: precision fp8 needs compute capability >= 8.9 \(this GPU: 8.6\)$"),
    ("int8", (8, 9), False, r"^export: precision int8 needs a quantized step graph \(QuantizeLinear/DequantizeLinear"),
    ("fp8", (9, 0), False, r"^export: precision fp8 needs a quantized step graph"),
    ("fp64", (9, 0), False, r"^export: unknown precision 'fp64' \(expected fp32, fp16, bf16, fp8, int8\)$"),
])
def test_check_precision_errors(precision, cc, qdq, message):
    with pytest.raises(ValueError, match=message):
        nf_trt.check_precision(precision, cc, qdq)


def test_check_precision_accepts():
    nf_trt.check_precision("fp16", (7, 5), False)
    nf_trt.check_precision("bf16", "sm_80", False)
    nf_trt.check_precision("int8", (8, 6), True)
    nf_trt.check_precision("fp8", (8, 9), True)
    nf_trt.check_precision("fp32", (7, 5), False)


def test_exported_step_graph_has_no_quantize_nodes():
    bundle, _ = tiny_bundle()
    assert not nf_trt.onnx_has_quantize_nodes(str(Path(bundle) / "step.onnx"))


# ---- without TensorRT ----------------------------------------------------------------------------------

def test_build_without_tensorrt_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` now fails, installed or not
    bundle, _ = tiny_bundle()
    with pytest.raises(RuntimeError, match=r"^export: --trt needs TensorRT 10 \(pip install .*https://pypi.nvidia.com"
                                           r".*\); tensorrt is not installed here$"):
        nf_trt.build_trt_engines(bundle, precision="fp16")
    assert "tensorrt" not in read_manifest(Path(bundle))  # the bundle is untouched


def test_build_with_tensorrt_8_is_a_clear_error(monkeypatch):
    class FakeTrt:  # only its version is read before the check fails
        __version__ = "8.6.1"

    monkeypatch.setitem(sys.modules, "tensorrt", FakeTrt)
    with pytest.raises(RuntimeError, match=r"^export: --trt needs TensorRT 10 \(found tensorrt 8.6.1\)$"):
        nf_trt.import_tensorrt()


def test_cli_export_trt_without_tensorrt(monkeypatch, tmp_path, capsys):
    from nextframe.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["export", "--out", str(tmp_path / "b"), "--trt"]) == 2
    assert capsys.readouterr().err.startswith("nextframe: export: --trt needs TensorRT 10 (")
    assert not (tmp_path / "b").exists()  # failed before the ONNX export
    assert main(["export", "--out", str(tmp_path / "b"), "--precision", "fp32"]) == 2
    assert capsys.readouterr().err == "nextframe: export: --precision needs --trt\n"


def test_session_trt_backend_not_built():
    if _core.has_tensorrt():
        pytest.skip("this nextframe._core was built with TensorRT")
    bundle, _ = tiny_bundle()
    with pytest.raises(RuntimeError, match=r"^engine: backend 'trt' not built \(TensorRT was not found at build time; "
                                           r"rebuild with -DNF_WITH_TENSORRT=ON -DTENSORRT_ROOT=<TensorRT 10 dir>\)$"):
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
# FakeTrt answers the few TensorRT 10 calls build_trt_engines makes, from the ONNX graph itself, and "builds" a
# plan of bytes. It checks our file naming, manifest update, cache hits and that the C++ loader accepts what
# we write; it says nothing about TensorRT (the test at the end of this file does, where TensorRT exists).

class FakeTrt:
    __version__ = "10.16.0.72"

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class BuilderFlag:
        FP16, BF16, INT8, FP8, TF32 = "FP16", "BF16", "INT8", "FP8", "TF32"

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
            assert flags == 0
            return FakeTrt.Network()

        def create_builder_config(self):
            return FakeTrt.Config()

        def build_serialized_network(self, network, config):
            FakeTrt.builds += 1
            return json.dumps({"flags": sorted(config.flags), "inputs": network.shapes}).encode()

    class Network:
        shapes: dict = {}

        @property
        def num_inputs(self):
            return len(self.shapes)

        def get_input(self, i):
            name = list(self.shapes)[i]
            return type("T", (), {"name": name, "shape": tuple(self.shapes[name])})()

    class Config:
        def __init__(self):
            self.flags = set()

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
            import onnx

            g = onnx.load(path).graph
            self.network.shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in g.input}
            return FakeTrt.parse_ok

        def get_error(self, i):
            return f"In node {i} (Op): UNSUPPORTED_NODE:\n  no kernel"

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return FakeTrt.Engine(json.loads(bytes(plan)))

    class Engine:
        def __init__(self, plan):
            bundle, _ = tiny_bundle()
            m = read_manifest(Path(bundle))["graphs"]["step"]
            self.specs = {s["name"]: (s, "INPUT") for s in m["inputs"]}
            self.specs.update({s["name"]: (s, "OUTPUT") for s in m["outputs"]})
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
    FakeTrt.parse_ok, FakeTrt.builds = True, 0
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTrt)
    monkeypatch.setattr(nf_trt, "cuda_device", lambda device=0: ((8, 9), "NVIDIA L4"))
    return FakeTrt


def test_build_records_engines_in_the_manifest(tmp_path, fake_trt, monkeypatch):
    b = copy_bundle(tmp_path / "b")
    (fp16,) = nf_trt.build_trt_engines(str(b), precision="fp16")
    m = read_manifest(b)
    key = nf_trt.engine_cache_key("10.16.0.72", (8, 9), "NVIDIA L4", "fp16", m["files"]["step.onnx"]["sha256"],
                                  {s["name"]: s["shape"] for s in m["graphs"]["step"]["inputs"]})
    assert fp16["file"] == f"engines/step_fp16_sm89_trt10.16.0_{key[:16]}.plan" and fp16["key"] == key
    assert not fp16.pop("cached") and m["tensorrt"] == {"engines": [fp16]}
    assert m["files"][fp16["file"]] == {"sha256": fp16["sha256"], "bytes": fp16["bytes"]}
    plan = json.loads((b / fp16["file"]).read_bytes())
    assert plan["flags"] == ["FP16"] and plan["inputs"]["x"] == [1, 3, 16, 16]
    # the C++ loader accepts what was written, checksums included
    assert _core.Bundle.open(str(b)).tensorrt_engines == [fp16]

    # same key, intact file: nothing is built; another precision is added after it
    again, fp32 = nf_trt.build_trt_engines(str(b), precision=["fp16", "fp32"])
    assert again["cached"] and not fp32["cached"] and fake_trt.builds == 2
    assert json.loads((b / fp32["file"]).read_bytes())["flags"] == []  # fp32: TF32 cleared, no precision flag
    assert [e["precision"] for e in _core.Bundle.open(str(b)).tensorrt_engines] == ["fp16", "fp32"]

    # a damaged plan is rebuilt, not reused
    (b / fp16["file"]).write_bytes(b"damaged")
    (rebuilt,) = nf_trt.build_trt_engines(str(b), precision="fp16")
    assert not rebuilt["cached"] and fake_trt.builds == 3
    _core.Bundle.open(str(b))

    # another GPU with the same compute capability but another name: its own engine, the others stay
    monkeypatch.setattr(nf_trt, "cuda_device", lambda device=0: ((8, 9), "NVIDIA GeForce RTX 4090"))
    (other,) = nf_trt.build_trt_engines(str(b), precision="fp16")
    assert other["file"] != fp16["file"] and len(_core.Bundle.open(str(b)).tensorrt_engines) == 3


def test_build_uses_a_shared_cache_dir(tmp_path, fake_trt):
    b1, b2 = copy_bundle(tmp_path / "b1"), copy_bundle(tmp_path / "b2")
    (first,) = nf_trt.build_trt_engines(str(b1), precision="fp16", cache_dir=str(tmp_path / "cache"))
    assert (tmp_path / "cache" / f"{first['key']}.plan").is_file()
    (second,) = nf_trt.build_trt_engines(str(b2), precision="fp16", cache_dir=str(tmp_path / "cache"))
    assert second["cached"] and fake_trt.builds == 1 and second["sha256"] == first["sha256"]
    _core.Bundle.open(str(b2))


def test_build_reports_parser_errors_on_one_line(tmp_path, fake_trt):
    b = copy_bundle(tmp_path / "b")
    fake_trt.parse_ok = False
    with pytest.raises(RuntimeError, match=r"^export: TensorRT's ONNX parser rejected .*step\.onnx: In node 0 \(Op\): "
                                           r"UNSUPPORTED_NODE: no kernel; In node 1 \(Op\): UNSUPPORTED_NODE: no kernel$"):
        nf_trt.build_trt_engines(str(b), precision="fp16")
    assert "tensorrt" not in read_manifest(b)


def test_build_refuses_int8_without_quantize_nodes(tmp_path, fake_trt):
    b = copy_bundle(tmp_path / "b")
    with pytest.raises(ValueError, match=r"^export: precision int8 needs a quantized step graph"):
        nf_trt.build_trt_engines(str(b), precision="int8")
    with pytest.raises(ValueError, match=r"^export: unknown precision 'fp4'"):
        nf_trt.build_trt_engines(str(b), precision="fp4")
    assert fake_trt.builds == 0


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
    assert bundle.tensorrt_engines == [entry]
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


# ---- the real thing: TensorRT vs onnxruntime (skipped without TensorRT 10) --------------------------------

TRT_MISSING = importlib.util.find_spec("tensorrt") is None
# fp16 engine vs onnxruntime fp32 on the tiny bundle: fp16 rounding (~5e-4 relative per value) through two
# transformer layers gives an NMSE around 1e-6; 1e-4 leaves room without hiding a wrong binding (a swapped or
# unfilled tensor gives NMSE ~1). fp32 (TF32 off) differs only by kernel summation order.
TOLERANCE_NMSE = {"fp16": 1e-4, "fp32": 1e-8}


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(TRT_MISSING, reason="TensorRT 10 not installed (cannot be installed on these machines)")
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_trt_engine_matches_onnxruntime(tmp_path, precision):
    if not _core.has_tensorrt():
        pytest.skip("nextframe._core built without TensorRT (rebuild with -DNF_WITH_TENSORRT=ON -DTENSORRT_ROOT=...)")
    b = copy_bundle(tmp_path / "b")
    entries = nf_trt.build_trt_engines(str(b), precision=precision, workspace_gb=1.0)
    assert [e["precision"] for e in entries] == [precision] and not entries[0]["cached"]
    assert nf_trt.build_trt_engines(str(b), precision=precision, workspace_gb=1.0)[0]["cached"]  # cache hit
    bundle = _core.Bundle.open(str(b))  # checksums of the plan verified
    assert [e["file"] for e in bundle.tensorrt_engines] == [entries[0]["file"]]

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
        for action in (0, 1, 2):
            err = nmse(s_trt.step_raw(action), s_ort.step_raw(action))
            assert err <= 10 * TOLERANCE_NMSE[precision], f"frame NMSE {err:.3g}"
