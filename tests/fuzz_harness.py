"""Seeded mutation fuzzing of the two readers that take files from outside: the bundle loader (Bundle::open, then
a session that resets and steps) and the episode reader (load_episode).

Each case mutates a valid input (JSON-level edits of manifest.json: values of other types, huge, negative, NaN,
deleted keys, deep nesting; byte flips, insertions and truncations of the manifest, of a graph whose listing is
fixed up so the graph itself is read, and of an episode archive) and runs the reader in this process. Allowed
outcomes: success, or ValueError / RuntimeError / FileNotFoundError with a one-line message naming the reader.
Anything else (another exception type, a multi-line message, a case slower than the limit, and a crash, which
kills the child process the tests run this in) is a finding, reported with the case's seed so it replays.

    python tests/fuzz_harness.py --seconds 600 [--seed 0]     # long run; tests run a short one (and -m slow)
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ALLOWED = (ValueError, RuntimeError, FileNotFoundError)
PREFIXES = ("bundle:", "engine", "frame_loop:", "sha256:", "noise:", "session:", "episode:", "kv_cache:", "graph",
            "sampler:", "schedule:", "native_decoder:", "ort_api:", "stats:", "json:")
CASE_LIMIT_S = 10.0
WEIRD = [None, True, -1, 0, 2**31, 2**63 - 1, -(2**63), 1e308, -1e-308, "", "x" * 300, [], {}, [1, 2], {"a": 1},
         "NaN", 0.5, -0.5, 3]


def _mutate_json(rng: random.Random, node, depth: int = 0):
    """One random edit somewhere in a JSON tree (in place where possible); returns the (possibly new) root."""
    if isinstance(node, dict) and node and rng.random() < 0.8:
        key = rng.choice(sorted(node))
        op = rng.random()
        if op < 0.15:
            del node[key]
        elif op < 0.6 and depth < 6:
            node[key] = _mutate_json(rng, node[key], depth + 1)
        elif op < 0.7:
            node[key] = _nest(rng.randint(100, 400))
        else:
            node[key] = copy.deepcopy(rng.choice(WEIRD))
        return node
    if isinstance(node, list) and node and rng.random() < 0.8:
        i = rng.randrange(len(node))
        op = rng.random()
        if op < 0.2:
            del node[i]
        elif op < 0.3:
            node.append(copy.deepcopy(node[i]))
        elif depth < 6:
            node[i] = _mutate_json(rng, node[i], depth + 1)
        return node
    return copy.deepcopy(rng.choice(WEIRD))


def _nest(n: int):
    v: object = 1
    for _ in range(n):
        v = [v]
    return v


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.random()
    if op < 0.5:
        for _ in range(rng.randint(1, 8)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
    elif op < 0.75:
        b = b[: rng.randrange(len(b) + 1)]
    else:
        at = rng.randrange(len(b) + 1)
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(b)


def _relist(bundle: Path, name: str) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    data = (bundle / name).read_bytes()
    m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (bundle / "manifest.json").write_text(json.dumps(m))


def _bundle_case(src: Path, work: Path, rng: random.Random) -> None:
    from nextframe.runtime import Session

    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work)
    kind = rng.random()
    if kind < 0.6:
        m = json.loads((work / "manifest.json").read_text())
        for _ in range(rng.randint(1, 3)):
            m = _mutate_json(rng, m)
        (work / "manifest.json").write_text(json.dumps(m))
    elif kind < 0.8:
        (work / "manifest.json").write_bytes(_mutate_bytes(rng, (work / "manifest.json").read_bytes()))
    else:
        graph = rng.choice(sorted(p.name for p in work.glob("*.onnx")))
        (work / graph).write_bytes(_mutate_bytes(rng, (work / graph).read_bytes()))
        _relist(work, graph)  # the listing is fixed up: the graph reader itself must cope
    with Session(str(work), backend="ort-cpu", threads=1) as s:
        s.reset(np.zeros((2, s.height, s.width, s.channels), np.uint8), [s.no_action, 0])
        s.step(0)


def _episode_case(src: Path, work: Path, rng: random.Random) -> None:
    from nextframe.data.episode import load_episode

    data = src.read_bytes()
    work.write_bytes(_mutate_bytes(rng, data))
    load_episode(work)


def run(seconds: float, seed: int = 0, bundle: str | None = None, episode: str | None = None,
        max_cases: int | None = None) -> dict:
    """Fuzz for `seconds` (or max_cases); returns counts by outcome and the findings (seed, kind, problem)."""
    from conftest import square_episode
    from nextframe.data.episode import save_episode

    tmp = Path(tempfile.mkdtemp(prefix="nf_fuzz_"))
    try:
        if bundle is None:
            from runtime_helpers import tiny_bundle

            bundle, _ = tiny_bundle()
        if episode is None:
            episode = str(tmp / "ep.npz")
            save_episode(episode, square_episode(6, 0))
        counts = {"ok": 0, "refused": 0}
        findings = []
        t_end, i = time.monotonic() + seconds, 0
        while time.monotonic() < t_end and (max_cases is None or i < max_cases):
            case_seed = seed * 1_000_003 + i
            rng = random.Random(case_seed)
            kind = "bundle" if rng.random() < 0.6 else "episode"
            t0 = time.monotonic()
            try:
                if kind == "bundle":
                    _bundle_case(Path(bundle), tmp / "b", rng)
                else:
                    _episode_case(Path(episode), tmp / "e.npz", rng)
                counts["ok"] += 1
            except ALLOWED as e:
                msg = str(e)
                if "\n" in msg or not msg.startswith(PREFIXES):
                    findings.append((case_seed, kind, f"{type(e).__name__}: {msg[:300]!r}"))
                else:
                    counts["refused"] += 1
            except Exception as e:  # noqa: BLE001 - every other type is a finding
                findings.append((case_seed, kind, f"{type(e).__name__}: {str(e)[:300]!r}"))
            if time.monotonic() - t0 > CASE_LIMIT_S:
                findings.append((case_seed, kind, f"took {time.monotonic() - t0:.1f} s"))
            i += 1
        return {"cases": i, **counts, "findings": findings}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    result = run(a.seconds, a.seed)
    print(json.dumps(result))
    sys.exit(1 if result["findings"] else 0)
