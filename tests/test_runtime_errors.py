"""Every error path of the runtime's Python API, asserting type and message prefix: corrupt bundles
(bad checksum, missing graph file, format_version 2, a file path with '..', a truncated step.onnx or kv.onnx whose
manifest checksum was fixed up so ONNX Runtime itself must reject it: a clean RuntimeError, no crash; a kv
graph whose entries disagree with the step graph's),
bad arguments (shapes, dtypes, unknown actions, unknown backend), a missing libonnxruntime, and an
unavailable CUDA provider."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from nextframe import _core
from nextframe.runtime import Session
from runtime_helpers import copy_bundle, read_manifest, tiny_bundle, write_manifest


def _open(path):
    return Session(str(path), backend="ort-cpu", threads=1)


def test_bad_checksum(tmp_path):
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    m["files"]["step.onnx"]["sha256"] = "0" * 64
    write_manifest(b, m)
    with pytest.raises(ValueError, match=r"^bundle: file 'step.onnx' sha256 mismatch \(got [0-9a-f]{64}, expected 0{64}\)$"):
        _open(b)


def test_missing_graph_file(tmp_path):
    b = copy_bundle(tmp_path / "b")
    (b / "step.onnx").unlink()
    with pytest.raises(ValueError, match=r"^bundle: file 'step.onnx' is missing"):
        _open(b)


def test_missing_manifest(tmp_path):
    with pytest.raises(ValueError, match=r"^bundle: no manifest.json in '"):
        _open(tmp_path)


def test_format_version_2(tmp_path):
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    m["format_version"] = 2
    write_manifest(b, m)
    with pytest.raises(ValueError, match=r"^bundle: format_version 2 not supported \(expected 1\)$"):
        _open(b)


def test_path_with_dotdot(tmp_path):
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    m["files"]["../x"] = {"sha256": "0" * 64, "bytes": 0}
    write_manifest(b, m)
    with pytest.raises(ValueError, match=r"^bundle: file path '\.\./x' escapes the bundle$"):
        _open(b)


def test_manifest_not_json(tmp_path):
    b = copy_bundle(tmp_path / "b")
    (b / "manifest.json").write_text('{"format": "nextframe.bundle",}')
    with pytest.raises(ValueError, match=r"^bundle: manifest.json is not valid JSON \(json: expected a string key at offset 30\)$"):
        _open(b)


@pytest.mark.parametrize("graph", ["step.onnx", "kv.onnx"])
def test_truncated_graph_is_a_clean_runtime_error(tmp_path, graph):
    b = copy_bundle(tmp_path / "b")
    data = (b / graph).read_bytes()[:1000]
    (b / graph).write_bytes(data)
    m = read_manifest(b)
    m["files"][graph] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    write_manifest(b, m)
    _core.Bundle.open(str(b))  # the bundle checks pass: the graph itself is broken
    with pytest.raises(RuntimeError, match=rf"^engine_ort: cannot load graph '.*{graph}': ") as info:
        _open(b)
    assert "\n" not in str(info.value)
    if graph == "kv.onnx":  # the step graph alone still runs
        Session(str(b), backend="ort-cpu", threads=1, use_kv_graph=False).close()


def _kv_manifest_edit(tmp_path, edit):
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    edit(m)
    write_manifest(b, m)
    return b


def _rename(specs, old, new):
    for spec in specs:
        if spec["name"] == old:
            spec["name"] = new


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["graphs"]["kv"]["inputs"][3].update(shape=[1, 3, 8, 8]),
     r"^bundle: kv graph input 'prev' differs from the step graph's$"),
    (lambda m: m["graphs"]["kv"]["inputs"].pop(),
     r"^bundle: kv graph inputs differ from the step graph's$"),
    (lambda m: m["graphs"]["kv"]["inputs"].__setitem__(6, dict(m["graphs"]["kv"]["inputs"][0])),  # ages -> a 2nd x
     r"^bundle: kv graph lacks the step graph's input 'ages'$"),
    (lambda m: _rename(m["graphs"]["kv"]["outputs"], "v_new", "denoised"),
     r"^bundle: kv graph output 'denoised' is not the step graph's k_new or v_new$"),
    (lambda m: m["graphs"]["kv"]["outputs"].pop(),
     r"^bundle: kv graph must have exactly the outputs k_new and v_new$"),
    (lambda m: m["files"].pop("kv.onnx"),
     r"^bundle: graph file 'kv.onnx' not listed in files$"),
    (lambda m: m["graphs"]["kv"].update(file="../kv.onnx"),
     r"^bundle: file path '\.\./kv.onnx' escapes the bundle$"),
])
def test_bad_kv_graph_entries(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        _open(_kv_manifest_edit(tmp_path, edit))


def test_graph_io_disagreeing_with_manifest(tmp_path):
    """The manifest declares an input (with its role) that the ONNX graph does not have under that name."""
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    for graph in ("step", "kv"):
        for spec in m["graphs"][graph]["inputs"]:
            if spec["name"] == "prev":
                spec["name"] = "x_prev"
    write_manifest(b, m)
    _core.Bundle.open(str(b))  # a consistent manifest
    with pytest.raises(ValueError, match=r"^engine_ort: step.onnx has no input 'x_prev' \(the manifest lists it\)$"):
        _open(b)


def test_legacy_manifest_without_roles(tmp_path):
    """Bundles written before roles were declared bind by their input names; an unknown name is refused."""
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    for graph in ("step", "kv"):
        for spec in m["graphs"][graph]["inputs"] + m["graphs"][graph]["outputs"]:
            spec.pop("role", None)
            spec.pop("back", None)
    write_manifest(b, m)
    with Session(str(b), backend="ort-cpu", threads=1) as s:  # legacy names: x, t, action, prev, cache_k, ...
        s.reset(np.zeros((1, 16, 16, 3), np.uint8), [4])
        assert s.step(0).shape == (16, 16, 3)
    for spec in m["graphs"]["step"]["inputs"]:
        if spec["name"] == "prev":
            spec["name"] = "x_prev"
    write_manifest(b, m)
    with pytest.raises(ValueError, match=r"^bundle: step graph input 'x_prev' not known to the runtime$"):
        _open(b)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(role="context_frame", back=0), r"^bundle: step graph input 'prev' back 0 out of range \(expected 1\.\.64\)$"),
    (lambda s: s.update(role="previous"), r"^bundle: step graph input 'prev': unknown input role 'previous'"),
    (lambda s: s.update(role="noisy_frame"), r"^bundle: step graph input 'prev': role noisy_frame listed twice$"),
    (lambda s: s.update(role="cache_ages"), r"^bundle: step graph input 'prev' dtype float32 \(expected int64\)$"),
])
def test_bad_roles(tmp_path, edit, message):
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    for spec in m["graphs"]["step"]["inputs"]:
        if spec["name"] == "prev":
            edit(spec)
    write_manifest(b, m)
    with pytest.raises(ValueError, match=message):
        _open(b)


@pytest.fixture(scope="module")
def session():
    bundle, _ = tiny_bundle()
    with Session(bundle, backend="ort-cpu", threads=1) as s:
        s.reset(np.zeros((1, 16, 16, 3), np.uint8), [4])
        yield s


@pytest.mark.parametrize("action, message", [
    (4, r"^session: unknown action 4 \(expected 0\.\.3\)$"),
    (-1, r"^session: unknown action -1 \(expected 0\.\.3\)$"),
    ("JUMP", r"^session: unknown action 'JUMP' \(expected one of NOOP, FIRE, RIGHT, LEFT\)$"),
    (1.0, r"^session: action must be an int or an action name \(got float\)$"),
])
def test_unknown_action(session, action, message):
    with pytest.raises(ValueError, match=message):
        session.step(action)


def test_core_rejects_unknown_action_too(session):
    with pytest.raises(ValueError, match=r"^frame_loop: action 4 out of range \(expected 0\.\.3\)$"):
        session.loop.step(4)


@pytest.mark.parametrize("frames, message", [
    (np.zeros((1, 8, 8, 3), np.uint8), r"^session: frames shape \[1, 8, 8, 3\] \(expected uint8 \[n, 16, 16, 3\]"),
    (np.zeros((1, 16, 16, 3), np.float32), r"^session: frames shape \[1, 16, 16, 3\] \(expected uint8"),
    (np.zeros((16, 16, 3), np.uint8), r"^session: frames shape \[16, 16, 3\]"),
    (np.zeros((1, 16, 16, 3), np.int32), r"^session: frames dtype int32 not supported"),
    (np.full((1, 3, 16, 16), 1.5, np.float32), r"^session: float frames must lie in \[-1, 1\]"),
    (np.full((1, 3, 16, 16), np.nan, np.float32), r"^session: float frames must lie in \[-1, 1\]"),
])
def test_bad_frames(session, frames, message):
    with pytest.raises(ValueError, match=message):
        session.reset(frames, [4] * len(frames))


def test_actions_count_and_context_action_range(session):
    with pytest.raises(ValueError, match=r"^session: 2 actions for 1 frames \(expected one per frame\)$"):
        session.reset(np.zeros((1, 16, 16, 3), np.uint8), [4, 0])
    with pytest.raises(ValueError, match=r"^session: unknown action 5 \(expected 0\.\.4\)$"):
        session.reset(np.zeros((1, 16, 16, 3), np.uint8), [5])


def test_core_shape_checks(session):
    with pytest.raises(ValueError, match=r"^frame_loop: frames shape \[1,3,8,8\] \(expected \[n, C, H, W\] with C\*H\*W = 768\)$"):
        session.loop.reset(np.zeros((1, 3, 8, 8), np.float32), np.zeros(1, np.int64))


def test_bad_noise(session):
    with pytest.raises(ValueError, match=r"^session: noise dtype int64 not supported \(expected float32\)$"):
        session.feed_noise(np.zeros(10, np.int64))


def test_fed_noise_exhausted():
    bundle, _ = tiny_bundle()
    with Session(bundle, backend="ort-cpu", threads=1) as s:
        s.feed_noise(np.zeros(768 * 4, np.float32))  # 1 context frame + 1 generated frame + half of the next
        s.reset(np.zeros((1, 3, 16, 16), np.float32), [4])
        s.step(0)
        with pytest.raises(ValueError, match=r"^noise: fed noise exhausted \(need 1536 values, 768 queued\); call feed_noise first$"):
            s.step(0)
        assert s.loop.n_noise_queued == 768  # nothing was consumed by the failed step


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "tensorrt"}, r"^session: unknown backend 'tensorrt' \(expected auto, ort-cpu, ort-cuda, trt, aoti, aoti-cuda\)$"),
    ({"sampler": "consistency"}, r"^session: unknown sampler 'consistency' \(expected euler, heun\)$"),
    ({"n_steps": 0}, r"^session: n_steps must be at least 1 \(got 0\)$"),
    ({"threads": 0}, r"^session: threads must be at least 1 \(got 0\)$"),
    ({"disa": {"n_max": 4}}, r"^session: disa needs keys n_max, n_min, n_anneal_frames"),
    ({"disa": {"n_max": 2, "n_min": 3, "n_anneal_frames": 4}}, r"^schedule: disa needs 1 <= n_min <= n_max"),
])
def test_bad_session_arguments(kwargs, message):
    bundle, _ = tiny_bundle()
    with pytest.raises(ValueError, match=message):
        Session(bundle, **kwargs)


def test_closed_session():
    bundle, _ = tiny_bundle()
    s = Session(bundle, backend="ort-cpu", threads=1)
    s.close()
    with pytest.raises(ValueError, match=r"^session: closed$"):
        s.step(0)


def test_cuda_backend_unavailable_on_a_cpu_wheel():
    bundle, _ = tiny_bundle()
    if "CUDAExecutionProvider" in _core.ort_library_info()["providers"]:
        pytest.skip("this onnxruntime has the CUDA provider; the error path needs a CPU-only wheel")
    with pytest.raises(RuntimeError, match=r"^engine_ort: CUDAExecutionProvider not in onnxruntime [0-9.]+ at '.*' "
                                           r"\(available: .*CPUExecutionProvider.*\); install onnxruntime-gpu"):
        Session(bundle, backend="ort-cuda")


def _python(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_ort_library_not_found():
    """libonnxruntime is loaded once per process, so the failure paths run in a fresh interpreter."""
    bundle, _ = tiny_bundle()
    code = ("from nextframe.runtime import Session\n"
            "try:\n"
            f"    Session({bundle!r}, backend='ort-cpu', ort_lib='/nonexistent/libonnxruntime.so')\n"
            "except RuntimeError as e:\n"
            "    print('RuntimeError:', e)\n")
    done = _python(code, {"NEXTFRAME_ORT_LIB": ""})
    assert done.stdout.startswith("RuntimeError: ort_api: cannot load '/nonexistent/libonnxruntime.so' ("), done.stderr
    assert "; set NEXTFRAME_ORT_LIB or pip install onnxruntime" in done.stdout
    done = _python(code.replace("ort_lib='/nonexistent/libonnxruntime.so'", "ort_lib=''"),
                   {"NEXTFRAME_ORT_LIB": "/nonexistent/env.so"})
    assert done.stdout.startswith("RuntimeError: ort_api: cannot load NEXTFRAME_ORT_LIB='/nonexistent/env.so' ("), done.stderr
    done = _python(code.replace("ort_lib='/nonexistent/libonnxruntime.so'", "ort_lib=''"), {"NEXTFRAME_ORT_LIB": ""})
    assert done.stdout == "RuntimeError: ort_api: libonnxruntime not found; set NEXTFRAME_ORT_LIB or pip install onnxruntime\n", done.stderr
