"""The compare-runs dashboard: its controls drive what is drawn (diff table, curves, bars)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plaml_lab.viz import runset as S
from plaml_lab.viz.compare import compare_runs
from plaml_lab.viz.monitors import TrainingMonitor

from fake_runs import write_compare_folder, write_fake_run

QUICK = str(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "quick.yaml")


@pytest.fixture
def runs(tmp_path):
    """a (mask 0.75) x seeds 0, 1; b (mask 0.6) seed 0; c (single teacher) still training;
    the ablation's random-init row (eval.json only); a fine-tuning folder of a-s0."""
    return write_compare_folder(tmp_path / "runs", QUICK)


def test_finds_runs_but_not_finetune_or_checkpoint_folders(runs):
    assert S.RunSet(runs).names == ["a-s0", "a-s1", "b-s0", "c-s0", "random_init-s0"]


def test_diff_table_lists_exactly_the_keys_that_differ_between_the_selected_runs(runs):
    app = compare_runs(runs, auto_refresh=False)
    runs_ctl = app.controls["runs"]
    runs_ctl.value = ("a-s0", "b-s0")
    assert app.state["diff_keys"] == ["mask.ratio"]
    assert "mask.ratio" in app.table.value and "run.seed" not in app.table.value
    runs_ctl.value = ("a-s0", "a-s1")
    assert app.state["diff_keys"] == ["run.seed"]
    runs_ctl.value = ("a-s0", "a-s1", "b-s0", "c-s0")
    assert app.state["diff_keys"] == ["mask.ratio", "method.teachers", "run.seed"]
    runs_ctl.value = ("a-s0",)
    assert app.state["diff_keys"] == [] and "share every config key" in app.table.value


def test_one_curve_per_selected_run_with_the_chosen_column_axis_and_smoothing(runs):
    app = compare_runs(runs, auto_refresh=False, selected=["a-s0", "b-s0", "c-s0"])
    fig = app.state["figure_curves"]
    assert [t.name for t in fig.data] == ["a-s0", "b-s0", "c-s0"]
    assert [len(t.x) for t in fig.data] == [50, 30, 10]
    app.controls["metric"].value = "loss_rec"
    app.controls["x"].value = "epoch"
    app.controls["smoothing"].value = 5
    rows = S.RunSet(runs)["a-s0"].rows
    raw = np.array([r["loss_rec"] for r in rows])
    want = np.array([raw[max(0, i - 4):i + 1].mean() for i in range(len(raw))])
    trace = app.state["figure_curves"].data[0]
    assert np.allclose(trace.y, want) and np.allclose(trace.x, [r["epoch"] for r in rows])
    assert app.state["figure_curves"].layout.xaxis.title.text == "epoch"
    app.controls["runs"].value = ("a-s1",)
    assert [t.name for t in app.state["figure_curves"].data] == ["a-s1"]


def test_probe_bars_group_runs_that_share_a_config_with_their_seed_spread(runs):
    app = compare_runs(runs, auto_refresh=False,
                       selected=["a-s0", "a-s1", "b-s0", "random_init-s0"])
    grouped = app.state["grouped"]
    a = grouped["ratio=0.75"]["knn_top1"]
    assert a[0] == pytest.approx(0.52) and a[1] == pytest.approx(np.std([0.5, 0.54], ddof=1))
    assert a[2] == 2 and grouped["ratio=0.6"]["knn_top1"] == (0.4, 0.0, 1)
    assert grouped["random_init-s0"]["knn_top1"] == (0.2, 0.0, 1)
    assert grouped["ratio=0.75"]["finetune_top1"] == (0.9, 0.0, 1)  # a-s0's fine-tuning
    bars = {t.name: t for t in app.state["figure_bars"].data}
    assert set(bars) == set(grouped) and list(bars["ratio=0.75"].x)[:2] == ["finetune_top1",
                                                                           "knn_top1"]


def test_configs_that_share_seeds_show_their_differences_paired_by_seed(runs):
    """b at seeds 0-2 against a at seeds 0-2: the paired view lists b - a per seed with the
    Student-t CI of scipy.stats.ttest_rel; a config of one seed gets no paired row."""
    from scipy import stats

    a = {0: 0.50, 1: 0.54, 2: 0.47}
    b = {0: 0.40, 1: 0.45, 2: 0.36}
    write_fake_run(runs / "a-s2", QUICK, [], knn=a[2], seed=2)
    write_fake_run(runs / "b-s1", QUICK, ["mask.ratio=0.6"], knn=b[1], seed=1)
    write_fake_run(runs / "b-s2", QUICK, ["mask.ratio=0.6"], knn=b[2], seed=2)
    app = compare_runs(runs, auto_refresh=False,
                       selected=["a-s0", "a-s1", "a-s2", "b-s0", "b-s1", "b-s2", "c-s0"])
    paired = [p for p in app.state["paired"] if p["metric"] == "knn_top1"]
    assert len(paired) == 1 and paired[0]["pairs"] == 3
    p = paired[0]
    first, second = (a, b) if "ratio=0.75" in p["better"] else (b, a)
    ci = stats.ttest_rel(list(first.values()), list(second.values())).confidence_interval()
    assert (p["ci_low"], p["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert p["paired_verdict"] in ("held", "reversed") and "paired by seed" in app.paired.value


def test_refresh_picks_up_rows_of_a_run_still_training_and_new_runs(runs):
    app = compare_runs(runs, auto_refresh=False, selected=["c-s0"])
    assert app.state["finished"] == {"c-s0": False}
    assert app.refresh() is False  # nothing changed on disk
    with open(runs / "c-s0" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 110, "epoch": 1.1, "loss": 0.1}) + "\n")
    write_fake_run(runs / "d-s0", QUICK, ["mask.ratio=0.5"])
    assert app.refresh() is True
    assert len(app.state["curves"]["c-s0"][0]) == 11
    assert "d-s0" in app.controls["runs"].options and app.state["selected"] == ["c-s0"]


