"""A bundle is untrusted input (Bundle::open): a graph that is a symbolic link (to /dev/zero, to a file outside
the bundle, even to one inside it), a FIFO, a directory listed as a file, a graph in a subdirectory that is a
link leaving the bundle, a file far larger than the manifest says, an oversized or non-regular manifest.json:
each is refused in one line, at once (no hang on a FIFO or /dev/zero, no hashing of a file whose size is
wrong). Sizes are bounded before use, graphs load from the bytes that were hashed (no external data), and
Ctrl-C interrupts the hashing of a large bundle."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from nextframe import _core
from nextframe.runtime import find_ort_lib
from runtime_helpers import copy_bundle, read_manifest, write_manifest


def _refused(path, message: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as e:
        _core.Bundle.open(str(path))
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert time.perf_counter() - t0 < 5.0  # refused at once, nothing read to the end


def test_graph_symlinked_to_dev_zero(tmp_path):
    b = copy_bundle(tmp_path / "b")
    (b / "step.onnx").unlink()
    os.symlink("/dev/zero", b / "step.onnx")
    _refused(b, "file 'step.onnx' is a symbolic link")


def test_graph_symlinked_outside_or_inside(tmp_path):
    b = copy_bundle(tmp_path / "b")
    shutil.move(b / "step.onnx", tmp_path / "elsewhere.onnx")
    os.symlink(tmp_path / "elsewhere.onnx", b / "step.onnx")
    _refused(b, "file 'step.onnx' is a symbolic link")
    os.unlink(b / "step.onnx")
    shutil.move(tmp_path / "elsewhere.onnx", b / "real.onnx")
    os.symlink("real.onnx", b / "step.onnx")  # inside the bundle, still a link: refused
    _refused(b, "is a symbolic link")


def test_graph_is_a_fifo_or_a_directory(tmp_path):
    b = copy_bundle(tmp_path / "b")
    (b / "step.onnx").unlink()
    os.mkfifo(b / "step.onnx")
    _refused(b, "file 'step.onnx' is not a regular file")
    os.unlink(b / "step.onnx")
    (b / "step.onnx").mkdir()
    _refused(b, "file 'step.onnx' is not a regular file")


def test_subdirectory_linked_outside(tmp_path):
    b = copy_bundle(tmp_path / "b")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(b / "step.onnx", outside / "step.onnx")
    os.symlink(outside, b / "graphs")
    m = read_manifest(b)
    m["files"]["graphs/step.onnx"] = m["files"].pop("step.onnx")
    m["graphs"]["step"]["file"] = "graphs/step.onnx"
    write_manifest(b, m)
    _refused(b, "file 'graphs/step.onnx' resolves outside the bundle")


def test_size_is_checked_before_hashing(tmp_path):
    b = copy_bundle(tmp_path / "b")
    with open(b / "step.onnx", "ab") as f:  # 64 MB more than listed: refused by size, not hashed
        f.truncate(os.path.getsize(b / "step.onnx") + (64 << 20))
    _refused(b, "file 'step.onnx' has")


def test_manifest_too_large_or_not_a_file(tmp_path):
    b = copy_bundle(tmp_path / "b")
    with open(b / "manifest.json", "ab") as f:
        f.write(b" " * (5 << 20))
    _refused(b, "manifest.json is")
    (b / "manifest.json").unlink()
    os.mkfifo(b / "manifest.json")
    _refused(b, "manifest.json in")
    _refused(tmp_path / "nope", "is not a directory")


def test_a_good_bundle_still_opens(tmp_path):
    b = copy_bundle(tmp_path / "b")
    assert _core.Bundle.open(str(b)).game
    assert hashlib.sha256((b / "manifest.json").read_bytes()).hexdigest()


def _relist(b, name: str) -> None:
    m = read_manifest(b)
    data = (b / name).read_bytes()
    m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    write_manifest(b, m)


def test_graph_with_external_data_is_refused(tmp_path):
    """A graph whose weights live in a side file could make the backend read files the checks never saw: bundle
    graphs are loaded from memory, where ONNX external data cannot resolve, so such a graph is refused in one line
    even when both files are listed and hashed."""
    import onnx

    b = copy_bundle(tmp_path / "b")
    model = onnx.load(str(b / "step.onnx"))
    onnx.save_model(model, str(b / "step.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="step.data", size_threshold=0)
    _relist(b, "step.onnx")
    _relist(b, "step.data")
    bundle = _core.Bundle.open(str(b))  # every listed file checks out
    with pytest.raises(RuntimeError) as e:
        _core.FrameLoop(bundle, backend="ort-cpu", ort_lib=find_ort_lib())
    assert "cannot load graph 'step.onnx'" in str(e.value) and "external data" in str(e.value)
    assert "\n" not in str(e.value)


def test_graph_replaced_after_open_is_refused(tmp_path):
    """What the backend loads is what was hashed: a graph swapped between open() and the engine is caught."""
    b = copy_bundle(tmp_path / "b")
    bundle = _core.Bundle.open(str(b))
    data = bytearray((b / "step.onnx").read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    (b / "step.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="file 'step.onnx' sha256 mismatch .*changed after the bundle was opened"):
        _core.FrameLoop(bundle, backend="ort-cpu", ort_lib=find_ort_lib())


@pytest.mark.parametrize("section, key, value, message", [
    ("frame", "height", 1 << 40, "manifest key 'frame.height' is 1099511627776 (at most 8192)"),
    ("frame", "channels", 1000, "manifest key 'frame.channels' is 1000 (at most 4)"),
    ("model", "n_actions", 10**6, "manifest key 'model.n_actions' is 1000000 (at most 1024)"),
    ("sampler", "n_steps", 10**9, "manifest key 'sampler.n_steps' is 1000000000 (at most 1000)"),
])
def test_sizes_are_bounded_before_use(tmp_path, section, key, value, message):
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    m[section][key] = value
    write_manifest(b, m)
    _refused(b, message)


def test_size_products_are_bounded(tmp_path):
    """Each side within bounds, their product not: refused before anything is sized from it."""
    b = copy_bundle(tmp_path / "b")
    m = read_manifest(b)
    m["frame"].update(channels=4, height=8192, width=8192)  # 2^28 floats per frame
    write_manifest(b, m)
    _refused(b, "frame channels x height x width exceeds")


def test_ctrl_c_interrupts_opening_a_large_bundle(tmp_path):
    """Opening hashes every listed file with the GIL released; Ctrl-C must not wait for a multi-GB graph."""
    b = copy_bundle(tmp_path / "b")
    size = 6 << 30  # sparse: no disk used, but hashing reads 6 GiB (many seconds)
    with open(b / "step.onnx", "r+b") as f:
        f.truncate(size)
    m = read_manifest(b)
    m["files"]["step.onnx"]["bytes"] = size
    write_manifest(b, m)
    # the child's Ctrl-C handler set explicitly: a process started with SIGINT ignored (as the test runner can be,
    # after some libraries' worker pools) would pass that on, and the open would finish unasked
    code = ("import signal, sys, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from nextframe import _core\nprint('ready', flush=True)\nt = time.time()\n"
            f"try:\n    _core.Bundle.open({str(b)!r})\nexcept KeyboardInterrupt:\n"
            "    print('interrupted', round(time.time() - t, 2), flush=True); sys.exit(130)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    t0 = time.perf_counter()
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130 and out.startswith("interrupted"), out
    assert time.perf_counter() - t0 < 2.0
