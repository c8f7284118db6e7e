"""Tests for plaml_lab.lab.ablation and ablation_table: the paper grid, mean +- std, claim verdicts, and
a resumable end-to-end table on the quick preset (1 seed, 2 variants + the random-init row)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from plaml_lab import cli
from plaml_lab.lab import ablation as A
from plaml_lab.lab import ablation_table as T

QUICK = "experiments/configs/quick.yaml"
TINY = ["run.progress=false", "run.num_threads=1", "run.max_steps=2", "data.num_train=128",
        "data.num_val=64", "eval.max_train=128", "eval.max_val=64", "finetune.batch_size=4"]


def write(tmp_path, text: str):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


# --- aggregation --------------------------------------------------------------------------------

def test_mean_std_is_sample_std_over_seeds_like_numpy_ddof1():
    vals = [0.61, 0.58, 0.66]
    m, s = T.mean_std(vals)
    assert m == pytest.approx(np.mean(vals)) and s == pytest.approx(np.std(vals, ddof=1))
    assert T.mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in T.mean_std([None]))


def test_aggregate_groups_rows_by_variant_in_order():
    rows = [{"variant": "b", "seed": 0, "knn_top1": 0.2}, {"variant": "a", "seed": 0,
                                                            "knn_top1": 0.4},
            {"variant": "b", "seed": 1, "knn_top1": 0.4}]
    agg = T.aggregate(rows, metrics=("knn_top1",))
    assert list(agg) == ["b", "a"]
    assert agg["b"]["knn_top1"] == pytest.approx((0.3, np.std([0.2, 0.4], ddof=1), 2))


def test_claim_verdicts_compare_difference_of_means_with_seed_spread():
    def stats(mean, std, n=3):
        return {m: (mean, std, n) for m in T.METRICS}

    agg = {"dual": stats(0.60, 0.01), "token": stats(0.50, 0.01), "single": stats(0.59, 0.02),
           "mae": stats(0.70, 0.01)}
    v = {(x["better"], x["worse"], x["metric"]): x["verdict"] for x in T.claim_verdicts(agg)}
    assert v[("dual", "token", "knn_top1")] == "held"
    assert v[("dual", "single", "knn_top1")] == "within seed spread"
    assert v[("dual", "mae", "knn_top1")] == "reversed"
    assert not any(k[1] == "plonly" for k in v)  # absent variants are skipped
    one = {k: stats(s[0][0], 0.0, 1) for k, s in
           ((k, list(val.values())) for k, val in agg.items())}
    assert all(x["verdict"].startswith("no verdict") for x in T.claim_verdicts(one))


def test_a_tagged_point_stands_for_its_variant_only_when_it_is_the_only_one():
    """A budget grid's dual_ep8 and token_ep8 are scored as dual and token; two dual_* points
    (pl_mono's dual_w025, dual_k32) are not one variant, so no claim is scored for them."""
    def stats(mean):
        return {m: (mean, 0.01, 3) for m in T.METRICS}

    v = {(x["better"], x["worse"], x["metric"]): x["verdict"]
         for x in T.claim_verdicts({"dual_ep8": stats(0.9), "token_ep8": stats(0.8),
                                    "dino_ep8": stats(0.5), "random_init": stats(0.6)})}
    assert v[("dual_ep8", "token_ep8", "knn_top1")] == "held"
    assert len(v) == 2  # knn and linear of that one claim; dino_ep8 stands for none
    two = T.claim_verdicts({"dual_w025": stats(0.9), "dual_k32": stats(0.9), "token": stats(0.8)})
    assert two == []


def test_paired_ci_matches_scipy_ttest_rel_and_decides_the_verdict():
    """The issue's lab-budget case: dual - token is -0.013, -0.0165, -0.0145 kNN in seeds 0-2, a
    consistent loss the unpaired view calls within the seed spread; the paired 95% CI is that of
    scipy.stats.ttest_rel and lies below 0: reversed."""
    from scipy import stats

    token = {0: 0.700, 1: 0.640, 2: 0.760}  # a wide seed spread ...
    dual = {s: token[s] + d for s, d in zip(token, (-0.013, -0.0165, -0.0145))}  # ... paired loss
    rows = [{"variant": v, "seed": s, "knn_top1": x, "linear_top1": x}
            for v, by in (("dual", dual), ("token", token)) for s, x in by.items()]
    verdicts = {(x["better"], x["worse"], x["metric"]): x
                for x in T.claim_verdicts(T.aggregate(rows), rows)}
    v = verdicts[("dual", "token", "knn_top1")]
    ref = stats.ttest_rel(list(dual.values()), list(token.values())).confidence_interval(0.95)
    assert (v["ci_low"], v["ci_high"]) == pytest.approx((ref.low, ref.high), abs=1e-12)
    diffs = np.array([-0.013, -0.0165, -0.0145])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)  # the t formula in numpy
    assert v["ci_low"] == pytest.approx(diffs.mean() - half)
    assert v["mean_diff"] == pytest.approx(diffs.mean()) and v["pairs"] == 3
    assert list(v["diffs"]) == [0, 1, 2] and v["diffs"][1] == pytest.approx(-0.0165)
    assert v["paired_verdict"] == "reversed" and v["verdict"] == "within seed spread"
    held = T.paired_interval([0.02, 0.03, 0.025])
    spans = T.paired_interval([0.02, -0.03, 0.01])
    assert held["paired_verdict"] == "held" and spans["paired_verdict"] == "unresolved"
    assert T.paired_interval([0.1])["paired_verdict"].startswith("no verdict")


