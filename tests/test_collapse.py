"""Collapse diagnostics (plaml_lab.method.monitor, plaml_lab.collapse), and two knobs that keep
the pseudo labels from collapsing: EMA windows that scale with the run, the patch teacher
temperature. (Clipping, the prototype init and the token-loss scale are tested beside their
code: test_optim.py, test_model.py, test_losses.py.)"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import pytest
import torch

from plaml_lab import collapse, schedules
from plaml_lab.config import load_config
from plaml_lab.method import PLAML, monitor
from plaml_lab.train import pretrain


# --- statistics ------------------------------------------------------------------------------

def test_target_stats_count_argmax_prototypes_and_entropy():
    one_hot = torch.zeros(8, 16)
    one_hot[:, 3] = 1.0
    entropy, used = monitor.target_stats(one_hot)
    assert used.item() == 1 and entropy.item() == pytest.approx(0.0, abs=1e-6)
    spread = torch.eye(16)[torch.arange(8) % 5]  # 5 distinct prototypes
    assert monitor.target_stats(spread)[1].item() == 5
    uniform = torch.full((4, 16), 1 / 16)
    assert monitor.target_stats(uniform)[0].item() == pytest.approx(math.log(16), rel=1e-5)


def test_feature_stats_separate_spread_from_collapsed_features():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(512, 16, generator=g)
    std, erank = monitor.feature_stats(spread)
    assert 0.8 < std.item() < 1.2 and erank.item() > 12
    one_point = torch.ones(512, 16) + 1e-4 * torch.randn(512, 16, generator=g)
    std, _ = monitor.feature_stats(one_point)
    assert std.item() < 0.01
    line = torch.randn(512, 1, generator=g) * torch.randn(1, 16, generator=g)  # rank 1
    assert monitor.feature_stats(line)[1].item() < 1.5


def test_monitor_warns_once_after_collapse_persists_and_never_on_healthy_rows():
    healthy = {"pl_used_cls": 60.0, "pl_entropy_cls": 2.0}
    dead = {"pl_used_cls": 2.0, "pl_entropy_cls": 0.1}
    flat = {"pl_used_cls": 60.0, "pl_entropy_cls": 0.99 * math.log(128)}
    m = collapse.CollapseMonitor(128, {"cls": 256})
    assert [m.check({"step": s, **healthy}) for s in range(5)] == [None] * 5
    assert m.check({"step": 6, **dead}) is None  # one bad batch is not a collapse
    msg = m.check({"step": 7, **dead})
    assert msg and "step 7" in msg and "2 of 128" in msg and "\n" not in msg
    assert m.check({"step": 8, **dead}) is None  # once per run
    m = collapse.CollapseMonitor(128, {"cls": 256})
    m.check({"step": 1, **flat})
    assert "uniform" in m.check({"step": 2, **flat})


# --- in training -------------------------------------------------------------------------------

def _collapse_warnings(quick_yaml, tmp_path, overrides):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pretrain(quick_yaml, tmp_path / "run", ["run.max_steps=20", "run.log_every=5",
                                                "run.eval_knn=false", "run.progress=false",
                                                *overrides])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    return [w for w in caught if issubclass(w.category, collapse.CollapseWarning)], rows


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_training_records_collapse_statistics_and_stays_quiet_when_healthy(quick_yaml, tmp_path):
    caught, rows = _collapse_warnings(quick_yaml, tmp_path, [])
    assert caught == []
    for key in ("pl_entropy_cls", "pl_used_cls", "pl_entropy_patch", "pl_used_patch", "cls_std",
                "cls_erank"):
        assert all(isinstance(r[key], float) for r in rows), key
    assert rows[-1]["pl_used_cls"] > 3


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_training_warns_when_the_pseudo_labels_collapse(quick_yaml, tmp_path):
    # DINO's "no sharpening" ablation: a teacher temperature of 1 makes every target ~uniform
    caught, rows = _collapse_warnings(quick_yaml, tmp_path, ["pl.teacher_temp=1.0"])
    assert len(caught) == 1
    assert "class-token pseudo labels collapsed" in str(caught[0].message)


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_the_cli_prints_collapse_as_one_warning_line(quick_yaml, tmp_path):
    res = subprocess.run([sys.executable, "-m", "plaml_lab", "pretrain", "--config", quick_yaml,
                          "--out", str(tmp_path / "r"), "run.max_steps=10", "run.log_every=5",
                          "run.eval_knn=false", "run.progress=false", "pl.teacher_temp=1.0"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "collapsed" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: step 10:")


# --- knobs -------------------------------------------------------------------------------------

def test_ema_windows_scale_with_the_run_length(quick_cfg):
    cfg = load_config(None, ["teachers.labelling.window=0.1", "teachers.labelling.window_end=0.5"])
    short, long = schedules.teacher_momenta(cfg, 0, 100), schedules.teacher_momenta(cfg, 0, 10000)
    assert 1 / (1 - short["labelling"]) == pytest.approx(10)  # 10% of 100 steps
    assert 1 / (1 - long["labelling"]) == pytest.approx(1000)  # 10% of 10,000
    end = schedules.teacher_momenta(cfg, 10000, 10000)["labelling"]
    assert 1 / (1 - end) == pytest.approx(5000)
    # without windows the momenta are the configured ones, whatever the length
    plain = load_config(None, [])
    assert schedules.teacher_momenta(plain, 0, 100)["labelling"] == plain.teachers.labelling.momentum


def test_patch_teacher_temperature_sharpens_only_the_patch_targets(quick_cfg):
    torch.manual_seed(0)
    model = PLAML.from_config(quick_cfg).eval()
    x = torch.randn(4, 3, quick_cfg.model.img_size, quick_cfg.model.img_size)
    ids = torch.arange(6).repeat(4, 1)
    a = model.teacher_targets(x, ids, 0.1, 0.1)
    b = model.teacher_targets(x, ids, 0.1, 0.02)
    torch.testing.assert_close(a["cls"], b["cls"])
    ent = lambda t: monitor.target_stats(t)[0].item()  # noqa: E731
    assert ent(b["patch"]) < ent(a["patch"])
    sched = schedules.Schedule(load_config(None, ["pl.patch_teacher_temp=0.07"]), 10, 128)
    assert sched.patch_teacher_temp(0) == 0.07 and sched.teacher_temp(0) == 0.04
