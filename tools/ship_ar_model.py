"""Ship the AR image model as `nextframe generate`'s default: the teacher's and the Distilled Decoding student's EMA
weights as float16 safetensors (half the bytes; the exporter computes in float32), with the sampler settings the
table was measured with in the teacher's metadata and the distillation order in the student's, plus the game
classifier the quality numbers (and tests/test_ar_default_model.py) use.

    python tools/ship_ar_model.py --teacher RUN/model_ema.safetensors --student DD/student.safetensors \
        --classifier classifier.safetensors --n-ar-steps 8 --t-hi 50 --t-lo 2 --disa-hi 20 --default disa_linear
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

from nextframe.distill.distilled_decoding import DDStudent
from nextframe.training.mar_checkpoint import load_mar, read_mar_metadata, save_mar

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nextframe", "default_model")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", default=None)
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--n-ar-steps", type=int, required=True)
    ap.add_argument("--t-hi", type=int, required=True, help="the fixed-step teacher's head steps")
    ap.add_argument("--t-lo", type=int, required=True)
    ap.add_argument("--disa-hi", type=int, required=True, help="DiSA's first AR step's head steps")
    ap.add_argument("--default", default="disa_linear")
    args = ap.parse_args(argv)
    sampler = {"n_ar_steps": args.n_ar_steps, "t_hi": args.t_hi, "t_lo": args.t_lo, "disa_hi": args.disa_hi,
               "default_schedule": args.default}
    teacher = load_mar(args.teacher).half()
    step = read_mar_metadata(args.teacher).get("step", "")
    save_mar(teacher, os.path.join(OUT, "games_mar.safetensors"), {"ar_sampler": json.dumps(sampler), "train_step": step})
    if args.student:
        meta = read_mar_metadata(args.student)
        student = load_mar(args.student, cls=DDStudent).half()
        save_mar(student, os.path.join(OUT, "games_mar_dd.safetensors"),
                 {k: meta[k] for k in ("dd_order", "dd_two_step_revealed")} | {"train_step": meta.get("step", "")})
    shutil.copyfile(args.classifier, os.path.join(OUT, "game_classifier.safetensors"))


if __name__ == "__main__":
    main()
