#!/usr/bin/env bash
# One device call that serves two issues: the GPU benchmark matrix (run.sh) and, sharing the GPU, the shipped teacher
# fine-tuned further on fresh episodes (tools/device_pipeline.py --mode finetune), paused by gpu_bench while it times.
# Needs the wheels of ale_py, gymnasium and farama-notifications for the machine's Python (3.12) in .whl/, carried,
# and pytest's for run.sh's GPU tests (tests/test_gpu_device_loops.py):
#
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 -d .whl \
#         "ale_py==0.12.*" "gymnasium==1.3.*" farama-notifications \
#         pytest pluggy iniconfig packaging pygments                     # here, once (.whl/ git-ignored)
#     bash benchmarks/device/session.sh      # there: about 9 minutes; results into $OUT/bench and $OUT/train
#
# Seen on an H200 (2026-12-01): the training half ran as planned (two runs of 370 s, 5,620 and 4,362 steps at batch
# 128; docs/world_model_design.md "Phase 9"); its scoring did not finish in the 90 s left (it now scores 30 clips, not 90);
# the benchmark half stopped at the core's build (since fixed) and, in a second call, at gpu_bench's crash (run.sh).
set -u
OUT=${OUT:-/tmp/nf_out}
mkdir -p "$OUT/bench" "$OUT/train"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
rm -f /tmp/nf_bench_done /tmp/nf_train.pids
PYTHONUNBUFFERED=1 python3 tools/device_pipeline.py --mode finetune --out "$OUT/train" --total-s 545 --record-s 55 \
    --teacher-end-s 420 --frames 200000 --clips-per-episode 3 --wait-for /tmp/nf_bench_done \
    --pid-file /tmp/nf_train.pids > "$OUT/train/pipeline.log" 2>&1 &
PIPE=$!
NF_PAUSE_PIDFILE=/tmp/nf_train.pids NF_DEADLINE_S=470 NF_BUILD_LOG=/tmp/nf_build.log OUT="$OUT/bench" \
    bash benchmarks/device/run.sh 2>&1 || echo "run.sh exited $?"
touch /tmp/nf_bench_done
echo "bench done at ${SECONDS} s"
wait $PIPE
echo "pipeline exited $? at ${SECONDS} s"
tail -5 "$OUT/train/pipeline.log"
grep -h '"kind": "train"' /tmp/nf_work/ft_*/log.jsonl 2>/dev/null | tail -4
