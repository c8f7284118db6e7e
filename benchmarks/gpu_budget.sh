#!/usr/bin/env bash
# The mono lab preset's budget study on one GPU, the step the 2-core CPU cannot take
# (docs/results_history.md, "Where the pseudo labels form on the mono shapes"; docs/gpu.md): the
# paper's variant, one teacher doing both, the token-only MAE, pseudo labels only and the DINO
# control of experiments/grids/pl_mono_curve.yaml for every seed at every budget, one process per
# (budget, seed) at once, then per budget the 3-seed table (the runner reuses the finished runs)
# and tools/pl_curve.py over the checkpoints kept every 2 epochs. Run folders keep the grid's
# point names (dual_ep8, ...) whatever the budget; the budget is in the folder above them
# (runs_ep16/dual_ep8-s0 trained 16 epochs).
# Usage on a CUDA machine with torch + timm, from the repo root:
#   OUT=/some/dir bash benchmarks/gpu_budget.sh
# A dry run of the plumbing on a CPU (minutes):
#   OUT=/tmp/b DEVICE=cpu EPOCHS=0.05 SEEDS="0 1" EXTRA="run.ckpt_every=8 eval.max_train=300 eval.max_val=200" \
#       bash benchmarks/gpu_budget.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_budget}; mkdir -p "$OUT/logs"
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-"8 16"}; SEEDS=${SEEDS:-"0 1 2"}
EXTRA=${EXTRA:-}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 MPLBACKEND=Agg
GRID=experiments/grids/pl_mono_curve.yaml
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
# the seeds of one budget go to one table: "0 1 2" -> 0,1,2
seed_list=$(echo $SEEDS | tr ' ' ',')
fail=0
# ablate EPOCHS SEEDS RUNS OUT: the grid at one budget; the pretraining runs and the tables
# must see the same overrides, or the tables would refuse the runs as of another config
ablate() {
  $PY -m plaml_lab ablation --grid $GRID --seeds "$2" --probes knn,linear,clusters --device "$DEVICE" \
      --runs "$3" --out "$4" optim.epochs="$1" run.keep_ckpts=10 run.device="$DEVICE" \
      run.progress=false $EXTRA
}

stamp "pretrain: budgets ($EPOCHS) x seeds ($SEEDS), one process each, on $DEVICE"
pids=()
for ep in $EPOCHS; do
  for s in $SEEDS; do
    # one process per seed, each with its own --out, so none waits for another's table;
    # keep_ckpts=10 covers 16 epochs of checkpoints every 2
    ablate "$ep" "$s" "$OUT/runs_ep$ep" "$OUT/seed_tables/ep${ep}_s$s" > "$OUT/logs/ep${ep}_s$s.log" 2>&1 &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || { stamp "a pretrain process failed: see $OUT/logs"; tail -5 "$OUT"/logs/*.log; }

for ep in $EPOCHS; do
  stamp "epochs $ep: the table over seeds $seed_list (finished runs reused) and the curve"
  ablate "$ep" "$seed_list" "$OUT/runs_ep$ep" "$OUT/results_ep$ep" > "$OUT/logs/table_ep$ep.log" 2>&1 || fail=1
  sed -n '/^| variant/,/^$/p' "$OUT/results_ep$ep/ablation_shapes.md"
  $PY tools/pl_curve.py --runs "$OUT/runs_ep$ep" --out "$OUT/curve_ep$ep" > "$OUT/logs/curve_ep$ep.log" 2>&1 || fail=1
  tail -n +1 "$OUT/curve_ep$ep/curve.md" 2>/dev/null
done
# checkpoints stay on the machine: the tables, curves, eval.json and metrics come back
find "$OUT" -name "*.pt" -delete
stamp "done (fail=$fail)"
exit $fail
