#!/usr/bin/env bash
# One prepared GPU check (about 4 minutes on one H100): `plaml-lab bench` at the ViT-B/16 preset
# (experiments/configs/vit_b16_in1k.yaml), 224 px, bf16, variants mae and dual, on synthetic
# inputs (no ImageNet needed), eager and then torch.compile'd. Writes CSVs and logs to $OUT
# (default benchmarks/results/gpu). Run from the repository root:
#
#     OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Environment, first that works: a python3 that already has a CUDA torch, timm and pyyaml, with
# the package used from the source tree (PYTHONPATH, no install: how docs/gpu.md ran); .venv if
# it has a CUDA torch; a new $VENV (default .venv-gpu; an existing .venv is never touched) on top
# of a python3 with a CUDA torch (--system-site-packages, `pip install -e . --no-deps`); last, a
# full `pip install -e .` into $VENV (needs a package index). It prints what it found.
set -uo pipefail
START=$(date +%s)
BUDGET=${BUDGET:-230}   # seconds for the whole script; the compiled run gets what is left
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[gpu_check $(elapsed)s] $*" | tee -a "$OUT/gpu_check.log"; }

DEVICE=${DEVICE:-cuda}  # DEVICE=cpu SMOKE=1: a dry run of this script on a CPU machine
SMOKE=${SMOKE:-0}
has_cuda_torch() {  # $1 = python
  "$1" -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null
}
has_deps() {  # run from the repo root, so plaml_lab imports from the source tree
  "$1" -c "import timm, yaml, numpy, plaml_lab.lab.bench" 2>/dev/null
}

VENV=${VENV:-.venv-gpu}
PY=""
for cand in python3 python /usr/bin/python3; do
  c=$(command -v "$cand" 2>/dev/null) || continue
  if has_cuda_torch "$c"; then BASE=$c; break; fi
done
if [ -n "${BASE:-}" ] && PYTHONPATH=$PWD has_deps "$BASE"; then
  PY=$BASE
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  say "using $BASE with PYTHONPATH=$PWD (it has torch, timm, pyyaml; no install)"
elif [ -x .venv/bin/python ] && has_cuda_torch .venv/bin/python && has_deps .venv/bin/python; then
  PY=.venv/bin/python
  say "using the existing .venv"
elif [ -n "${BASE:-}" ]; then
  say "found a CUDA torch in $BASE but not every dependency; making $VENV (--system-site-packages)"
  [ -x "$VENV/bin/python" ] || "$BASE" -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q --no-deps -e . 2>&1 | tail -2
  if ! has_deps "$VENV/bin/python"; then
    say "some dependencies are missing; trying: pip install timm pyyaml numpy tqdm safetensors"
    "$VENV/bin/pip" install -q timm pyyaml numpy tqdm safetensors 2>&1 | tail -2
  fi
  PY=$VENV/bin/python
else
  say "no python with a CUDA torch found; trying a full install into $VENV (needs a package index)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -e . 2>&1 | tail -3
  PY=$VENV/bin/python
fi
if ! has_cuda_torch "$PY" || ! has_deps "$PY"; then
  say "FAILED: $PY lacks a CUDA torch or a dependency:"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/gpu_check.log"
  "$PY" -c "import timm, yaml, numpy; import plaml_lab.lab.bench" 2>&1 | tail -1 | tee -a "$OUT/gpu_check.log"
  exit 1
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/gpu_check.log"
import torch, timm, platform
print(f"python {platform.python_version()} torch {torch.__version__} (CUDA {torch.version.cuda}) "
      f"timm {timm.__version__}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
EOF
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv 2>&1 | tee -a "$OUT/gpu_check.log"

PRESET=${PRESET:-experiments/configs/vit_b16_in1k.yaml}
COMMON=(--preset "$PRESET" --variants mae,dual --precisions bf16)
EAGER=(--steps 20 --warmup 5)
COMPILED=(--steps 15 --warmup 3)
if [ "$SMOKE" = 1 ]; then
  COMMON+=(--batch 2); EAGER=(--steps 1 --warmup 0); COMPILED=(--steps 1 --warmup 0)
fi

say "eager: mae and dual at $PRESET (ViT-B/16: 224 px, batch 256 x 2 views), bf16"
timeout $(( BUDGET - $(elapsed) )) "$PY" -m plaml_lab bench "${COMMON[@]}" "${EAGER[@]}" \
  --csv "$OUT/vit_b16_bf16_eager.csv" run.device=$DEVICE 2>&1 | tee "$OUT/vit_b16_bf16_eager.txt"
say "eager run exit code ${PIPESTATUS[0]}"

LEFT=$(( BUDGET - $(elapsed) ))
if [ "$LEFT" -gt 90 ]; then
  say "compiled (run.compile=true): ${LEFT}s left, compile time included in that budget"
  timeout "$LEFT" "$PY" -m plaml_lab bench "${COMMON[@]}" "${COMPILED[@]}" --no-memory \
    --csv "$OUT/vit_b16_bf16_compiled.csv" run.device=$DEVICE run.compile=true 2>&1 \
    | tee "$OUT/vit_b16_bf16_compiled.txt"
  say "compiled run exit code ${PIPESTATUS[0]} (124 = ran out of the time budget)"
else
  say "skipping the compiled run: only ${LEFT}s left"
fi
say "done; results in $OUT"
