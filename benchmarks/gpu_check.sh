#!/usr/bin/env bash
# The GPU check in one call, on one H100-class GPU, in 8 minutes (the budget; 10 with start-up):
#
#   bash benchmarks/gpu_setup.sh && bash benchmarks/gpu_check.sh
#
# 1. environment: card, memory, driver, torch, CUDA, cuDNN, onnxruntime;
# 2. training speed of all seven models at 512x512: covseg's step (bf16, channels-last, real
#    augmentation in the loop) against the plain fp32 eager loop, same run (target b/a >= 2);
# 3. covseg train of every model on the 80 real MedSeg slices at 512x512 with a held-out test set
#    (20 %), one schedule for all: one epoch of the slowest model is measured first and the epochs
#    are sized to the time left (at most 20);
# 4. covseg train --compile of unet, against its eager run.
# Each step checks the clock and skips what would overrun the budget, saying so. The results land
# in GPU_CHECK_OUT as five small files: report.md (every table, with the card named), results.json,
# train_speed.md, train_speed.json and gpu_check.log (all output); the training runs go to
# GPU_CHECK_WORK. The exit status is 0 when no step failed (skipped steps are reported, not failed).
#
# GPU_CHECK_DRY_RUN=1 runs every step on the CPU at tiny sizes (32x32, one step, one epoch), in bf16
# and channels-last as on the GPU: a check of the script, as tests/test_gpu_check.py does.
#
#   COVSEG_MEDSEG100            the 80 real slices (images/, masks/)        [../shared/data/medseg100]
#   GPU_CHECK_OUT               the folder of the five files               [runs/gpu-check-<time>]
#   GPU_CHECK_WORK              training runs, checkpoints                 [<GPU_CHECK_OUT>-work]
#   GPU_CHECK_BUDGET_S          seconds for the whole check                [480; dry run 3600]
#   GPU_CHECK_MODELS            all, or comma-separated names              [all]
#   GPU_CHECK_DEVICE            cuda, cuda:N, cpu                          [cuda; dry run cpu]
#   GPU_CHECK_IMAGE_SIZE        training side in pixels                    [512; dry run 32]
#   GPU_CHECK_SPEED_SIZE        speed-table side in pixels                 [512; dry run 32]
#   GPU_CHECK_SPEED_STEPS       timed steps per loop in the speed table    [15; dry run 1]
#   GPU_CHECK_SPEED_WARMUP      untimed steps before them                  [3; dry run 1]
#   GPU_CHECK_SPEED_SHARE       share of the budget for the speed table    [0.35]
#   GPU_CHECK_MAX_EPOCHS        most epochs per model                      [20; dry run 1]
#   GPU_CHECK_COMPILE_MODEL     the model trained with --compile           [unet]
#   GPU_CHECK_COMPILE_EPOCHS    its epochs (the first compiles)            [3; dry run 1]
#   GPU_CHECK_COMPILE_RESERVE_S seconds kept for the compile step          [100; dry run 0]
#   GPU_CHECK_WORKERS           DataLoader workers per run                 [4; dry run 0]
#   GPU_CHECK_PRECISION         --precision of every run (channels-last)   [bf16, also in the dry run]
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export COVSEG_MEDSEG100=${COVSEG_MEDSEG100:-../shared/data/medseg100}
export GPU_CHECK_OUT=${GPU_CHECK_OUT:-runs/gpu-check-$(date +%Y%m%d-%H%M%S)}

if [[ ! -d "$COVSEG_MEDSEG100/images" || ! -d "$COVSEG_MEDSEG100/masks" ]]; then
    echo "error: no MedSeg slices at $COVSEG_MEDSEG100 (expected images/ and masks/); set COVSEG_MEDSEG100" >&2
    exit 2
fi
mkdir -p "$GPU_CHECK_OUT"
export PYTHONUNBUFFERED=1
"$PYTHON" benchmarks/gpu_check.py 2>&1 | tee "$GPU_CHECK_OUT/gpu_check.log"
