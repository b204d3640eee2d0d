"""The AR image model's table in one run: every head schedule of a bundle (the teacher at fixed steps, DiSA linear /
cosine / two-stage, the constant schedule with DiSA's budget) and the Distilled Decoding student in one and two
calls, each through the C++ runtime on this machine, with quality measured the same way for all:

- Frechet distance (FID's formula) on the features of a game classifier trained here on real frames
  (evaluation/game_classifier.py), per class against held-out real frames, averaged over classes; the same seeds
  and the same number of images per class for every row (the distance is biased by the count), and a row of real
  training frames at that count as the floor;
- class accuracy: the classifier's prediction on each generated image against the class asked for;
- images per second through ImageSession (C++ masked-AR loop, ONNX Runtime CPU), head evaluations per image, and
  both as ratios to the fixed-step teacher's row.

    python -m nextframe.benchmarks.ar_image_table --bundle B --train-data DIR --heldout DIR --out results.json

Prints the JSON (device named: CPU model and flags); --grids DIR writes one PNG per row (4 images per class).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from nextframe.benchmarks.device_info import cpu_info, versions
from nextframe.benchmarks.result_file import write_result
from nextframe.data.image_set import cached_image_set, load_image_set
from nextframe.evaluation.frechet import per_class_frechet
from nextframe.evaluation.game_classifier import (features_and_predictions, load_classifier, save_classifier,
                                                  train_classifier)
from nextframe.runtime.image_session import ImageSession
from nextframe.runtime.png import grid, write_png


def classifier_for(path: str, train_cache: str, train_dirs, classes, steps: int) -> tuple:
    if os.path.isfile(path):
        return load_classifier(path), None
    images, labels = cached_image_set(train_cache, train_dirs, classes)
    torch.manual_seed(0)
    model = train_classifier(images, labels, classes, steps=steps)
    save_classifier(model, path)
    return model, (images, labels)


def subsample_per_class(images, labels, n, n_classes, seed):
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), n, replace=False) for c in range(n_classes)])
    return images[idx], labels[idx]


def add_ratios(rows: list[dict], base_row: str, classes: list[str]) -> None:
    """Speed, head evaluations and Frechet distance of every generated row against the base row (the fixed-step
    teacher), in place."""
    base = next((r for r in rows if r["row"] == base_row), None)
    if base is None:
        return
    for r in rows:
        if "mode" not in r:
            continue
        r["speedup_vs_fixed"] = r["images_per_s"] / base["images_per_s"]
        r["head_evaluations_ratio_vs_fixed"] = (base["head_evaluations_per_image"] / r["head_evaluations_per_image"]
                                                if r["head_evaluations_per_image"] else None)
        r["frechet_vs_fixed"] = r["frechet"] / base["frechet"]
        # per class, then the geometric mean and the worst: the mean distance is dominated by the class whose
        # held-out frames sit farthest from anything (Pong here), which hides a class that got worse
        ratios = [r["frechet_per_class"][c] / base["frechet_per_class"][c] for c in classes]
        r["frechet_per_class_vs_fixed_geomean"] = float(np.exp(np.mean(np.log(ratios))))
        r["frechet_per_class_vs_fixed_worst"] = float(max(ratios))


def markdown(result: dict) -> str:
    """The README table of a result."""
    lines = ["| row | head steps per AR step | head evals / image | Frechet distance (mean of classes) | vs fixed: mean / "
             "per class, geo-mean / worst | class accuracy | images/s | speed-up |", "|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for r in result["rows"]:
        if "mode" not in r:
            lines.append(f"| {r['row']} | | | {r['frechet']:.4f} | | {r['class_accuracy']:.3f} | | |")
            continue
        steps = ", ".join(map(str, r["head_steps"])) if r["mode"] == "ar" else f"student, {r['mode'][-1]} call(s)"
        lines.append(f"| {r['row']} | {steps} | {r['head_evaluations_per_image']:.0f} | {r['frechet']:.4f} | "
                     f"{r.get('frechet_vs_fixed', nan):.2f}x / {r.get('frechet_per_class_vs_fixed_geomean', nan):.2f}x / "
                     f"{r.get('frechet_per_class_vs_fixed_worst', nan):.2f}x | {r['class_accuracy']:.3f} | "
                     f"{r['images_per_s']:.2f} | {r.get('speedup_vs_fixed', nan):.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--train-data", nargs="+", required=True, help="episode dirs the model was trained on (classifier, floor row)")
    ap.add_argument("--train-cache", required=True, help="npz cache of those frames at 64x64")
    ap.add_argument("--heldout", nargs="+", required=True, help="episode dirs never used in training (the reference)")
    ap.add_argument("--classifier", required=True, help="game classifier file (trained here when missing)")
    ap.add_argument("--classifier-steps", type=int, default=600)
    ap.add_argument("--rows", nargs="*", default=None, help="schedules to run (default: all of the bundle's), plus dd1 / dd2")
    ap.add_argument("--base", default="fixed", help="the row the ratios are taken against (the fixed-step teacher)")
    ap.add_argument("--n-per-class", type=int, default=100)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--grids", default=None, help="folder for one PNG grid per row")
    ap.add_argument("--out", default=None)
    ap.add_argument("--markdown", action="store_true", help="print the README table instead of the JSON")
    args = ap.parse_args(argv)

    session = ImageSession(args.bundle, backend="ort-cpu", threads=args.threads, batch=args.batch)
    classes = session.classes
    n_classes, n = len(classes), args.n_per_class
    torch.set_num_threads(args.threads)
    clf, train = classifier_for(args.classifier, args.train_cache, args.train_data, classes, args.classifier_steps)
    if train is None:
        train = cached_image_set(args.train_cache, args.train_data, classes)
    ref_images, ref_labels = load_image_set(args.heldout, classes)
    ref_feats, ref_pred = features_and_predictions(clf, ref_images)
    floor_images, floor_labels = subsample_per_class(*train, n, n_classes, args.seed)
    floor_feats, floor_pred = features_and_predictions(clf, floor_images)
    floor_fd = per_class_frechet(floor_feats, floor_labels, ref_feats, ref_labels, n_classes)

    rows_wanted = args.rows or sorted(session.schedules) + (["dd1", "dd2"] if session.bundle.has_dd else [])
    labels = np.repeat(np.arange(n_classes), n)
    results = [{"row": "real frames (training set)", "frechet": float(np.mean(floor_fd)),
                "frechet_per_class": dict(zip(classes, map(float, floor_fd))),
                "class_accuracy": float((floor_pred == floor_labels).mean())}]
    for row in rows_wanted:
        mode = row if row in ("dd1", "dd2") else "ar"
        schedule = None if mode != "ar" else row
        session.generate(None, args.batch, labels=labels[: args.batch].tolist(), seed=args.seed, schedule=schedule, mode=mode)  # warm-up
        t0 = time.perf_counter()
        images = session.generate(None, len(labels), labels=labels.tolist(), seed=args.seed, schedule=schedule, mode=mode)
        wall = time.perf_counter() - t0
        counters = session.last_counters
        n_run = -(-len(labels) // args.batch) * args.batch  # the last batch is filled up with repeats
        feats, pred = features_and_predictions(clf, images.transpose(0, 3, 1, 2).copy())
        fd = per_class_frechet(feats, labels, ref_feats, ref_labels, n_classes)
        r = {"row": row, "mode": mode, "frechet": float(np.mean(fd)), "frechet_per_class": dict(zip(classes, map(float, fd))),
             "class_accuracy": float((pred == labels).mean()), "images_per_s": len(labels) / wall, "seconds": wall,
             "head_evaluations_per_image": counters["head_evaluations"] / n_run,
             "network_calls_per_batch": (counters["backbone_calls"] + counters["head_calls"]) / (n_run // args.batch)}
        if mode == "ar":
            r["head_steps"] = session.schedules[row]["steps"]
        results.append(r)
        print(f"{row:>22}: FD {r['frechet']:8.2f}  acc {r['class_accuracy']:.3f}  {r['images_per_s']:6.2f} img/s", flush=True)
        if args.grids:
            os.makedirs(args.grids, exist_ok=True)
            pick = np.concatenate([np.flatnonzero(labels == c)[:4] for c in range(n_classes)])
            write_png(os.path.join(args.grids, f"{row}.png"), grid(images[pick], columns=4, scale=1))
    add_ratios(results, args.base, classes)
    out = {"benchmark": "ar_image_table", "bundle": os.path.abspath(args.bundle), "device": cpu_info(),
           "versions": versions(), "backend": session.backend, "threads": args.threads, "batch": args.batch,
           "n_per_class": n, "classes": classes, "seed": args.seed,
           "classifier_accuracy_heldout_real": float((ref_pred == ref_labels).mean()),
           "n_heldout_real": int(len(ref_labels)), "rows": results}
    write_result(args.out, out)
    print(markdown(out) if args.markdown else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
