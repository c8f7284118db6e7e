"""run.knn_every: the kNN a run logs while it trains (what `plaml-lab search` prunes on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plaml_lab.config import load_config
from plaml_lab.errors import ConfigError
from plaml_lab.train import pretrain

QUICK = str(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "quick.yaml")
FAST = ["run.precision=fp32", "run.num_threads=1", "run.max_steps=8", "run.log_every=2",
        "run.ckpt_every=0", "run.eval_knn=true", "data.num_train=256", "data.num_val=64",
        "eval.max_train=256", "eval.max_val=64"]


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_knn_is_logged_every_knn_every_steps_and_training_is_unchanged(tmp_path):
    summary = pretrain(QUICK, tmp_path / "probed", [*FAST, "run.knn_every=4"])
    pretrain(QUICK, tmp_path / "plain", FAST)
    probed, plain = _rows(tmp_path / "probed"), _rows(tmp_path / "plain")
    assert [r["step"] for r in probed if "knn_top1" in r] == [4, 8]
    assert not any("knn_top1" in r for r in plain)
    assert all(0 <= r["knn_top1"] <= 1 for r in probed if "knn_top1" in r)
    # the last probe is the end-of-run kNN of summary.json (same encoder, same splits)
    assert probed[-1]["knn_top1"] == pytest.approx(summary["knn_top1"])
    # the probe forks the RNG and restores train mode: the losses are the same to the bit
    for a, b in zip(probed, plain):
        assert [a[k] for k in ("loss", "loss_rec", "loss_cls", "loss_patch")] == \
               [b[k] for k in ("loss", "loss_rec", "loss_cls", "loss_patch")]


def test_knn_every_must_be_a_multiple_of_log_every():
    with pytest.raises(ConfigError, match=r"run.knn_every=5: must be a multiple of run.log_every=2"):
        load_config(QUICK, ["run.log_every=2", "run.knn_every=5"])
    assert load_config(QUICK, ["run.log_every=2", "run.knn_every=6"]).run.knn_every == 6
