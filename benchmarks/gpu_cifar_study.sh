#!/usr/bin/env bash
# The CIFAR-10 study on one GPU: pixel MAE, token MAE, one teacher doing both, the paper's dual
# teachers, pseudo labels only, and the random-init encoder, 5 paired seeds, 200 epochs, kNN and
# linear probes on the test split (5,000 images carved from the 50,000 with a fixed seed). The
# settings are fixed before it runs: experiments/configs/cifar_gpu.yaml and
# experiments/grids/cifar_gpu.yaml. The table gets paired-by-seed 95% CIs (docs/evaluation.md).
#
# Step time. Measured on this project's 2-core CPU (AMD EPYC, nice 10, 1 torch thread, bf16),
# the cifar_cpu preset at batch 64, two runs side by side (docs/results.md, the CIFAR-10 table,
# 2026-12-07): 0.65-0.66 s a step wall clock for the token MAE and dual with nothing else on the
# machine, 1.25-1.6 s while other work shared it (1.96 s in the first pilot, 2026-12-02); a
# 200-epoch table is out of a CPU's reach (25 runs x 31,250 steps x ~0.7 s, two at a time: about
# 75 hours of the whole machine, far more with any other load).
# Estimate for one H100/H200-class GPU: the dual variant at batch 256 is 228 GFLOP a step (2 x
# the lab model's 114 GFLOP at batch 128, benchmarks/results/lab_cpu.csv); at the 228 TFLOP/s
# that ViT-B/16 dual reached on an H100 (benchmarks/results/bench_vitb16_h100.csv) that is 1 ms,
# but a 4-block, 128-wide model is launch-bound, not FLOP-bound: expect 10-30 ms a step, so
# 200 epochs (156 steps each, 31,250 steps) take 5-16 min per dual run, less for mae and token.
# The 25 runs then take about 2-5 GPU-hours in sequence; WORKERS runs share the GPU at once
# (default 5), which a launch-bound model tolerates, if the CPU keeps up with JPEG decoding
# (data.num_workers=6 per run). Measure before trusting it: run it once with SEEDS=0 EPOCHS=2
# and read imgs_per_s in OUT/runs/*/metrics.jsonl.
#
# Usage, on a CUDA machine with the project installed, from the repo root:
#   bash benchmarks/gpu_cifar_study.sh DATA_FOLDER [OUT]
#   DATA_FOLDER: the unpacked CIFAR-10 JPEGs, e.g. /data/cifar10-train (<class>/NNNN.jpg)
#   OUT (default /tmp/gpu_cifar_study): runs/ (one folder per variant and seed; re-running
#       resumes) and results/ablation_folder_test.{md,csv,png} + _claims.csv
# Environment: PY (python3), DEVICE (cuda), WORKERS (5), SEEDS (the grid's 0-4, e.g. "0,1"),
#   EPOCHS (the preset's 200), EXTRA (further key=value overrides for every run).
# A dry run on a CPU (tests/test_gpu_study.py does this on a fake folder):
#   DEVICE=cpu WORKERS=1 SEEDS=0 EXTRA="run.max_steps=1 optim.batch_size=8 data.num_workers=0" \
#       bash benchmarks/gpu_cifar_study.sh FOLDER /tmp/dry
set -euo pipefail
DATA=${1:?usage: bash benchmarks/gpu_cifar_study.sh DATA_FOLDER [OUT]}
OUT=${2:-/tmp/gpu_cifar_study}
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}; WORKERS=${WORKERS:-5}
SEEDS=${SEEDS:-}; EPOCHS=${EPOCHS:-}; EXTRA=${EXTRA:-}
if [ ! -d "$DATA" ]; then echo "error: $DATA: not a folder (the unpacked CIFAR-10 JPEGs)" >&2; exit 2; fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
mkdir -p "$OUT"
args=(--grid experiments/grids/cifar_gpu.yaml --runs "$OUT/runs" --out "$OUT/results"
      --probes knn,linear --device "$DEVICE" --workers "$WORKERS")
[ -n "$SEEDS" ] && args+=(--seeds "$SEEDS")
overrides=(data.root="$DATA" run.device="$DEVICE" run.progress=false)
[ -n "$EPOCHS" ] && overrides+=(optim.epochs="$EPOCHS")
T0=$(date +%s)
# shellcheck disable=SC2086  # EXTRA is a list of key=value words
$PY -m plaml_lab ablation "${args[@]}" "${overrides[@]}" $EXTRA
echo "study done in $(( $(date +%s) - T0 )) s: $OUT/results/ablation_folder_test.md"
