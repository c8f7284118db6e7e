"""torchrun DDP on CPU (gloo): 2 processes match 1 process with the same global batch, and
checkpoints move between world sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plaml_lab.runs.checkpoint import load_checkpoint
from rounding import REORDER_FACTOR, max_difference, one_ulp_drift

pytestmark = [pytest.mark.slow, pytest.mark.ddp]

COMMON = ["run.num_threads=1", "run.precision=fp32", "run.eval_knn=false", "run.ckpt_every=4",
          "run.log_every=2"]


def _torchrun(out: Path, quick_yaml: str, *overrides: str) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "plaml_lab", "pretrain",
           "--config", quick_yaml, "--out", str(out), *COMMON, "optim.batch_size=16", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _single(out: Path, quick_yaml: str, *overrides: str) -> None:
    from plaml_lab.train import pretrain
    pretrain(quick_yaml, out, COMMON + ["optim.batch_size=32", *overrides])


def _model(run: Path) -> dict:
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    return ckpt


def _assert_close(a: dict, b: dict, tol: float) -> None:
    assert a["step"] == b["step"]
    diff, key = max_difference(a["model"], b["model"])
    assert diff <= tol, (key, diff, tol)


def test_two_gloo_processes_match_one_process_with_same_global_batch(tmp_path, quick_yaml,
                                                                    monkeypatch):
    """Equal up to float summation order (gloo averages two half-batch gradients instead of
    one full-batch mean): within REORDER_FACTOR x the drift a one-ulp nudge of the starting
    weights produces over the same 8 steps on this CPU (tests/rounding.py)."""
    _single(tmp_path / "one", quick_yaml, "run.max_steps=8")
    drift = one_ulp_drift(monkeypatch, lambda out: _single(out, quick_yaml, "run.max_steps=8"),
                          tmp_path / "one", tmp_path / "nudged")
    tol = REORDER_FACTOR * drift
    _torchrun(tmp_path / "two", quick_yaml, "run.max_steps=8")
    one, two = _model(tmp_path / "one"), _model(tmp_path / "two")
    assert two["world_size"] == 2
    _assert_close(one, two, tol)
    # the run was written once, by rank 0
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 4

    # DDP checkpoint -> single process, and single-process checkpoint -> DDP
    _torchrun(tmp_path / "ddp_then_one", quick_yaml, "run.max_steps=4")
    _single(tmp_path / "ddp_then_one", quick_yaml, "run.max_steps=8")
    _assert_close(one, _model(tmp_path / "ddp_then_one"), tol)
    _single(tmp_path / "one_then_ddp", quick_yaml, "run.max_steps=4")
    _torchrun(tmp_path / "one_then_ddp", quick_yaml, "run.max_steps=8")
    _assert_close(one, _model(tmp_path / "one_then_ddp"), tol)


def test_resume_with_another_global_batch_is_refused(tmp_path, quick_yaml):
    from plaml_lab.train import RunError, pretrain
    out = tmp_path / "r"
    pretrain(quick_yaml, out, COMMON + ["run.max_steps=2"])
    with pytest.raises(RunError, match="global batch of 32"):
        pretrain(quick_yaml, out, COMMON + ["run.max_steps=4", "optim.batch_size=16"])