def test_claims_csv_has_the_paired_columns(tmp_path):
    rows = [{"variant": v, "seed": s, "knn_top1": x}
            for v, base in (("dual", 0.6), ("token", 0.5), ("random_init", 0.3))
            for s, x in ((0, base), (1, base + 0.01), (2, base - 0.005))]
    agg = T.aggregate(rows)
    T.write_claims_csv(T.claim_verdicts(agg, rows) + T.baseline_verdicts(agg, rows),
                       tmp_path / "c.csv")
    with open(tmp_path / "c.csv") as f:
        got = list(csv.DictReader(f))
    assert set(T.CLAIM_COLUMNS) <= set(got[0]) and {"ci_low", "ci_high", "paired_verdict"} <= set(got[0])
    row = next(r for r in got if r["better"] == "dual" and r["worse"] == "token")
    assert row["diffs"] == "0:+0.1 1:+0.1 2:+0.1" and row["paired_verdict"] == "held"


def test_a_bonferroni_level_widens_every_interval_to_scipys_at_that_level(tmp_path):
    """A table that is a second look at a question reads its verdicts at a Bonferroni level:
    at 0.975 each interval is scipy.stats.ttest_rel's at 0.975, a gain held at 95% can turn
    unresolved, and the markdown and claims CSV name the level (97.5%, not a rounded 98%)."""
    from scipy import stats

    base = {0: 0.424, 1: 0.422, 2: 0.426}
    token = {s: base[s] + d for s, d in zip(base, (0.043, 0.021, 0.030))}
    rows = [{"variant": v, "seed": s, "knn_top1": x, "linear_top1": x}
            for v, by in (("token", token), ("random_init", base)) for s, x in by.items()]
    agg = T.aggregate(rows)
    at95 = {x["metric"]: x for x in T.baseline_verdicts(agg, rows)}
    at975 = {x["metric"]: x for x in T.baseline_verdicts(agg, rows, 0.975)}
    ref = stats.ttest_rel(list(token.values()), list(base.values())).confidence_interval(0.975)
    v = at975["linear_top1"]
    assert (v["ci_low"], v["ci_high"]) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert at95["linear_top1"]["paired_verdict"] == "held" and v["paired_verdict"] == "unresolved"
    T.write_markdown(agg, tmp_path / "t.md", rows=rows, confidence=0.975,
                     header={"dataset": "folder", "command": "c", "preset": "p", "grid": "g",
                             "seeds": [0, 1, 2], "split": "test", "date": "d", "machine": "m"})
    md = (tmp_path / "t.md").read_text()
    assert "97.5% CI" in md and "95% CI" not in md and "98%" not in md
    T.write_claims_csv(T.baseline_verdicts(agg, rows, 0.975), tmp_path / "c.csv")
    with open(tmp_path / "c.csv") as f:
        assert {r["confidence"] for r in csv.DictReader(f)} == {"0.975"}


