"""benchmarks/gpu_cifar_study.sh, dry-run on the CPU at a tiny budget on a fake class-folder
dataset: every variant and the random-init row train and are probed on the test split, and
the table has the paired columns. The real study needs a GPU and the CIFAR-10 JPEGs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_cifar_study.sh"


def _fake_folder(root: Path, classes: int = 10, per_class: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                root / f"class{c}" / f"{i:04d}.jpg")


def test_gpu_study_header_states_cpu_step_time_and_gpu_estimate():
    head = SCRIPT.read_text().split("set -euo pipefail")[0]
    assert "s a step" in head and "Estimate for one H100/H200-class GPU" in head
    assert "ms a step" in head and "GPU-hours" in head


def test_gpu_study_dry_runs_on_cpu_and_writes_a_paired_test_table(tmp_path):
    _fake_folder(tmp_path / "data")
    env = {**os.environ, "PY": sys.executable, "DEVICE": "cpu", "WORKERS": "1", "SEEDS": "0,1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "EXTRA": "run.max_steps=1 optim.batch_size=8 data.num_workers=0 run.num_threads=1 "
                    "run.precision=fp32 model.depth=1 eval.max_train=40 eval.max_val=20"}
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = tmp_path / "out" / "results"
    with open(res / "ablation_folder_test.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["variant"] for r in rows} == {"mae", "token", "single", "dual", "plonly",
                                            "random_init"}
    assert {r["seed"] for r in rows} == {"0", "1"}
    with open(res / "ablation_folder_test_claims.csv") as f:
        claims = list(csv.DictReader(f))
    dual_token = next(c for c in claims if c["better"] == "dual" and c["worse"] == "token")
    assert dual_token["pairs"] == "2" and dual_token["ci_low"] != ""
    assert "test split" in (res / "ablation_folder_test.md").read_text()
    bad = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "nowhere")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "error: " in bad.stderr and "nowhere" in bad.stderr
