#!/usr/bin/env bash
# covseg benchmark as a Slurm job array: one array task per model/seed pair, every task writing
# into the same shared benchmark folder; one last job gathers the table. Pairs are numbered from 0,
# model-major over --models x --seeds (7 models x 3 seeds = pairs 0..20).
#
#   export COVSEG_BENCHMARK_OUT=/shared/covseg-benchmark COVSEG_BENCHMARK_SEEDS=0,1,2
#   JOB=$(sbatch --parsable --array=0-20 benchmarks/slurm_array.sh --data /shared/medseg100)
#   sbatch --dependency=afterany:$JOB --wrap "covseg benchmark --report-only --out $COVSEG_BENCHMARK_OUT"
#
# Every task must get the same settings (the arguments after the script name and the variables
# below): the benchmark folder records them and refuses a task that differs. A finished pair is
# skipped, so resubmitting the array reruns only what failed or was cut off (resumed from last.pt).
#
#   COVSEG_BENCHMARK_OUT     shared benchmark folder           [runs/benchmark]
#   COVSEG_BENCHMARK_MODELS  all, or comma-separated names     [all]
#   COVSEG_BENCHMARK_SEEDS   comma-separated seeds             [0,1,2]
#
#SBATCH --job-name=covseg-benchmark
#SBATCH --ntasks=1
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=08:00:00
#SBATCH --output=covseg-benchmark-%A_%a.out
set -euo pipefail

: "${SLURM_ARRAY_TASK_ID:?run as a Slurm array task (sbatch --array=0-N) or set SLURM_ARRAY_TASK_ID}"

exec covseg benchmark \
    --only-pair "$SLURM_ARRAY_TASK_ID" \
    --models "${COVSEG_BENCHMARK_MODELS:-all}" \
    --seeds "${COVSEG_BENCHMARK_SEEDS:-0,1,2}" \
    --out "${COVSEG_BENCHMARK_OUT:-runs/benchmark}" \
    "$@"
