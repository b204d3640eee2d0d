"""A bundle is untrusted input (Bundle::open): a graph that is a symbolic link (to /dev/zero, to a file outside
the bundle, even to one inside it), a FIFO, a directory listed as a file, a graph in a subdirectory that is a
link leaving the bundle, a file far larger than the manifest says, an oversized or non-regular manifest.json:
each is refused in one line, at once (no hang on a FIFO or /dev/zero, no hashing of a file whose size is
wrong)."""
from __future__ import annotations

import hashlib
import os
import shutil
import time

import pytest

from nextframe import _core
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
