# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablations: the method's variants side by side
#
# **What you will see.** A grid of pretraining runs executed through `plaml-lab sweep`: each point
# is one papermill run of `01_pretrain.ipynb` with its own overrides, written to
# `<out_dir>/<point>/` (the executed notebook and the run folder). Then the comparison table and
# plots from `results.csv`: loss terms, kNN accuracy of each frozen student, loss curves.
# The default grid is the five variants of docs/method.md (pixel MAE, token MAE, token + pseudo labels with
# one or two teachers, pseudo labels only) on the demo preset with a shortened schedule; the
# full-length, multi-seed table with every probe is `make ablation`.
#
# The same run from a shell: `plaml-lab sweep experiments/grids/lab_variants.yaml --workers 2`.
# Completed points are skipped on a re-run; a failed point is reported and does not stop the
# others. Under CI (`CI` set) every point uses the quick preset and a few steps.

# %%
import os

from plaml_lab import notebook as nb
from plaml_lab.lab.grids import load_grid
from plaml_lab.lab.search import run_search
from plaml_lab.lab.search_file import load_search
from plaml_lab.lab.sweep import run_sweep
from plaml_lab import viz
from plaml_lab.viz import study as study_plots
from plaml_lab.viz import results as plots

# %% [markdown]
# ## Parameters
# `grid` is a YAML file of points and/or axes (format: `docs/notebooks.md`); `overrides` (dotted
# `key=value` strings, e.g. `["run.seed=1"]`) are added to every point.

# %% tags=["parameters"]
grid: str = "experiments/grids/lab_variants.yaml"  # the grid (points and/or axes of overrides)
config: str = ""  # preset for every point (empty: the grid's own config)
overrides: list = []  # dotted config overrides added to every point
out_dir: str = "experiments/runs/sweeps/nb_ablations"  # sweep folder (re-running skips done points)
workers: int = 2  # points run in parallel, each in its own kernel
search: str = "experiments/searches/quick_blr_mask.yaml"  # a search file (docs/search.md)
search_trials: int = 6  # trials of the search to finish (a re-run resumes its study)
search_out: str = "experiments/runs/searches/nb_ablations"  # the search folder

# %%
SMOKE = "CI" in os.environ  # CI: every point runs the quick preset for a few steps
grid_path = nb.repo_path(grid)
sweep_dir = nb.run_dir(out_dir, SMOKE)
overrides = nb.as_list(overrides)
shelf = nb.Shelf()

# %% [markdown]
# ## The grid
# Each point's overrides come after the grid's own (and after `overrides` above).

# %%
# NBVAL_CHECK_OUTPUT
points = load_grid(grid_path).points
for p in points:
    print(f"{p.name:<8} {' '.join(p.overrides)}")

# %% [markdown]
# ## Run it
# One line per finished point. Each point's executed notebook is
# `<out_dir>/<point>/01_pretrain.ipynb`; a failed point's error is in `<point>/error.txt`.

# %%
rows = run_sweep(grid_path, out=sweep_dir, workers=workers, config=config or None,
                 overrides=overrides)

# %% [markdown]
# ## The comparison table
# Last logged loss terms of each run (a term a variant does not have is 0; totals of different
# variants are sums of different terms, so compare terms, not totals).

# %%
# NBVAL_CHECK_OUTPUT
terms = ["loss_rec", "loss_cls", "loss_patch"]
print(nb.table(rows, ["status", "variant", "steps", *terms], first="point", coarse_keys=terms))

# %%
# the values (their last digits differ between CPU classes and precisions)
print(nb.table(rows, terms, first="point"))

# %% [markdown]
# ## kNN accuracy of each frozen student
# Class token and mean-pooled data tokens on the held-out split (`summary.json` of each run).
# A pixel MAE's class token gets no training signal, so its mean-pooled tokens are the fairer
# readout; the pseudo-label variants train the class token directly.

# %%
print(nb.table(rows, ["knn_top1", "knn_top1_mean"], first="point"))
shelf.show("knn", plots.metric_bars(rows, ["knn_top1", "knn_top1_mean"]))

# %% [markdown]
# ## Loss curves and final loss terms

# %%
shelf.show("curves", plots.loss_curves_by_point(sweep_dir, rows))
shelf.show("terms", plots.loss_term_bars(rows))

# %% [markdown]
# ## results.csv
# One row per point: `point, status, executed, seconds, overrides`, one column per overridden
# key, every scalar of the run's `summary.json`, and `error`. Load it with
# `plaml_lab.lab.sweep.read_results(path)` (or pandas).

# %%
print(nb.shown_path(sweep_dir / "results.csv"))

# %% [markdown]
# ## Search ranges instead of points
# A grid runs the points you name; `plaml-lab search` (docs/search.md) lets an Optuna study
# sample ranges of the same dotted keys, trains each trial as an ordinary run, stops a trial
# whose intermediate kNN falls below the median of earlier trials, keeps the study in
# `<search_out>/study.db` (a re-run resumes it) and writes the best trials as a grid that
# `plaml-lab sweep` re-runs at several seeds. Under CI a copy of the search file runs 3 trials
# of the SMOKE run, scored on their final loss.

# %%
search_path = nb.search_file(search, SMOKE)
search_dir = nb.run_dir(search_out, SMOKE)
metric = load_search(search_path).metric
found = run_search(search_path, out=search_dir, trials=None if SMOKE else search_trials)

# %%
# NBVAL_CHECK_OUTPUT
best_points = load_grid(found["grid"]).points  # the grid plaml-lab sweep re-runs
print(f"{found['finished']} trials finished; best_grid.yaml: {len(best_points)} points, "
      f"keys {', '.join(sorted({o.split('=')[0] for p in best_points for o in p.overrides}))}")

# %% [markdown]
# Optuna's own plots of the study: how much of the objective each searched key explains, and
# every complete trial across the keys.

# %%
study = study_plots.load_study(search_dir)
nb.show(study_plots.importance_figure(study, metric))
nb.show(study_plots.parallel_figure(study, metric))

# %% [markdown]
# The same folder in the compare-runs dashboard: every trial with its state, objective and
# searched keys, and the trials' runs side by side.

# %%
search_app = viz.compare_runs(search_dir, auto_refresh=not SMOKE)
nb.show_app(search_app, shelf, "compare_search", static=SMOKE)

# %%
# NBVAL_CHECK_OUTPUT
print(nb.app_status("compare_search", search_app))