def test_a_confidence_outside_0_1_exits_2_naming_the_flag(tmp_path, capsys):
    for bad in ("1.5", "0", "95"):
        assert _main(tmp_path, "--confidence", bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--confidence {float(bad)}" in err[0]
    assert not (tmp_path / "runs").exists()  # refused before any run started


# --- end to end ---------------------------------------------------------------------------------

def _main(tmp_path, *extra):
    return cli.main(["ablation", "--preset", QUICK, "--seeds", "0", "--variants", "mae,dual",
                   "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "results"),
                   *extra, *TINY])


def test_baseline_verdicts_score_every_pretrained_variant_against_random_init():
    """Each variant other than random_init is compared with it on kNN of the class token and of
    the mean data token; a variant below random init by more than the spread is 'reversed'."""
    def stats(mean, std, n=3):
        return {m: (mean, std, n) for m in T.METRICS}

    agg = {"mae": stats(0.40, 0.01), "dual": stats(0.26, 0.02), "plonly": stats(0.20, 0.01),
           T.BASELINE: stats(0.25, 0.01)}
    v = {(x["better"], x["metric"]): x["verdict"] for x in T.baseline_verdicts(agg)}
    assert set(v) == {(n, m) for n in ("mae", "dual", "plonly") for m in T.BASELINE_METRICS}
    assert v[("mae", "knn_top1")] == "held"
    assert v[("dual", "knn_top1")] == "within seed spread"
    assert v[("plonly", "knn_top1_mean")] == "reversed"


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_ablation_writes_csv_markdown_and_plot_and_resumes_without_rework(tmp_path,
                                                                           monkeypatch):
    assert _main(tmp_path) == 0
    res = tmp_path / "results"
    with open(res / "ablation_shapes.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["seed"]) for r in rows] == [("mae", "0"), ("dual", "0"),
                                                         ("random_init", "0")]
    assert rows[0]["nmi"] == "" and rows[1]["nmi"] != ""  # mae has no pseudo labels
    for r in rows:  # the table holds each run's own evaluation
        evaluated = json.loads((tmp_path / "runs" / f"{r['variant']}-s0" / "eval.json").read_text())
        for m in ("knn_top1", "linear_top1", "nmi", "box_mean_iou"):
            if m in evaluated:
                assert float(r[m]) == pytest.approx(evaluated[m], rel=1e-5), (r["variant"], m)
            else:
                assert r[m] == "", (r["variant"], m)
    assert rows[2]["steps"] == "0" and rows[0]["steps"] == "2"
    md = (res / "ablation_shapes.md").read_text()
    assert "| mae | 1 |" in md and "| random_init | 1 |" in md and "±" in md
    assert "## Against the random-init encoder (paired by seed)" in md and "| mae | knn_top1 |" in md
    assert "`shapes`, val split" in md and (res / "ablation_shapes_claims.csv").is_file()
    assert (res / "ablation_shapes.png").read_bytes()[:4] == b"\x89PNG"
    ev = json.loads((tmp_path / "runs" / "dual-s0" / "eval.json").read_text())
    assert ev["split"] == "val"
    assert float(rows[1]["linear_top1"]) == pytest.approx(ev["linear_top1"], abs=1e-6)
    # the finetune column: the table's budget on each run and on the random-init encoder
    ft = json.loads((tmp_path / "runs" / "dual-s0" / "finetune" / "student-all-f0.1"
                     / "summary.json").read_text())
    assert float(rows[1]["finetune_top1"]) == pytest.approx(ft["finetune_top1"], abs=1e-6)
    assert ft["epochs"] == 3 and ft["num_train"] == 20  # ceil(10% of ~13) = 2 per class
    base = json.loads((tmp_path / "runs" / "random_init-s0" / "finetune" / "summary.json")
                      .read_text())
    assert base["random_init"] and float(rows[2]["finetune_top1"]) == base["finetune_top1"]
    assert "finetune_top1" in md

    # a second invocation redoes nothing: pretraining or probing again would fail here
    def refuse(*a, **k):
        raise AssertionError("re-ran finished work")

    monkeypatch.setattr(A, "pretrain", refuse)
    monkeypatch.setattr(A, "evaluate", refuse)
    monkeypatch.setattr(A, "finetune", refuse)
    before = (res / "ablation_shapes.csv").read_text()
    assert _main(tmp_path) == 0
    assert (res / "ablation_shapes.csv").read_text() == before
    # the test split: the same runs, probed again into eval_test.json and *_test.* tables
    monkeypatch.undo()
    monkeypatch.setattr(A, "pretrain", refuse)
    assert _main(tmp_path, "--split", "test", "--probes", "knn") == 0
    ev_test = json.loads((tmp_path / "runs" / "dual-s0" / "eval_test.json").read_text())
    assert ev_test["split"] == "test" and "test split" in (res / "ablation_shapes_test.md").read_text()
    assert (res / "ablation_shapes.csv").read_text() == before  # the val table is kept


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_ablation_workers_train_points_in_parallel_into_runs_the_sequential_runner_reuses(
        tmp_path, monkeypatch):
    """--workers 2 pretrains mae and dual in two spawned processes; the table lists them in grid
    order, and a sequential re-run finds both finished (pretraining or probing again fails)."""
    assert _main(tmp_path, "--probes", "knn", "--workers", "2") == 0
    res = tmp_path / "results" / "ablation_shapes.csv"
    with open(res) as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["steps"]) for r in rows] == [("mae", "2"), ("dual", "2"),
                                                          ("random_init", "0")]
    assert all(A.is_finished(tmp_path / "runs" / name) for name in ("mae-s0", "dual-s0"))

    def refuse(*a, **k):
        raise AssertionError("re-ran finished work")

    monkeypatch.setattr(A, "pretrain", refuse)
    monkeypatch.setattr(A, "evaluate", refuse)
    before = res.read_text()
    assert _main(tmp_path, "--probes", "knn") == 0
    assert res.read_text() == before


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_a_finished_run_is_reused_only_by_a_point_of_the_same_config(tmp_path, monkeypatch, capsys):
    """After an edit to the preset, a finished run is reused only where the edit changes no key
    its variant reads (teachers.labelling.* for the pixel MAE); the dual point fails in one
    line naming the key, and its run is left as it was."""
    assert _main(tmp_path, "--probes", "knn") == 0
    dual = tmp_path / "runs" / "dual-s0"
    before = (dual / "summary.json").read_text(), (dual / "eval.json").read_text()
    capsys.readouterr()

    def refuse(*a, **k):
        raise AssertionError("re-ran finished work")

    monkeypatch.setattr(A, "pretrain", refuse)
    monkeypatch.setattr(A, "evaluate", refuse)
    assert _main(tmp_path, "--probes", "knn", "teachers.labelling.window=0.1") == 1
    err = capsys.readouterr().err
    assert "error: 1 run(s) failed: dual-s0" in err and "re-ran" not in err
    assert "dual-s0: finished with another config (differs in teachers.labelling.window)" in err
    assert ((dual / "summary.json").read_text(), (dual / "eval.json").read_text()) == before


