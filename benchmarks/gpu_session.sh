#!/usr/bin/env bash
# One prepared GPU session (docs/gpu.md): the miniature ablation and the lab calibration grid on
# the GPU (runs in parallel processes), the engine checks, and the ViT-B/16 benchmark.
# Since 2026-11-30 the lab preset draws mono shapes (grey from 2026-11-26): add
# data.shapes.palette=colour to the ablation commands to reproduce the colour-palette table of
# that session (docs/results_history.md, round 1). The budget study is benchmarks/gpu_budget.sh.
# Usage on a CUDA machine with torch + timm, from the repo root: OUT=/some/dir bash benchmarks/gpu_session.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 MPLBACKEND=Agg
PY=${PY:-python3}
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
L=/tmp/gpu_logs; mkdir -p "$L"

stamp "ablation (3 seed processes) + calibration (one process per point), in parallel"
for s in 0 1 2; do
  $PY -m plaml_lab ablation --seeds $s --device cuda --out /tmp/abl_s$s run.progress=false > "$L/abl_s$s.log" 2>&1 &
done
for p in dual mae token plonly dual_jit8 mae_jit8 dual_k64 dual_ep8; do
  $PY -m plaml_lab ablation --grid experiments/grids/lab_calibration.yaml --variants $p --probes knn,linear,clusters \
      --runs /tmp/cal/$p --out /tmp/cal_out/$p --device cuda run.progress=false > "$L/cal_$p.log" 2>&1 &
done
wait
stamp "aggregate the ablation"
$PY -m plaml_lab ablation --device cuda run.progress=false > "$L/abl_all.log" 2>&1; echo "rc=$?"
tail -30 experiments/results/ablation_shapes.md

stamp "engine checks"
OUT=/tmp/gpu_engine bash benchmarks/gpu_engine.sh > "$L/engine.log" 2>&1; tail -12 "$L/engine.log"

stamp "ViT-B/16 224px bf16 benchmark"
$PY -m plaml_lab bench --preset experiments/configs/vit_b16_in1k.yaml --variants mae,dual --precisions bf16 \
    --steps 20 --warmup 5 --csv "$OUT/bench_vitb16_h100.csv" run.device=cuda > "$L/bench.log" 2>&1
tail -15 "$L/bench.log"
stamp "done"
mkdir -p /tmp/pack/cal /tmp/pack/runs
cp -r /tmp/cal/. /tmp/pack/cal/ 2>/dev/null; cp -r /tmp/cal_out /tmp/pack/ 2>/dev/null
cp -r experiments/runs/ablation /tmp/pack/runs/ 2>/dev/null
cp -r experiments/results /tmp/pack/results; cp -r "$L" /tmp/pack/logs; cp -r /tmp/gpu_engine /tmp/pack/engine 2>/dev/null
find /tmp/pack -name "*.pt" -delete
tar czf "$OUT/pack.tgz" -C /tmp/pack .
ls -la "$OUT"
