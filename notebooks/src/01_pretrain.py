# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Pretrain one configuration
#
# **What you will see.** One pretraining run of plaml-lab: the resolved configuration (any
# variant of docs/method.md's grid by `overrides`), the loss terms drawn live while the student
# learns to reconstruct the reconstruction teacher's tokens and to predict the labelling
# teacher's pseudo labels, a quick kNN readout of the frozen student against a random-init
# encoder of the same shape, and the run folder it leaves behind (which
# `03_dashboards` and `04_evaluate` open).
#
# Batch use: `papermill notebooks/01_pretrain.ipynb out.ipynb -p overrides '["method.teachers=single"]'`,
# or a whole grid with `plaml-lab sweep` (see `02_ablations`). Under CI (`CI` set) the notebook
# switches to the quick preset and a few steps, so it runs in seconds.

# %%
import os

from plaml_lab import notebook as nb
from plaml_lab.evaluate import knn_eval
from plaml_lab.runs import load_run, random_init_run
from plaml_lab.train import pretrain

# %% [markdown]
# ## Parameters
# `overrides` takes dotted `key=value` strings as on the CLI, e.g.
# `["method.teachers=single", "mask.ratio=0.6", "run.max_steps=200"]`. From papermill:
# `-p overrides '["method.teachers=single"]'` or `-y 'overrides: [method.teachers=single]'`.

# %% tags=["parameters"]
config: str = "experiments/configs/demo.yaml"  # preset (path relative to the repo root)
overrides: list = []  # dotted config overrides as on the CLI (examples above)
out_dir: str = "experiments/runs/nb_pretrain"  # run folder; re-running resumes it
knn_baseline: bool = True  # also score a random-init encoder of the same shape

# %%
SMOKE = "CI" in os.environ  # CI: the quick preset and a few steps
config_path, run_overrides = nb.settings(config, overrides, SMOKE)
cfg = nb.load(config_path, run_overrides)
run_dir = nb.run_dir(out_dir, SMOKE)

# %% [markdown]
# ## The configuration
# The variant follows from three switches (`method.target`, `method.pseudo_labels`,
# `method.teachers`); every other knob of docs/method.md is a dotted key too.

# %%
# NBVAL_CHECK_OUTPUT
print(nb.describe_config(cfg))

# %% [markdown]
# ## Train
# The figure redraws every few logged steps: `loss` is the weighted sum of `loss_rec` (tokens or
# pixels), `loss_cls` (class-token pseudo labels) and `loss_patch` (data-token pseudo labels);
# the dashed line is the learning rate. Interrupt the kernel at any time: re-running the cell
# resumes from the last checkpoint.

# %%
live = nb.LiveLoss(every=5, title=f"pretraining {nb.shown_path(run_dir)}")
summary = pretrain(cfg, run_dir, callback=live)
live.finish(run_dir)

# %%
# NBVAL_CHECK_OUTPUT
losses = ["loss", "loss_rec", "loss_cls", "loss_patch"]
print(nb.metrics_text(summary, ["variant", "steps", *losses], coarse_keys=losses))

# %%
# the last logged values (their last digits differ between CPU classes and precisions)
print(nb.metrics_text(summary, losses))

# %% [markdown]
# ## Are the pseudo labels collapsing?
# At every logged step training records how the labelling teacher's targets (after centering or
# Sinkhorn) use the prototypes and how spread the student's class token is
# (`plaml_lab.collapse`, docs/method.md "Collapse"). Collapse shows as few prototypes in use
# (top), targets flattening towards uniform (second), or a class token whose spread or effective
# rank falls (bottom two); the dashed lines are where training prints its one-line collapse
# warning.

# %%
nb.show(nb.collapse_figure(run_dir))

# %% [markdown]
# ## A quick kNN readout
# Weighted kNN (k=`eval.knn_k`) on the frozen features of the held-out split: the class token and
# the mean of the data tokens. A random-init encoder of the same shape is the floor; short runs
# (and the CI settings) say little about the method, the lab preset starts to.

# %%
run = load_run(run_dir)
scores = {"pretrained (student)": {k: summary.get(k) for k in ("knn_top1", "knn_top1_mean")}}
if summary.get("knn_top1") is None:
    scores["pretrained (student)"] = knn_eval(run.encoder("student"), run.cfg)
if knn_baseline:
    scores["random init"] = knn_eval(random_init_run(run.cfg).encoder("student"), run.cfg)
print(nb.table(scores, ["knn_top1", "knn_top1_mean"], first="encoder"))

# %% [markdown]
# ## Where the run was written
# `config.yaml` (the resolved config), `metrics.jsonl` (one line per logged step),
# `checkpoints/last.pt` and `summary.json`. Open it with
# `plaml_lab.load_run(path)`, `plaml-lab eval --checkpoint PATH`, or the `run` parameter of
# `03_dashboards` and `04_evaluate`.

# %%
print(nb.run_files(run_dir))
