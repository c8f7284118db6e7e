"""Plots of a `plaml-lab search` study: Optuna's own parameter importance and parallel
coordinates (plotly), read from the search folder's study.db, with the objective named as the
search file names it. A study with too few complete trials for a plot gets a figure that says
so, not an exception: a notebook shows a search that is still running."""

from __future__ import annotations

from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from plaml_lab.errors import ConfigError
from plaml_lab.lab.search import STUDY_NAME, study_storage


def load_study(folder: str | Path) -> optuna.Study:
    """The study of a search folder (FOLDER/study.db), read-only use; ConfigError naming the
    file when the folder holds no study."""
    db = Path(folder).expanduser() / "study.db"
    if not db.is_file():
        raise ConfigError(f"{db}: no study here (plaml-lab search writes FOLDER/study.db)")
    return optuna.load_study(study_name=STUDY_NAME, storage=study_storage(db.parent))


def _complete(study: optuna.Study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _notice(text: str, title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=240)
    return fig


def importance_figure(study: optuna.Study, metric: str = "objective") -> go.Figure:
    """How much of the objective's variance each searched key explains (fANOVA, Optuna's
    default evaluator); needs two complete trials whose keys differ."""
    title = f"importance of each searched key for {metric}"
    done = _complete(study)
    if len(done) < 2:
        return _notice(f"{len(done)} complete trial(s): importance needs 2", title)
    try:
        fig = optuna.visualization.plot_param_importances(study, target_name=metric)
    except (RuntimeError, ValueError) as e:  # e.g. every complete trial has the same values
        return _notice(f"no importance: {e}", title)
    fig.update_layout(title=title, height=max(240, 80 + 40 * len(done[0].distributions)))
    return fig


def parallel_figure(study: optuna.Study, metric: str = "objective") -> go.Figure:
    """One line per complete trial across the searched keys, coloured by the objective."""
    title = f"complete trials across the searched keys, coloured by {metric}"
    done = _complete(study)
    if not done:
        return _notice("no complete trial yet", title)
    fig = optuna.visualization.plot_parallel_coordinate(study, target_name=metric)
    fig.update_layout(title=title, height=360)
    return fig
