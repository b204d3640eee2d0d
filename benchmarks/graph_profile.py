"""Where a bundle's step graph spends its time, by ONNX Runtime operator type: the share of matrix products (what
INT8 and W4A8 speed up) against everything else (reshapes, concatenations, element-wise ops, normalisation), and the
speed-up the products' share allows (Amdahl: 1 / (other + products / k) for products k times faster).

ONNX Runtime's own profiler (per-node kernel times) over `--runs` calls of the graph on random inputs of the declared
shapes, one thread, after the same graph optimisations the C++ core asks for (ORT_ENABLE_ALL).

    python -m nextframe.benchmarks.graph_profile BUNDLE [BUNDLE ...] [--runs 200] [--out results/graph_profile.json]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np

PRODUCTS = ("Gemm", "Conv", "MatMul", "FusedMatMul", "FusedConv", "QGemm", "QLinearConv", "QLinearMatMul",
            "MatMulInteger", "ConvInteger", "MatMulNBits", "DynamicQuantizeMatMul", "NhwcFusedConv")


def random_feed(session, rng: np.random.Generator) -> dict:
    feed = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        if "int64" in i.type:
            feed[i.name] = np.zeros(shape, np.int64)
        else:
            feed[i.name] = (rng.standard_normal(shape) * 0.5).astype(np.float32)
    if "ages" in feed:  # a full cache window: every slot attended but the newest
        feed["ages"] = np.arange(1, feed["ages"].size + 1, dtype=np.int64) % feed["ages"].size
    if "t" in feed:
        feed["t"] = np.ones_like(feed["t"])
    return feed


def profile_graph(path: str, runs: int, seed: int = 0) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="nf_profile_"), "p")
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = random_feed(s, np.random.default_rng(seed))
    for _ in range(10):  # warm-up, inside the profile but a small share of it
        s.run(None, feed)
    for _ in range(runs):
        s.run(None, feed)
    trace = s.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    us, nodes = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            us[e["args"]["op_name"]] += e["dur"]
            nodes[e["args"]["op_name"]] += 1
    n = runs + 10
    total = sum(us.values())
    products = sum(v for k, v in us.items() if k in PRODUCTS)
    share = products / total
    return {"ms_per_call": round(total / n / 1000, 3), "nodes_per_call": round(sum(nodes.values()) / n),
            "product_share": round(share, 3),
            "amdahl_speedup_if_products_x2": round(1 / ((1 - share) + share / 2), 3),
            "amdahl_speedup_if_products_x4": round(1 / ((1 - share) + share / 4), 3),
            "by_op": {k: {"ms": round(v / n / 1000, 3), "share": round(v / total, 3), "nodes": nodes[k] // n}
                      for k, v in us.most_common(15)}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="+")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from nextframe.benchmarks.device_info import cpu_info
    from nextframe.benchmarks.result_file import write_result

    out = {"device": cpu_info(), "threads": 1, "runs": args.runs, "bundles": {}}
    for b in args.bundle:
        with open(os.path.join(b, "manifest.json")) as f:
            m = json.load(f)
        out["bundles"][b] = {name: profile_graph(os.path.join(b, g["file"]), args.runs)
                             for name, g in m["graphs"].items()}
    write_result(args.out, out)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
