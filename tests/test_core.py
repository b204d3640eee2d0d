"""Pins the compiled core's packaging and error mapping.

``nextframe._core`` imports from the installed package and reports the same version as the
package metadata (single-sourced from pyproject via SKBUILD_PROJECT_VERSION); ``ring_slot`` gives
the hand-worked ring indices; nf::InvalidArgument arrives as ValueError with the STYLE.md message
shape (one line, ``<concept>: ...``, no trailing period). The last test configures and builds the
plain C++ tests (tests/cpp) with ``-DNF_BUILD_TESTS=ON`` in a temporary directory and runs them
under ctest (a few seconds on 2 cores).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nextframe
import nextframe._core as core

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_version_matches_package_metadata():
    expected = importlib.metadata.version("nextframe")
    assert core.__version__ == expected
    assert core.version() == expected
    assert nextframe.__version__ == expected


def test_core_lives_in_the_nextframe_package():
    assert core.__name__ == "nextframe._core"
    assert Path(core.__file__).parent.name == "nextframe"


def test_build_info_is_one_line():
    info = core.build_info()
    assert info.startswith(f"nextframe {core.version()}; ")
    assert "C++ " in info
    assert "\n" not in info


def test_runtime_reexports_core_version():
    from nextframe.runtime import core_version

    assert core_version() == core.version()


@pytest.mark.parametrize(
    ("pos", "n_slots", "slot"),
    [(0, 4, 0), (3, 4, 3), (4, 4, 0), (10, 4, 2), (7, 1, 0), (5, 7, 5), (2**40, 3, 1)],
)
def test_ring_slot_values(pos, n_slots, slot):
    assert core.ring_slot(pos, n_slots) == slot


def test_ring_slot_keyword_arguments():
    assert core.ring_slot(pos=10, n_slots=4) == 2


@pytest.mark.parametrize(
    ("pos", "n_slots", "message"),
    [
        (1, 0, "kv_cache: n_slots must be positive (got 0)"),
        (1, -3, "kv_cache: n_slots must be positive (got -3)"),
        (-1, 4, "kv_cache: pos must be non-negative (got -1)"),
    ],
)
def test_ring_slot_errors_are_value_errors(pos, n_slots, message):
    with pytest.raises(ValueError, match=r"^kv_cache: ") as info:
        core.ring_slot(pos, n_slots)
    assert str(info.value) == message
    assert "\n" not in str(info.value)
    assert not str(info.value).endswith(".")


def test_ring_slot_n_slots_zero_message_prefix():
    with pytest.raises(ValueError, match=r"^kv_cache: n_slots must be positive"):
        core.ring_slot(10, 0)


def _cmake() -> str | None:
    # A pip-installed cmake sits next to the interpreter; prefer the one on PATH as make does.
    return shutil.which("cmake") or shutil.which("cmake", path=os.path.dirname(sys.executable))


def test_cpp_unit_tests_pass_under_ctest(tmp_path):
    cmake = _cmake()
    if cmake is None:
        pytest.skip("cmake not found on PATH or in the venv; `make test` installs it and runs ctest")
    ctest = shutil.which("ctest", path=os.path.dirname(cmake))
    assert ctest is not None, f"ctest not found next to {cmake}"
    pybind11 = pytest.importorskip("pybind11", reason="pybind11 (a build requirement) not installed in this env")

    build = tmp_path / "cpp-tests"
    build.mkdir()
    configure = [
        cmake, "-S", str(REPO_ROOT), "-B", str(build),
        "-DNF_BUILD_TESTS=ON",
        "-DCMAKE_BUILD_TYPE=Release",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}",
    ]
    for cmd in (
        configure,
        [cmake, "--build", str(build), "--target", "nf_tests", "-j", "2"],
        [ctest, "--output-on-failure"],
    ):
        done = subprocess.run(cmd, cwd=build, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
