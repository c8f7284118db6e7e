"""tools/pl_curve.py: every kept checkpoint of a run is probed once (cached by step), rows come
in step order with their epoch, and the table and plot are written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("pl_curve", ROOT / "tools" / "pl_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_checkpoint_is_probed_once_in_step_order_with_its_epoch(quick_run, tmp_path, monkeypatch):
    tool = _tool()
    calls = []

    def fake_evaluate(ckpt, probes, encoder="student", random_init=False):
        calls.append((Path(ckpt).name, encoder, random_init))
        return {"nmi": 0.1 * len(calls), "ami": 0.05, "prototypes_used": 7, "knn_top1": 0.3,
                "knn_top1_mean": 0.3, "nmi_nuisance": {"bg_grey": 0.4}}

    monkeypatch.setattr(tool, "evaluate", fake_evaluate)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "quick_dual-s0").symlink_to(quick_run)  # step_4, step_8, step_12 kept (conftest)
    out = tmp_path / "out"
    table = tool.curve(runs, out, log=lambda *_: None)
    steps = [r["step"] for r in table["quick_dual"]]
    assert steps == sorted(steps) and len(steps) >= 2
    per_step = table["quick_dual"][0]["epoch"] / steps[0]
    assert all(r["epoch"] == pytest.approx(r["step"] * per_step) for r in table["quick_dual"])
    assert calls[0] == ("quick_dual-s0", "labelling", True)  # the random-init row
    assert all(enc == "student" for _, enc, _ in calls[1:])  # token targets: the student
    n = len(calls)
    tool.curve(runs, out, log=lambda *_: None)
    assert len(calls) == n  # all cached
    tool.write_markdown(table, out / "curve.md")
    tool.plot(table, out / "curve.png")
    md = (out / "curve.md").read_text().splitlines()
    assert len(md) == 2 + 1 + len(steps) and "| quick_dual |" in md[-1]
    assert (out / "curve.png").stat().st_size > 0


def test_two_seeds_of_a_point_keep_their_own_rows_and_cache(quick_run, tmp_path, monkeypatch):
    tool = _tool()
    calls = []

    def fake_evaluate(ckpt, probes, encoder="student", random_init=False):
        calls.append(Path(ckpt).parent.parent.name)
        return {"nmi": 0.5 if "-s1" in calls[-1] else 0.1, "knn_top1": 0.3}

    monkeypatch.setattr(tool, "evaluate", fake_evaluate)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "quick_dual-s0").symlink_to(quick_run)
    (runs / "quick_dual-s1").symlink_to(quick_run)
    table = tool.curve(runs, tmp_path / "out", log=lambda *_: None)
    assert set(table) == {"random_init", "quick_dual", "quick_dual-s1"}
    assert {r["nmi"] for r in table["quick_dual"]} == {0.1}
    assert {r["nmi"] for r in table["quick_dual-s1"]} == {0.5}  # probed, not read from seed 0's cache
