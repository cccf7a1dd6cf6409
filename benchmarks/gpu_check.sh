#!/usr/bin/env bash
# The seven-model GPU check in one command: every model trained and scored on the 80 real MedSeg
# slices at a reduced schedule, the same split for all, then the table printed (and kept in
# $OUT/results.md with the CSV, JSON and plots). Run it from the repository on a GPU machine:
#
#   bash benchmarks/gpu_check.sh
#
# Budget: 8 minutes on one H100, start-up included. The schedule is sized for that: 256x256
# slices, 30 epochs of the default recipe (64 training slices = 8 steps per epoch, 240 steps per
# model), last.pt written only at the end (a ResNet-101 last.pt with Adam state is ~0.7 GB; every
# epoch it would cost more than the training step itself), ONNX CPU latency at 256x256.
#
# Every setting can be overridden from the environment, e.g. to try the script on a CPU in seconds:
#   GPU_CHECK_MODELS=unet GPU_CHECK_EPOCHS=1 GPU_CHECK_IMAGE_SIZE=32 bash benchmarks/gpu_check.sh
#
#   COVSEG_MEDSEG100        the 80 real slices (images/, masks/)  [../shared/data/medseg100]
#   GPU_CHECK_MODELS        all, or comma-separated names          [all]
#   GPU_CHECK_EPOCHS        epochs per model                       [30]
#   GPU_CHECK_IMAGE_SIZE    square side of the slices              [256]
#   GPU_CHECK_LATENCY_SIZE  ONNX CPU latency input side, 0 = none  [256]
#   GPU_CHECK_DEVICE        auto, cuda, cpu                        [auto]
#   GPU_CHECK_WORKERS       DataLoader workers per run             [4]
#   GPU_CHECK_OUT           benchmark folder                       [runs/gpu-check-<time>]
set -euo pipefail

cd "$(dirname "$0")/.."
DATA=${COVSEG_MEDSEG100:-../shared/data/medseg100}
EPOCHS=${GPU_CHECK_EPOCHS:-30}
OUT=${GPU_CHECK_OUT:-runs/gpu-check-$(date +%Y%m%d-%H%M%S)}

if [[ ! -d "$DATA/images" ]]; then
    echo "error: no MedSeg slices at $DATA (expected $DATA/images and $DATA/masks); set COVSEG_MEDSEG100" >&2
    exit 2
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA GPU visible: this runs on the CPU (a check of the script, not of a GPU)')"

start=$SECONDS
status=0
covseg benchmark \
    --models "${GPU_CHECK_MODELS:-all}" \
    --data "$DATA" \
    --epochs "$EPOCHS" \
    --checkpoint-every "$EPOCHS" \
    --image-size "${GPU_CHECK_IMAGE_SIZE:-256}" \
    --latency-size "${GPU_CHECK_LATENCY_SIZE:-256}" \
    --device "${GPU_CHECK_DEVICE:-auto}" \
    --workers "${GPU_CHECK_WORKERS:-4}" \
    --out "$OUT" || status=$?

if [[ -f "$OUT/results.md" ]]; then
    echo
    cat "$OUT/results.md"
    echo
fi
echo "gpu_check: $((SECONDS - start)) s for the benchmark; results in $OUT (exit status $status)"
exit "$status"
