#!/usr/bin/env bash
# One device call that serves two issues: the GPU benchmark matrix (run.sh) and, sharing the GPU, the shipped teacher
# fine-tuned further on fresh episodes (tools/device_pipeline.py --mode finetune), paused by gpu_bench while it times.
# Needs the wheels of ale_py, gymnasium and farama-notifications for the machine's Python in .whl/ (carried):
#
#     bash benchmarks/device/session.sh      # about 9.5 minutes; results into $OUT/bench and $OUT/train
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