def test_a_random_init_baseline_is_reused_only_by_a_config_it_would_evaluate_the_same():
    """Training-only keys (optimiser, losses, masks, augmentation, the teachers' momenta, run.*
    but the seed) leave a random-init evaluation as it was; data, model, pseudo-label settings
    and the seed do not."""
    from plaml_lab.config import load_config, to_dict
    from plaml_lab.runs.folder import random_init_changes
    old = to_dict(load_config(QUICK))
    same = load_config(QUICK, ["optim.blr=1e-3", "loss.w_cls=0.25", "mask.ratio=0.5",
                               "data.aug.color_jitter=0.8", "teachers.labelling.momentum=0.99",
                               "teachers.reconstruction.window=0.2", "run.max_steps=7"])
    assert random_init_changes(old, same) == []
    other = load_config(QUICK, ["data.shapes.palette=mono", "model.depth=3",
                                "pl.num_prototypes=48", "run.seed=5"])
    assert sorted(random_init_changes(old, other)) == [
        "data.shapes.palette", "model.depth", "pl.num_prototypes", "run.seed"]


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_a_random_init_baseline_of_another_config_fails_in_one_line(tmp_path, monkeypatch, capsys):
    """Editing the data of a grid whose table exists: the random-init row is not reused (its
    eval.json was of other images); the error names the key and leaves the files as they were."""
    assert _main(tmp_path, "--probes", "knn", "--variants", "mae") == 0
    base = tmp_path / "runs" / "random_init-s0"
    before = (base / "eval.json").read_text()
    capsys.readouterr()
    monkeypatch.setattr(A, "evaluate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-ran")))
    monkeypatch.setattr(A, "pretrain", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-ran")))
    _main(tmp_path, "--probes", "knn", "--variants", "mae", "optim.blr=1e-3")
    err = capsys.readouterr().err
    # the baseline never reads optim.*: its row is reused (whatever the pretrained point does)
    assert err.split("random_init seed 0 -> ")[1].splitlines()[1] == "  eval: reused eval.json"
    assert _main(tmp_path, "--probes", "knn", "--variants", "mae", "data.shapes.palette=mono") == 1
    err = capsys.readouterr().err
    assert "random_init-s0: evaluated with another config (differs in data.shapes.palette)" in err
    assert (base / "eval.json").read_text() == before


def test_the_random_init_row_is_of_the_grids_baseline_whatever_variants_selects(tmp_path,
                                                                               monkeypatch):
    """A table of a subset of points that leaves out the baseline (`dual` in the paper grid) still
    builds its random-init row from the baseline's config, so it reuses the full table's row
    instead of failing on it as of another config."""
    from plaml_lab.lab.grids import load_grid
    seen = {}

    def fake_random_init(preset, overrides, out, *a, **k):
        seen["overrides"] = overrides
        return {"knn_top1": 0.5}

    monkeypatch.setattr(A, "random_init_evaluate", fake_random_init)
    monkeypatch.setattr(A, "pretrain_and_evaluate", lambda *a, **k: {"knn_top1": 0.6})
    assert _main(tmp_path, "--probes", "knn", "--variants", "mae") == 0
    grid = load_grid(A.DEFAULT_GRID)
    assert seen["overrides"] == A.run_overrides(grid, "dual", 0, TINY)


def test_ablation_reports_a_failed_run_and_finishes_the_others(tmp_path, monkeypatch, capsys):
    real = A.pretrain_and_evaluate

    def flaky(preset, overrides, out, *a, **k):
        if out.name.startswith("mae"):
            raise RuntimeError("simulated crash")
        return real(preset, overrides, out, *a, **k)

    monkeypatch.setattr(A, "pretrain_and_evaluate", flaky)
    assert _main(tmp_path, "--probes", "knn") == 1
    err = capsys.readouterr().err
    assert "mae-s0" in err and "simulated crash" in err
    md = (tmp_path / "results" / "ablation_shapes.md").read_text()
    assert "## Failed runs" in md and "| dual | 1 |" in md


def test_ablation_bad_input_exits_2(tmp_path, capsys):
    assert _main(tmp_path, "--variants", "nope") == 2
    assert "nope" in capsys.readouterr().err
    assert _main(tmp_path, "--workers", "0") == 2
    assert "--workers 0" in capsys.readouterr().err
    assert cli.main(["ablation", "--grid", str(tmp_path / "none.yaml")]) == 2
    assert cli.main(["ablation", "--preset", QUICK, "--probes", "knn,bogus", "--runs", str(tmp_path)]) == 2


def test_read_csv_returns_the_rows_write_csv_wrote_so_old_tables_can_be_paired(tmp_path):
    rows = [{"variant": "dual", "seed": 0, "steps": 390, "knn_top1": 0.8, "nmi": None},
            {"variant": "token", "seed": 0, "steps": 390, "knn_top1": 0.9, "nmi": None}]
    T.write_csv(rows, tmp_path / "t.csv")
    back = T.read_csv(tmp_path / "t.csv")
    assert [(r["variant"], r["seed"], r["steps"], r["knn_top1"], r["nmi"]) for r in back] == \
        [("dual", 0, 390, 0.8, None), ("token", 0, 390, 0.9, None)]
    v = [x for x in T.claim_verdicts(T.aggregate(back), back) if x["metric"] == "knn_top1"]
    assert v[0]["diffs"] == {0: pytest.approx(-0.1)}
