"""Source of notebooks/04_evaluate.ipynb (tools/make_notebooks.py; `make notebooks`)."""
# %% [markdown] id=title
# # Evaluate a run: every probe against the random-init baseline
#
# **What you will see.** The frozen encoder of one run (the student by default, or either
# teacher) scored by every probe of `plaml_lab.evaluate` on the held-out split, next to a
# random-init encoder of the same shape: weighted kNN and a linear probe (class token and
# mean-pooled data tokens), the labelling teacher's pseudo labels as clusters (NMI, ARI,
# prototypes used), and, on datasets with masks, a segmentation probe and a box probe on the
# data tokens. Then the same numbers as bars, and the held-out images grouped by the pseudo
# label the run's labelling teacher gives them.
#
# The same from a shell: `plaml-lab eval --checkpoint RUN` (and `--random-init`). Batch use:
# `papermill notebooks/04_evaluate.ipynb out.ipynb -p run experiments/runs/dual`. Under CI
# (`CI` set) a few-step quick run is trained and evaluated on small splits.

# %% id=imports
import os

from plaml_lab import notebook as nb
from plaml_lab.lab.ablation import METRICS
from plaml_lab.runs import load_run
from plaml_lab.viz import results as plots

# %% [markdown] id=parameters-md
# ## Parameters
# `overrides` change evaluation settings of the run's config, e.g. `["eval.max_train=2000",
# "eval.knn_k=10"]`; `probes` any of `knn, linear, clusters, seg, box`
# (`-y 'probes: [knn, linear]'` from papermill).

# %% id=parameters tags=parameters
run: str = "experiments/runs/nb_pretrain"  # run folder or checkpoint (01_pretrain's default)
config: str = "experiments/configs/demo.yaml"  # preset of the baseline when run is empty
overrides: list = []  # evaluation-time config overrides (eval.*, data.root)
out_dir: str = ""  # folder to save evaluation.json and the figures to (empty: none)
probes: list = ["knn", "linear", "clusters", "seg", "box"]  # the probes to run
encoder: str = "student"  # student | labelling | reconstruction

# %% id=settings
SMOKE = "CI" in os.environ  # CI: a few-step quick run, small evaluation splits
run_path = nb.eval_target(run, SMOKE)
config_path, baseline_overrides = nb.settings(config, overrides, SMOKE)
shelf = nb.Shelf(out_dir)
print(f"evaluating: {nb.shown_path(run_path) if run_path else 'no run (baseline only)'}, "
      f"encoder {encoder}, probes {', '.join(probes)}")

# %% [markdown] id=probes-md
# ## The probes
# Every probe reads frozen features only (no fine-tuning). `difference` is pretrained minus
# random init: what pretraining bought. A probe that does not apply (e.g. seg/box on a dataset
# without masks, clusters without pseudo labels) is listed under notes.

# %% id=evaluate
results = nb.evaluate_against_baseline(run_path, probes, encoder,
                                       overrides if run_path else baseline_overrides,
                                       config_path)
shelf.save_json("evaluation", results)

# %% id=table
# NBVAL_CHECK_OUTPUT
print(nb.comparison(results, METRICS))
for name, r in results.items():
    for probe, why in r.get("notes", {}).items():
        print(f"note ({name}): {probe}: {why}")

# %% [markdown] id=plots-md
# ## As bars
# Accuracies, mIoU / IoU and cluster agreement are all in [0, 1]; the prototype counts are in
# the table above.

# %% id=plots
unit_metrics = [m for m in METRICS if m not in ("prototypes_used", "assignment_perplexity")]
shelf.show("probes", plots.comparison_bars(results, unit_metrics, title="frozen-feature probes"))

# %% [markdown] id=gallery-md
# ## What the pseudo labels group together
# Held-out images grouped by the class-token pseudo label of the run's labelling teacher (one row
# per label, the most used first, with its count). A trained teacher groups by shape; an
# untrained one by colour or not at all.

# %% id=gallery
if run_path is not None:
    gallery = nb.pseudo_label_gallery(load_run(run_path))
    if gallery is None:
        print("this run has no labelling teacher (method.pseudo_labels=none)")
    else:
        shelf.show("pseudo_labels", gallery)
