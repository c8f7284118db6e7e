# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Dashboards: looking inside a run
#
# **What you will see.** The six interactive dashboards of `plaml_lab.viz` on one run: the
# mask explorer (what the student sees and reconstructs), the token map viewer (teacher
# targets vs student predictions), the cluster explorer (pseudo-label clusters), the attention
# viewer (class-token attention of the student and each teacher), the training monitor (loss
# terms, learning rate and teacher momenta, refreshing while a run trains) and the teacher
# comparison (labelling vs reconstruction teacher over training). Move a slider and the view
# re-draws. Last, the runs of a folder side by side: the config keys that differ, their curves
# overlaid, their probe results grouped over seeds.
#
# Set `run` to a run folder (e.g. `experiments/runs/nb_pretrain` from `01_pretrain`); with none,
# the image dashboards show a random-init model of `config` and the two over a run's history say
# they need a run. The dashboards need a live kernel (`make lab`). With `out_dir` set, PNG
# snapshots of the image views are shown and saved there as well. The committed copy keeps only
# the last cell's output (each dashboard's controls and views, checked by nbval): it was made
# under CI (`CI` set) from a few-step quick run, whose figures would show nothing a reader needs.

# %%
import os

from plaml_lab import notebook as nb
from plaml_lab import viz

# %% [markdown]
# ## Parameters
# `run` is a run folder (or a checkpoint); `overrides` (dotted `key=value` strings, e.g.
# `["method.teachers=single"]`) change the random-init model used when no run is given.

# %% tags=["parameters"]
config: str = "experiments/configs/demo.yaml"  # preset of the random-init model (when no run)
overrides: list = []  # dotted config overrides for that model
out_dir: str = ""  # folder to save PNG snapshots of the dashboards to (empty: none)
run: str = ""  # run folder or checkpoint (empty: a random-init model of config)
dataset: str = "val"  # images to browse: val (held-out) or train split of the run's dataset
index: int = 0  # first image shown
runs_folder: str = ""  # folder of runs to compare side by side (empty: the folder holding run)

# %%
SMOKE = "CI" in os.environ  # CI: a few-step quick run
config_path, model_overrides = nb.settings(config, overrides, SMOKE)
if SMOKE and not run:
    run = str(nb.smoke_run(overrides))
model = nb.open_run(run, config_path, model_overrides)
shelf = nb.Shelf(out_dir)
print(nb.describe_config(model.cfg))

# %% [markdown]
# ## Mask explorer
# Pick an image, a mask ratio, random or block masking and a seed. Pixel MAEs show their
# reconstruction; token variants show the reconstruction teacher's target tokens next to the
# student's predicted ones at the hidden positions (same PCA colours: similar colour, similar
# token).

# %%
mask_app = viz.mask_explorer(model, dataset, index=index)
nb.show_app(mask_app, shelf, "mask_explorer")

# %% [markdown]
# ## Token map viewer
# The reconstruction teacher's tokens of the whole image (any block, or the averaged target) next
# to the student's predictions, and their per-patch cosine similarity.

# %%
token_app = viz.token_map_viewer(model, dataset, index=index)
nb.show_app(token_app, shelf, "token_map_viewer")

# %% [markdown]
# ## Cluster explorer
# The labelling teacher's pseudo labels: the cluster map of an image's data tokens, a gallery of
# the images sharing a class-token pseudo label, prototype usage, a 2-D embedding of the class
# tokens coloured by pseudo label or true class, and NMI / ARI against the true classes.

# %%
cluster_app = viz.cluster_explorer(model, dataset, index=index)
nb.show_app(cluster_app, shelf, "cluster_explorer")

# %% [markdown]
# ## Attention viewer
# Class-token attention over the data tokens, per block and head, for the student (on its masked
# view or the full image) and each teacher.

# %%
attention_app = viz.attention_viewer(model, dataset, index=index)
nb.show_app(attention_app, shelf, "attention_viewer")

# %% [markdown]
# ## Training monitor
# Loss terms, learning rate and both teachers' momenta from `metrics.jsonl`; it refreshes by
# itself while the run is still training (start `01_pretrain` or `plaml-lab pretrain` in another
# tab and point `run` at its folder).

# %%
monitor_app = viz.training_monitor(run or None)
nb.show_app(monitor_app, shelf, "training_monitor")

# %% [markdown]
# ## Teacher comparison
# Over the run's checkpoints: each teacher's parameter distance to the student, how often the two
# teachers' encoders give the same pseudo labels, and each teacher's momentum schedule. In the
# dual-teacher variant the labelling teacher follows the student more closely than the
# reconstruction teacher (see docs/method.md: two EMA copies with one schedule would be one model).

# %%
teacher_app = viz.teacher_compare(run or None, dataset)
nb.show_app(teacher_app, shelf, "teacher_compare")

# %% [markdown]
# ## Compare runs
# The runs of a folder (a sweep's output, `experiments/runs/ablation`, any runs folder) side by
# side: pick runs; the table lists only the config keys that differ between them; any
# `metrics.jsonl` column overlaid against step or epoch, smoothed; probe results (`eval.json`,
# `summary.json`, `finetune_top1`) as bars, mean ± std over the seeds of each config; `open`
# shows one of the dashboards above on the chosen run. It refreshes while runs train.

# %%
compare_folder = nb.repo_path(runs_folder) if runs_folder else (
    os.path.dirname(nb.repo_path(run)) if run else None)
compare_app = viz.compare_runs(compare_folder, auto_refresh=not SMOKE)
nb.show_app(compare_app, shelf, "compare_runs", static=SMOKE)

# %% [markdown]
# ## Did every dashboard render?

# %%
# NBVAL_CHECK_OUTPUT
for name, app in [("mask_explorer", mask_app), ("token_map_viewer", token_app),
                  ("cluster_explorer", cluster_app), ("attention_viewer", attention_app),
                  ("training_monitor", monitor_app), ("teacher_compare", teacher_app),
                  ("compare_runs", compare_app)]:
    print(nb.app_status(name, app))
