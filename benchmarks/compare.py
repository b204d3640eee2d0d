"""The cross-device latency table: every results file in benchmarks/results/ that times frame loops (nextframe bench:
the C++ runtime next to the PyTorch loops; bench --backend: one bundle on several backends; bench A B: several
bundles; device/run.sh's GPU runs) becomes rows of device x backend x model, rendered as one markdown table and a
PNG of FPS and p99 latency per device and backend.

    python benchmarks/compare.py [--results benchmarks/results] [--markdown out.md] [--png out.png]

Each row names its source file: numbers from different runs of a noisy machine are context, ratios within one
file are the measurement (README, "Benchmarks").
"""
from __future__ import annotations

import argparse
import glob
import json
import os

from nextframe.benchmarks.device_info import device_label, is_gpu_backend

# frame_loop's loop names, as a reader of the table knows them
LOOP_NAMES = {"cpp_runtime": "C++ runtime (ort-cpu)", "cpp_runtime_step_graph_only": "C++ runtime, step graph only",
              "python_ort_loop": "Python ORT loop", "torch_eager_cached": "PyTorch eager (cached)",
              "torch_eager_no_cache": "PyTorch eager (no cache)"}


def _steps(n) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _model(d: dict, fallback: str) -> str:
    m = d.get("model")
    if isinstance(m, dict):
        h, w = m.get("resolution", ["?", "?"])
        return f"{m.get('arch', '?')} {h}x{w}, {_steps(m.get('n_steps', '?'))}"
    if "model_arch" in d or "resolution" in d:
        # files written before model_arch was recorded timed the transformer, the only model then ("dit" now)
        h, w = d.get("resolution", ["?", "?"])
        return f"{d.get('model_arch', 'dit')} {h}x{w}, {_steps(d.get('n_steps', '?'))}"
    return fallback


def rows_of(path: str, variants: bool = False) -> list[dict]:
    """The timing rows of one results file ([] for files that time no frame loop); variants: also the bundle-variant
    runs (bench A B ..., quantization tables), which compare bundles on one machine rather than machines."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return []
    if isinstance(d, dict) and isinstance(d.get("result"), dict):  # {"note", "result"}: a bench run kept with a note
        d = d["result"]
    if not isinstance(d, dict) or not isinstance(d.get("device"), dict):
        return []
    device, src = device_label(d["device"]), os.path.basename(path)
    # a bench run with GPU backends beside CPU ones names the GPU apart (device_info.is_gpu_backend)
    gpu = device_label(d["gpu"]) if isinstance(d.get("gpu"), dict) and d["gpu"].get("gpu") else None
    threads = d.get("threads")
    out = []

    def row(backend, model, r, precision=None, n_threads=threads):
        if isinstance(r, dict) and isinstance(r.get("fps"), (int, float)):
            where = gpu if gpu and is_gpu_backend(backend) else device
            out.append({"device": where, "backend": backend, "model": model, "precision": precision or r.get("precision")
                        or d.get("precision") or "fp32", "threads": n_threads, "fps": r["fps"],
                        "p50_ms": r.get("latency_p50_ms"), "p99_ms": r.get("latency_p99_ms"), "source": src})

    if isinstance(d.get("loops"), dict):  # nextframe bench (frame_loop)
        for name, r in d["loops"].items():
            row(LOOP_NAMES.get(name, name), _model(d, "default"), r)
    if isinstance(d.get("backends"), dict):  # bench --backend, device/run.sh
        for name, r in d["backends"].items():
            row(name, _model(d, os.path.basename(str(d.get("bundle", "?")))), r)
    if not variants:
        return out
    if isinstance(d.get("bundles"), dict) and d.get("timing", "").startswith("C++ runtime"):  # bench A B ...
        for name, r in d["bundles"].items():
            row("ort-cpu", name, r)
    if d.get("benchmark") == "quant_methods":  # each source's FP32 and quantized bundles, per thread count
        for source, block in d.get("sources", {}).items():
            for variant, r in block.get("rows", {}).items():
                precision = "fp32" if variant == "fp32" else f"{r.get('precision', 'int8')} {variant}"
                by_threads = r.get("fps_by_threads") or ({threads: r["fps"]} if isinstance(r.get("fps"), dict) else {})
                for n, t in by_threads.items():
                    row("ort-cpu", source, t, precision, int(n) if str(n).isdigit() else threads)
    return out


def collect(results_dir: str, variants: bool = False) -> list[dict]:
    rows = []
    for p in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        rows += rows_of(p, variants)
    return sorted(rows, key=lambda r: (r["model"], r["device"], -r["fps"]))


def markdown(rows: list[dict]) -> str:
    lines = ["| model | device | backend | precision | threads | FPS | p50 ms | p99 ms | source |",
             "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['model']} | {r['device']} | {r['backend']} | {r['precision']} | {fmt(r['threads'])} | "
                     f"{r['fps']:g} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | `{r['source']}` |")
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- cross-device table: python benchmarks/compare.py --readme README.md -->"
README_END = "<!-- end of the cross-device table -->"


def readme_block(text: str) -> tuple[int, int]:
    """Where the table sits in the README's text: (start, end) between the two markers."""
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"compare: the README has no '{README_BEGIN}' ... '{README_END}' block")
    return start + len(README_BEGIN) + 1, end


def plot(rows: list[dict], path: str) -> None:
    """FPS and p99 per device x backend, one bar pair per row (log scale: CPUs and GPUs differ 10-100x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['device'][:28]} | {r['backend']} | {r['model'][:22]} | {r['source'][:26]}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(15, 0.32 * len(rows) + 1.5), sharey=True)
    y = range(len(rows))
    axes[0].barh(y, [r["fps"] for r in rows], color="tab:blue")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("frames per second (log)")
    axes[1].barh(y, [r["p99_ms"] or 0 for r in rows], color="tab:orange")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("p99 latency, ms (log)")
    axes[0].set_yticks(list(y), labels, fontsize=7)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--markdown", default=None, help="write the table here (default: print it)")
    ap.add_argument("--readme", default=None, help="replace the table between the README's markers with this one")
    ap.add_argument("--png", default=None, help="also write the plot here (needs matplotlib: the bench extra)")
    ap.add_argument("--variants", action="store_true",
                    help="also the bundle-variant runs (bench A B ..., quantization tables) of each machine")
    args = ap.parse_args(argv)
    rows = collect(args.results, args.variants)
    if not rows:
        raise SystemExit(f"compare: no frame-loop timing in {args.results}")
    table = markdown(rows)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    if args.readme:
        with open(args.readme) as f:
            text = f.read()
        start, end = readme_block(text)
        with open(args.readme, "w") as f:
            f.write(text[:start] + table + text[end:])
    if not (args.markdown or args.readme):
        print(table, end="")
    if args.png:
        plot(rows, args.png)


if __name__ == "__main__":
    main()
