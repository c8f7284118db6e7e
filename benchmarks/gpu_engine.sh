#!/usr/bin/env bash
# GPU checks of the training engine (README "One GPU, many GPUs"; docs/gpu.md records results).
# Runs from the repo root on a CUDA machine that already has torch + timm (no install needed:
# the package is used from the source tree). Writes logs and metrics to ${OUT:-/tmp/gpu_out}.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.txt"

# 1. every precision path on the GPU (quick preset, dual teachers): finite, falling losses
for prec in fp32 bf16 fp16; do
  $PY -m plaml_lab pretrain --config experiments/configs/quick.yaml --out /tmp/gpu_runs/quick_$prec \
      run.device=cuda run.precision=$prec run.max_steps=60 run.log_every=10 run.progress=false \
      > "$OUT/quick_$prec.json" 2> "$OUT/quick_$prec.err"
  echo "quick $prec rc=$? $(tr -d '\n ' < "$OUT/quick_$prec.json" | head -c 400)"
  cp /tmp/gpu_runs/quick_$prec/metrics.jsonl "$OUT/quick_${prec}_metrics.jsonl" 2>/dev/null
done | tee "$OUT/precision.txt"

# 2. kill-and-resume on the GPU: SIGKILL mid-run, resume, compare with an uninterrupted run
$PY - <<'PY' 2>&1 | tee "$OUT/resume.txt"
import subprocess, sys, time, signal, torch
from pathlib import Path
from plaml_lab.runs.checkpoint import load_checkpoint
args = ["--config", "experiments/configs/quick.yaml", "run.device=cuda", "run.precision=bf16",
        "run.max_steps=60", "run.ckpt_every=10", "run.log_every=1", "run.eval_knn=false", "run.progress=false"]
def run(out, kill_after=None):
    p = subprocess.Popen([sys.executable, "-m", "plaml_lab", "pretrain", "--out", out, *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after:
        m = Path(out) / "metrics.jsonl"
        while not (m.exists() and len(m.read_text().splitlines()) >= kill_after):
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
    p.wait()
run("/tmp/gpu_runs/ref"); run("/tmp/gpu_runs/kill", kill_after=35); 
print("killed at step", load_checkpoint("/tmp/gpu_runs/kill/checkpoints/last.pt")["step"])
run("/tmp/gpu_runs/kill")
a = load_checkpoint("/tmp/gpu_runs/ref/checkpoints/last.pt")["model"]
b = load_checkpoint("/tmp/gpu_runs/kill/checkpoints/last.pt")["model"]
diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
print(f"GPU kill+resume vs uninterrupted: max abs weight diff {diff:.3g} "
      f"({'bitwise equal' if diff == 0 else 'not bitwise: cuDNN/cuBLAS kernels are not deterministic by default'})")
PY

# 3. one GPU, the ViT-S/16 preset at 224 px for 300 steps (embedded shapes data: no ImageNet here)
$PY -m plaml_lab pretrain --config experiments/configs/vit_s16_in1k.yaml --out /tmp/gpu_runs/vits \
    run.device=cuda data.dataset=shapes data.num_train=4096 data.num_val=1024 data.num_workers=0 \
    optim.epochs=10 run.max_steps=300 run.log_every=25 run.ckpt_every=150 run.progress=false \
    eval.max_train=4096 eval.max_val=1024 > "$OUT/vits.json" 2> "$OUT/vits.err"
echo "vits rc=$?" | tee -a "$OUT/vits.json"
cp /tmp/gpu_runs/vits/metrics.jsonl "$OUT/vits_metrics.jsonl" 2>/dev/null
tail -3 "$OUT/vits_metrics.jsonl"
