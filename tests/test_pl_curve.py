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
    tool.plot(table["random_init"][0], tool.seed_means(table), out / "curve.png")
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


def test_seed_means_average_a_points_seeds_at_the_steps_all_of_them_reached(tmp_path):
    """Runs P and P-sN are seeds of point P: their rows are averaged step by step (sample std),
    only over steps every seed has a checkpoint for; a point with one seed has std 0."""
    tool = _tool()

    def row(step, nmi):
        return {"epoch": step / 4, "step": step, "nmi": nmi, "knn_top1": 0.8}

    table = {"random_init": [{"epoch": 0.0, "step": 0, "nmi": 0.2}],
             "dual": [row(4, 0.1), row(8, 0.2)], "dual-s1": [row(4, 0.5)],
             "token": [row(4, None), row(8, None)]}
    means = tool.seed_means(table)
    assert set(means) == {"dual", "token"}
    assert [r["step"] for r in means["dual"]] == [4]  # seed 1 has not reached step 8
    m, sd = means["dual"][0]["nmi"]
    assert (m, sd, means["dual"][0]["seeds"]) == (pytest.approx(0.3), pytest.approx(0.2828, abs=1e-4), 2)
    assert means["token"][1]["knn_top1"] == (pytest.approx(0.8), 0.0)
    tool.write_mean_markdown(means, tmp_path / "curve_mean.md")
    md = (tmp_path / "curve_mean.md").read_text()
    assert "| dual | 2 | 1.00 | - | 0.300 ± 0.283 |" in md and "| token | 1 | 2.00 | - | - |" in md
    tool.plot(table["random_init"][0], means, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0
