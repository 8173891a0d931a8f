#!/usr/bin/env bash
# The paper's full protocol on one GPU, in-process (no Ray): jobs/imagenet_first1000.yaml — ResNet-50,
# 18 model states, 10 methods (IG-32, SmoothGrad-20, 4 LRP composites), SSIM/MSE/Spearman, occlusion
# k=15 and k=8 — on ImageNet-size stand-in images (`benchmark fixtures --imagenet-val`), random weights
# (no download). Prints the device, a smoke run, `benchmark bench` (passes, TFLOP/s: the fraction of peak)
# and a time-boxed `benchmark run` (images/s); logs and small result files go to OUT.
#
#   tools/gpu_protocol.sh OUT [IMAGES=1000] [RUN_SECONDS=240] [BENCH_IMAGES=16]
#
# Extra `--set` overrides for every step in $PROTOCOL_SET (a local dry run on a CPU:
# PROTOCOL_SET="--set dataset.crop=32 --set dataset.resize=36 --set methods.2.steps=2 --set methods.3.samples=2").
set -u
OUT=${1:?usage: tools/gpu_protocol.sh OUT [IMAGES] [RUN_SECONDS] [BENCH_IMAGES]}
IMAGES=${2:-1000}
RUN_SECONDS=${3:-240}
BENCH_IMAGES=${4:-16}
EXTRA=${PROTOCOL_SET:-}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
DATA=${PROTOCOL_DATA:-/tmp/protocol-data}
JOB=jobs/imagenet_first1000.yaml
COMMON="--set model.weights=random --set dataset.root=$DATA/imagenet_val --set dataset.limit=$IMAGES $EXTRA"
step() { echo; echo "=== $1 ($(date +%T))"; }

step "device"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv 2>&1 | tee "$OUT/device.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')" 2>&1 | tee -a "$OUT/device.txt"

step "stand-in data: $IMAGES ImageNet-size JPEGs"
time $PY -m benchmark fixtures "$DATA" --imagenet-val "$IMAGES" 2>&1

step "smoke (every method, 3 states, 6 tiny images)"
timeout 120 $PY -m benchmark run jobs/smoke.yaml --executor inline --out /tmp/protocol-smoke --new-run 2>&1 | tail -25
echo "smoke exit: ${PIPESTATUS[0]}"

step "bench: $BENCH_IMAGES images of the full protocol (pipeline, bare passes, FLOPs)"
timeout 200 $PY -m benchmark bench $JOB --images "$BENCH_IMAGES" --no-quantus --no-loop $COMMON --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt" | tail -60
echo "bench exit: ${PIPESTATUS[0]}"

step "run: $IMAGES images, stopped after $RUN_SECONDS s (SIGTERM: committed shards stay, resumable)"
START=$SECONDS
timeout -s TERM -k 30 "$RUN_SECONDS" $PY -m benchmark run $JOB --executor inline --out /tmp/protocol-run --progress-every 20 $COMMON 2>&1 | tee "$OUT/run.txt" | tail -40
echo "run exit: ${PIPESTATUS[0]}, wall $((SECONDS - START)) s"
$PY -m benchmark status /tmp/protocol-run 2>&1 | tee "$OUT/status.txt" | head -30
cp /tmp/protocol-run/manifest.json "$OUT/" 2>/dev/null
nvidia-smi --query-gpu=memory.used,clocks.sm --format=csv 2>&1
