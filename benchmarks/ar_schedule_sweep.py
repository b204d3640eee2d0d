"""Which head schedule to ship: the teacher at several fixed step counts and DiSA variants from several starting
counts, all in one bundle of the same weights, measured by benchmarks/ar_image_table.py in one run (Frechet
distance, class accuracy, images/s through the C++ runtime). Its result is the ablation behind the shipped
schedules (README, "AR image model").

    python -m nextframe.benchmarks.ar_schedule_sweep --model M --n-ar-steps 8 --out sweep.json -- <ar_image_table args>
"""
from __future__ import annotations

import argparse
import os
import tempfile

from nextframe.benchmarks.ar_image_table import main as table
from nextframe.export.ar_bundle import export_ar_bundle
from nextframe.models.mar_schedules import HeadSchedule
from nextframe.training.mar_checkpoint import load_mar


def sweep_schedules(fixed=(50, 25, 20, 10, 5, 3),
                    disa=((50, 2), (25, 2), (20, 2), (12, 2), (20, 5), (30, 4), (25, 6))) -> dict[str, HeadSchedule]:
    s = {f"fixed_{t}": HeadSchedule("constant", t, t) for t in fixed}
    for hi, lo in disa:
        for kind in ("linear", "cosine", "two_stage"):
            s[f"{kind}_{hi}_{lo}"] = HeadSchedule(kind, hi, lo)
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-ar-steps", type=int, default=8)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", nargs="*", default=None, help="a subset of the sweep's schedules (default: all)")
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="after --: ar_image_table arguments (data, classifier, counts)")
    args = ap.parse_args(argv)
    schedules = sweep_schedules()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "bundle")
        export_ar_bundle(load_mar(args.model).float(), bundle, schedules, "fixed_50", args.n_ar_steps)
        rest = [a for a in args.rest if a != "--"]
        rows = args.rows or list(schedules)
        table(["--bundle", bundle, "--rows", *rows, "--base", "fixed_50", "--out", args.out, "--markdown", *rest])


if __name__ == "__main__":
    main()
