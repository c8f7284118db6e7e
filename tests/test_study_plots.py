"""plaml_lab.viz.study: Optuna's plots of a search folder's study, read back from the figures:
the key that decides the objective gets the larger importance, the parallel coordinates hold
one line per complete trial (pruned ones left out), and a study too small for a plot or a
folder without one says so."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from plaml_lab.errors import ConfigError
from plaml_lab.viz.study import importance_figure, load_study, parallel_figure

DISTS = {"optim.blr": FloatDistribution(1e-4, 1e-2, log=True),
         "mask.ratio": FloatDistribution(0.5, 0.9)}


def make_study(folder, complete: int, pruned: int = 0):
    """A search folder's study.db as `plaml-lab search` names it: knn_top1 set by optim.blr
    alone (log-linear), mask.ratio varied independently of it."""
    study = optuna.create_study(study_name="search", direction="maximize",
                                storage=f"sqlite:///{folder / 'study.db'}")
    rng = random.Random(0)
    for i in range(complete):
        blr = 10 ** (-4 + 2 * i / max(1, complete - 1))
        ratio = 0.5 + 0.4 * rng.random()
        study.add_trial(create_trial(params={"optim.blr": blr, "mask.ratio": ratio},
                                     distributions=DISTS, value=0.3 + 0.1 * math.log10(blr / 1e-4)))
    for i in range(pruned):
        study.add_trial(create_trial(params={"optim.blr": 1e-3, "mask.ratio": 0.6},
                                     distributions=DISTS, state=TrialState.PRUNED,
                                     intermediate_values={10: 0.1}))
    return study


def test_a_folder_without_a_study_is_named_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"study\.db: no study here"):
        load_study(tmp_path)


def test_the_key_that_decides_the_objective_has_the_larger_importance(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    make_study(tmp_path, complete=12)
    fig = importance_figure(load_study(tmp_path), "knn_top1")
    bars = fig.data[0]
    importance = dict(zip(bars.y, bars.x))  # horizontal bars: keys on y, importance on x
    assert set(importance) == {"optim.blr", "mask.ratio"}
    assert importance["optim.blr"] > 2 * importance["mask.ratio"]
    assert "knn_top1" in fig.layout.title.text


def drawn_trials(fig) -> list[set]:
    """The axes of each trial's line: Optuna 4 draws one parcoords trace (a dimension per axis,
    a value per trial), Optuna 5 one scatter line per trial (customdata: [axis, value] pairs)."""
    if fig.data[0].type == "parcoords":
        dims = fig.data[0].dimensions
        return [{d.label for d in dims} for _ in dims[0].values]
    return [{axis for axis, _ in t.customdata} for t in fig.data if t.mode == "lines"]


def test_parallel_coordinates_hold_one_line_per_complete_trial(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    make_study(tmp_path, complete=5, pruned=2)
    lines = drawn_trials(parallel_figure(load_study(tmp_path), "knn_top1"))
    assert len(lines) == 5
    assert all(axes == {"knn_top1", "optim.blr", "mask.ratio"} for axes in lines)


def test_a_study_with_one_complete_trial_gets_a_notice_not_an_error(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    make_study(tmp_path, complete=1, pruned=1)
    study = load_study(tmp_path)
    assert "importance needs 2" in importance_figure(study).layout.annotations[0].text
    assert len(drawn_trials(parallel_figure(study))) == 1  # one trial still draws its line
