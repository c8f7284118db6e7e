#!/usr/bin/env bash
# One prepared GPU check (about 4 minutes on one H100): `plaml-lab bench` at the ViT-B/16 preset
# (experiments/configs/vit_b16_in1k.yaml), 224 px, bf16, variants mae and dual, on synthetic
# inputs (no ImageNet needed), eager and then torch.compile'd. Writes CSVs and logs to $OUT
# (default benchmarks/results/gpu). Run from the repository root:
#
#     OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Environment: uses .venv if it already has a CUDA torch; otherwise makes $VENV (default
# .venv-gpu; an existing .venv is never touched) on top of a python3 that has a CUDA torch
# (--system-site-packages, `pip install -e . --no-deps`), and only then tries a full
# `pip install -e .` (needs a package index). It prints what it found.
set -uo pipefail
START=$(date +%s)
BUDGET=${BUDGET:-230}   # seconds for the whole script; the compiled run gets what is left
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[gpu_check $(elapsed)s] $*" | tee -a "$OUT/gpu_check.log"; }

has_cuda_torch() {  # $1 = python
  "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
}
has_deps() {
  "$1" -c "import timm, yaml, numpy, plaml_lab" 2>/dev/null
}

VENV=${VENV:-.venv-gpu}
PY=""
if [ -x .venv/bin/python ] && has_cuda_torch .venv/bin/python; then
  PY=.venv/bin/python
  say "using the existing .venv"
else
  for cand in python3 python /usr/bin/python3; do
    if command -v "$cand" >/dev/null && has_cuda_torch "$(command -v "$cand")"; then
      BASE=$(command -v "$cand"); break
    fi
  done
  if [ -n "${BASE:-}" ]; then
    say "found CUDA torch in $BASE; making $VENV with --system-site-packages"
    [ -x "$VENV/bin/python" ] || "$BASE" -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install -q --no-deps -e . 2>&1 | tail -2
    if ! has_deps "$VENV/bin/python"; then
      say "some dependencies are missing; trying: pip install timm pyyaml numpy tqdm safetensors"
      "$VENV/bin/pip" install -q timm pyyaml numpy tqdm safetensors 2>&1 | tail -2
    fi
  else
    say "no python with a CUDA torch found; trying a full install into $VENV (needs a package index)"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -e . 2>&1 | tail -3
  fi
  PY=$VENV/bin/python
fi
if ! has_cuda_torch "$PY" || ! has_deps "$PY"; then
  say "FAILED: $PY lacks a CUDA torch or a dependency:"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/gpu_check.log"
  "$PY" -c "import timm, yaml, numpy; import plaml_lab" 2>&1 | tail -1 | tee -a "$OUT/gpu_check.log"
  exit 1
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/gpu_check.log"
import torch, timm, platform
p = torch.cuda.get_device_properties(0)
print(f"python {platform.python_version()} torch {torch.__version__} (CUDA {torch.version.cuda}) "
      f"timm {timm.__version__}; GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, "
      f"{p.multi_processor_count} SMs")
EOF
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv 2>&1 | tee -a "$OUT/gpu_check.log"

PRESET=experiments/configs/vit_b16_in1k.yaml
COMMON=(--preset "$PRESET" --variants mae,dual --precisions bf16 --warmup 5 run.device=cuda)

say "eager: mae and dual, ViT-B/16 224 px, batch 256 x 2 views, bf16, 20 round-robin steps"
timeout $(( BUDGET - $(elapsed) )) "$PY" -m plaml_lab bench "${COMMON[@]}" --steps 20 \
  --csv "$OUT/vit_b16_bf16_eager.csv" 2>&1 | tee "$OUT/vit_b16_bf16_eager.txt"
say "eager run exit code ${PIPESTATUS[0]}"

LEFT=$(( BUDGET - $(elapsed) ))
if [ "$LEFT" -gt 90 ]; then
  say "compiled (run.compile=true): ${LEFT}s left, compile time included in that budget"
  timeout "$LEFT" "$PY" -m plaml_lab bench "${COMMON[@]}" --steps 15 --no-memory \
    run.compile=true --csv "$OUT/vit_b16_bf16_compiled.csv" 2>&1 \
    | tee "$OUT/vit_b16_bf16_compiled.txt"
  say "compiled run exit code ${PIPESTATUS[0]} (124 = ran out of the time budget)"
else
  say "skipping the compiled run: only ${LEFT}s left"
fi
say "done; results in $OUT"
