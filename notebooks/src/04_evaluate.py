# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Evaluate a run: every probe against the random-init baseline
#
# **What you will see.** The frozen encoder of one run (the student by default, or either
# teacher) scored by every probe of `plaml_lab.evaluate` on the held-out split, next to a
# random-init encoder of the same shape: weighted kNN and a linear probe (class token and
# mean-pooled data tokens), the labelling teacher's pseudo labels as clusters (NMI, ARI,
# prototypes used), and, on datasets with masks, a segmentation probe and a box probe on the
# data tokens; then the encoder fine-tuned with a classification head on a fraction of the
# labels (`finetune_top1`), against the same recipe from random init. Then the same numbers as
# bars, and the held-out images grouped by the pseudo label the run's labelling teacher gives
# them.
#
# The same from a shell: `plaml-lab eval --checkpoint RUN` (and `--random-init`), `plaml-lab
# finetune --checkpoint RUN --fraction 0.1` (and `--random-init`). Batch use:
# `papermill notebooks/04_evaluate.ipynb out.ipynb -p run experiments/runs/dual`. Under CI
# (`CI` set) a few-step quick run is trained and evaluated on small splits.

# %%
import os

from plaml_lab import notebook as nb
from plaml_lab.finetune import finetune
from plaml_lab.lab.ablation import FINETUNE_BUDGET, METRICS
from plaml_lab.runs import load_run
from plaml_lab.viz import results as plots

# %% [markdown]
# ## Parameters
# `overrides` change evaluation settings of the run's config, e.g. `["eval.max_train=2000",
# "eval.knn_k=10"]`; `probes` any of `knn, linear, clusters, seg, box`
# (`-y 'probes: [knn, linear]'` from papermill).

# %% tags=["parameters"]
run: str = "experiments/runs/nb_pretrain"  # run folder or checkpoint (01_pretrain's default)
config: str = "experiments/configs/demo.yaml"  # preset of the baseline when run is empty
overrides: list = []  # evaluation-time config overrides (eval.*, data.root)
out_dir: str = ""  # folder to save evaluation.json and the figures to (empty: none)
probes: list = ["knn", "linear", "clusters", "seg", "box"]  # the probes to run
encoder: str = "student"  # student | labelling | reconstruction
finetune_fraction: float = 0.1  # labels the fine-tuning sees (the ablation table's budget)
finetune_epochs: float = 3.0  # fine-tuning epochs over them (0: no fine-tuning)

# %%
SMOKE = "CI" in os.environ  # CI: a few-step quick run, small evaluation splits
run_path = nb.eval_target(run, SMOKE)
config_path, baseline_overrides = nb.settings(config, overrides, SMOKE)
shelf = nb.Shelf(out_dir)
print(f"evaluating: {nb.shown_path(run_path) if run_path else 'no run (baseline only)'}, "
      f"encoder {encoder}, probes {', '.join(probes)}")

# %% [markdown]
# ## The probes
# Every probe reads frozen features only (no fine-tuning). `difference` is pretrained minus
# random init: what pretraining bought. A probe that does not apply (e.g. seg/box on a dataset
# without masks, clusters without pseudo labels) is listed under notes.

# %%
results = nb.evaluate_against_baseline(run_path, probes, encoder,
                                       overrides if run_path else baseline_overrides,
                                       config_path)
shelf.save_json("evaluation", results)

# %% [markdown]
# ## Fine-tuned, not only probed
# Frozen features undersell ViT encoders, MAE-style ones most (lightly measured an MAE ViT-B on
# ImageNet at kNN 11.2, linear 46.0, fine-tuned 81.3). `plaml-lab finetune` trains the encoder
# with a linear head through timm's blocks: layer-wise lr decay, drop path, mixup / cutmix, label
# smoothing, warm-up + cosine, with the ablation table's budget (`FINETUNE_BUDGET`: by default
# 10% of the labels, 3 epochs, no mixup / cutmix at so few epochs), from the run's encoder and,
# the same recipe, from random init. The runs go to `RUN/finetune/<tag>/` and resume.

# %%
if run_path is not None and finetune_epochs > 0:
    budget = [*FINETUNE_BUDGET, f"finetune.epochs={finetune_epochs}"] + (
        ["finetune.batch_size=16"] if SMOKE else [])
    for name, random_init in (("pretrained", False), ("random init", True)):
        ft = finetune(run_path, fraction=finetune_fraction, random_init=random_init,
                      encoder=encoder, overrides=[*overrides, *budget], progress=False)
        results[name]["finetune_top1"] = ft["finetune_top1"]
        print(f"{name}: fine-tuned on {ft['num_train']} labelled images, {ft['steps']} steps "
              f"in {ft['train_seconds']} s")
    shelf.save_json("evaluation", results)

# %%
# NBVAL_CHECK_OUTPUT
print(nb.comparison(results, METRICS, coarse_values=True))
for name, r in results.items():
    for probe, why in r.get("notes", {}).items():
        print(f"note ({name}): {probe}: {why}")

# %%
# the values (their last digits differ between CPU classes and precisions)
print(nb.comparison(results, METRICS))

# %% [markdown]
# ## As bars
# Accuracies, mIoU / IoU and cluster agreement are all in [0, 1]; the prototype counts are in
# the table above.

# %%
unit_metrics = [m for m in METRICS if m not in ("prototypes_used", "assignment_perplexity")]
shelf.show("probes", plots.comparison_bars(results, unit_metrics, title="frozen-feature probes"))

# %% [markdown]
# ## What the pseudo labels group together
# Held-out images grouped by the class-token pseudo label of the run's labelling teacher (one row
# per label, the most used first, with its count). A trained teacher groups by shape; an
# untrained one by colour or not at all.

# %%
if run_path is not None:
    gallery = nb.pseudo_label_gallery(load_run(run_path))
    if gallery is None:
        print("this run has no labelling teacher (method.pseudo_labels=none)")
    else:
        shelf.show("pseudo_labels", gallery)
