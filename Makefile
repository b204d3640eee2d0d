# Developer entry points: `make venv`, `make test`, `make demo`, `make clean`.
#
# The venv holds an editable install (scikit-build-core): Python files under nextframe/, runtime/,
# export/, ... are live, but the C++ extension nextframe._core is compiled at install time. The stamp
# below depends on pyproject.toml, CMakeLists.txt and csrc/*, so after a C++ change `make venv`
# (and so `make test`) re-runs the editable install, which rebuilds _core incrementally in
# build/<wheel_tag>. Only Python changes? Nothing is reinstalled.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.stamp
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
# torch's exact pin is read from pyproject.toml (single source). pip takes the CPU wheel from the local
# wheel dir here; elsewhere pass TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# to keep the default install CPU-only.
TORCH_PIN      := $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
TORCH_PIP_ARGS ?=
# System cmake if there is one, else the pip one `make venv` puts in the venv (evaluated when used).
CMAKE = $(or $(shell command -v cmake 2>/dev/null),$(abspath $(VENV))/bin/cmake)
CTEST = $(dir $(CMAKE))ctest
CPP_BUILD := build/cpp-tests

.PHONY: venv test test-cpp test-py demo clean distclean

venv: $(STAMP)

# torch goes in first so the CPU build is the one that satisfies the pin. The build requirements also
# live in the venv, because test-cpp configures CMake with the venv's pybind11.
$(STAMP): pyproject.toml CMakeLists.txt $(wildcard csrc/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH_PIN)" $(TORCH_PIP_ARGS)
	$(PIP) install "scikit-build-core>=0.10" "pybind11>=2.12"
	command -v cmake >/dev/null 2>&1 || $(PIP) install "cmake>=3.18"
	$(PIP) install -e ".[train,test,quant,bench]" \
		--config-settings=cmake.define.NF_TORCH_PREFIX="$$($(PY) -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
	touch $@

# C++ tests first, then pytest (sequential even under make -j).
test: venv
	$(MAKE) --no-print-directory test-cpp
	$(MAKE) --no-print-directory test-py

test-cpp: venv
	$(CMAKE) -S . -B $(CPP_BUILD) -DNF_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release \
		-DPython_EXECUTABLE=$(abspath $(PY)) -Dpybind11_DIR="$$($(PY) -m pybind11 --cmakedir)"
	$(CMAKE) --build $(CPP_BUILD) --target nf_tests -j $(JOBS)
	cd $(CPP_BUILD) && $(CTEST) --output-on-failure

# `slow` runs are left out (run them with: .venv/bin/python -m pytest -m slow).
test-py: venv
	$(PY) -m pytest -q -m "not slow"

demo: venv
	$(VENV)/bin/nextframe demo --out runs/demo

# Build outputs only; runs/ and data_cache/ hold results and are kept. distclean also drops the venv.
clean:
	rm -rf build dist .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