def test_opening_a_run_shows_its_own_dashboard_below(runs):
    app = compare_runs(runs, auto_refresh=False)
    app.controls["open_run"].value = "b-s0"
    app.controls["dashboard"].value = "training_monitor"
    app.controls["open"].click()
    opened = app.state["opened"]
    assert isinstance(opened, TrainingMonitor) and opened.dir == runs / "b-s0"
    assert opened in app.opened_box.children and len(opened.state["rows"]) == 30
    opened.close()


def test_a_folder_without_runs_says_so_and_a_missing_one_is_an_error(tmp_path):
    app = compare_runs(tmp_path, auto_refresh=False)
    assert "no runs" in app.state["unavailable"]
    with pytest.raises(FileNotFoundError, match="runs folder not found"):
        compare_runs(tmp_path / "missing")


def test_few_curves_draw_as_svg_and_many_through_webgl():
    """A handful of runs draws SVG lines (visible without WebGL: headless browsers, exports);
    hundreds switch to WebGL so the browser keeps up."""
    from plaml_lab.viz.compare import WEBGL_FROM_CURVES, curves_figure
    few = {f"r{i}": ([0, 1], [1.0, 0.5]) for i in range(3)}
    many = {f"r{i}": ([0, 1], [1.0, 0.5]) for i in range(WEBGL_FROM_CURVES)}
    assert {t.type for t in curves_figure(few, "loss", "step").data} == {"scatter"}
    assert {t.type for t in curves_figure(many, "loss", "step").data} == {"scattergl"}


def test_probe_bars_name_metrics_title_the_y_axis_and_draw_random_init_as_a_line(runs):
    app = compare_runs(runs, auto_refresh=False,
                       selected=["a-s0", "a-s1", "b-s0", "random_init-s0"])
    fig = app.state["figure_bars"]
    metrics = app.state["result_metrics"]
    assert list(fig.layout.xaxis.tickvals) == metrics
    labels = dict(zip(fig.layout.xaxis.ticktext, fig.layout.xaxis.tickvals))
    assert labels["kNN top-1"] == "knn_top1" and labels["fine-tune top-1"] == "finetune_top1"
    assert fig.layout.yaxis.title.text
    assert [t.type for t in fig.data if t.name == "random_init-s0"] == ["scatter"]  # no bar
    knn = metrics.index("knn_top1")
    lines = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert [(s.x0, s.x1, s.y0) for s in lines] == [(knn - 0.45, knn + 0.45, 0.2)]


@pytest.fixture
def search_folder(tmp_path):
    """A search's folder as `plaml-lab search` leaves it: trials/t0000 complete (kNN 0.5),
    trials/t0001 pruned (stopped early: metrics, no summary.json), trials.csv written by the
    search's own writer from a study holding those two trials."""
    import optuna

    from plaml_lab.lab.search import write_trials
    from plaml_lab.lab.search_file import load_search

    search = load_search(Path(QUICK).parents[1] / "searches" / "quick_blr_mask.yaml")
    out = tmp_path / "search"
    study = optuna.create_study(direction="maximize")
    dist = {p.key: optuna.distributions.FloatDistribution(1e-4, 1.0) for p in search.params}
    for number, (state, value, blr) in enumerate([("COMPLETE", 0.5, 1e-3),
                                                  ("PRUNED", None, 1e-2)]):
        name = f"t{number:04d}"
        write_fake_run(out / "trials" / name, QUICK, [f"optim.blr={blr}", "mask.ratio=0.6"],
                       knn=value, finished=state == "COMPLETE", rows=10)
        study.add_trial(optuna.trial.create_trial(
            state=getattr(optuna.trial.TrialState, state), value=value,
            params={"optim.blr": blr, "mask.ratio": 0.6}, distributions=dist,
            user_attrs={"run": f"trials/{name}"}))
    write_trials(search, study, out / "trials.csv")
    return out


def test_a_search_folder_shows_its_trials_states_and_objective_and_waits_for_no_pruned_trial(
        search_folder):
    app = compare_runs(search_folder, auto_refresh=False)
    assert app.state["runs"] == ["trials/t0000", "trials/t0001"]
    # a pruned trial will never write summary.json: it is done, not "still training"
    assert app.state["finished"] == {"trials/t0000": True, "trials/t0001": True}
    assert app.polling_done()
    trials = app.state["trials"]
    assert {n: (t["state"], t["objective"]) for n, t in trials.items()} == {
        "trials/t0000": ("complete", "knn_top1"), "trials/t0001": ("pruned", "knn_top1")}
    assert trials["trials/t0000"]["value"] == 0.5 and np.isnan(trials["trials/t0001"]["value"])
    table = app.trials.value
    assert "plaml-trials" in table and "0.5000" in table and "pruned" in table
    assert "optim.blr" in table and "mask.ratio" not in table  # only the keys that differ
    assert "trials complete: <b>1</b>" in app.readout.value
    assert "trials pruned: <b>1</b>" in app.readout.value


def test_a_folder_that_is_not_a_search_shows_no_trials_table(runs):
    app = compare_runs(runs, auto_refresh=False)
    assert app.state["trials"] == {} and app.trials.value == ""
