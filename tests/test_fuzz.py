"""The seeded mutation fuzzer (tests/fuzz_harness.py) over the bundle loader and the episode reader, in a child
process so that a crash fails the test with its output instead of killing pytest: a fixed set of cases here, a
five-minute run with -m slow. Any exception other than a one-line ValueError / RuntimeError / FileNotFoundError
naming its reader, or a case slower than 10 s, is a finding; the finding's seed replays it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _fuzz(seconds: float, seed: int, max_cases: int | None) -> dict:
    code = (f"import sys, json; sys.path.insert(0, {str(HERE)!r})\nimport fuzz_harness\n"
            f"print(json.dumps(fuzz_harness.run({seconds}, {seed}, max_cases={max_cases})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds + 300, cwd=HERE.parent)
    assert r.returncode == 0, f"fuzzer crashed (signal or exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_fuzz_fixed_cases():
    result = _fuzz(120.0, seed=7, max_cases=400)
    assert result["findings"] == [], result["findings"][:5]
    assert result["cases"] == 400 and result["refused"] > 300  # the mutations reach the checks


@pytest.mark.slow
def test_fuzz_five_minutes():
    result = _fuzz(300.0, seed=11, max_cases=None)
    assert result["findings"] == [], result["findings"][:5]
    assert result["cases"] > 5000
