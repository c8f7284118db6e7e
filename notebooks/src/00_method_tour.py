# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A tour of the method: one batch through PL-MAE
#
# **What you will see.** A handful of held-out images go through one training step's forward
# pass of the paper's model, with every intermediate kept: the augmented views, the random mask,
# the student's visible tokens, the tokens its decoder predicts at the hidden positions, the
# reconstruction teacher's targets there, the labelling teacher's pseudo labels for the class
# token and for each hidden data token, and the three loss terms they feed. Nothing is trained
# here; by default the model is freshly initialised (set `run` to tour a pretrained one).
#
# The pieces are the ones `plaml_lab.method.PLAML.forward(..., return_details=True)` returns;
# the figures come from `plaml_lab.notebook.tour`. Under CI (`CI` set) the quick preset is used.

# %%
import os

from plaml_lab import notebook as nb
from plaml_lab.notebook import tour

# %% [markdown]
# ## Parameters
# `overrides` takes dotted `key=value` strings as on the CLI, e.g.
# `["method.target=pixels", "method.pseudo_labels=none"]` (the pixel MAE) or `["mask.ratio=0.5"]`.
# From papermill: `-p overrides '["mask.ratio=0.5"]'` or `-y 'overrides: [mask.ratio=0.5]'`.

# %% tags=["parameters"]
config: str = "experiments/configs/demo.yaml"  # preset of the model (when no run is given)
overrides: list = []  # dotted config overrides as on the CLI (examples above)
out_dir: str = ""  # folder to also save the figures to (empty: only show them)
run: str = ""  # a run folder or checkpoint to tour (empty: a random-init model)
num_images: int = 4  # images in the batch
seed: int = 0  # seeds the views and the masks

# %%
SMOKE = "CI" in os.environ  # CI: the quick preset
config_path, model_overrides = nb.settings(config, overrides, SMOKE)
model = nb.open_run(run, config_path, model_overrides)
shelf = nb.Shelf(out_dir)

# %% [markdown]
# ## One batch, stage by stage
# Each image is augmented into `data.views` views (two by default: the class-token loss is
# cross-view, as in DINO). Every row of the batch gets its own random mask; the student encoder
# sees only the visible data tokens plus the class token, the teachers see the full views.

# %%
# NBVAL_CHECK_OUTPUT
batch = tour.one_batch(model, num_images=num_images, seed=seed)
print(tour.describe(batch))

# %% [markdown]
# ## The images and their views
# Random resized crops, flips and colour jitter: the pseudo labels must not depend on them.

# %%
shelf.show("views", tour.views_figure(batch))

# %% [markdown]
# ## The mask: what the student sees
# Grey patches are hidden from the student (`mask.ratio` of them, `mask.strategy` random or
# block). These are the positions where it must predict the teacher's tokens and pseudo labels.

# %%
shelf.show("mask", tour.mask_figure(batch))

# %% [markdown]
# ## Tokens: visible, predicted, targets, pseudo labels
# For view a of each image, on the patch grid: the student encoder's output at the visible
# positions; the decoder + token predictor's output at the hidden ones; the reconstruction
# teacher's (layer-normalised) tokens there, which `loss_rec` pulls the predictions towards;
# and each hidden token's pseudo label (the labelling teacher's most likely prototype, one colour
# per prototype), which `loss_patch` trains the student's patch head to predict. Token colours
# come from one PCA fitted on the teacher targets, so similar colours mean similar tokens.

# %%
shelf.show("tokens", tour.token_figure(batch))

# %% [markdown]
# ## Class-token pseudo labels
# The labelling teacher's distribution over prototypes for each view's class token (centred and
# sharpened, as DINO). The student's class token of view a is trained towards view b's target and
# vice versa (`loss_cls`). An untrained teacher spreads its mass; a trained one is confident and
# agrees across views.

# %%
shelf.show("class_token", tour.class_token_figure(batch))

# %%
# NBVAL_CHECK_OUTPUT
print(tour.pseudo_label_summary(batch))

# %% [markdown]
# ## The loss terms
# `loss = w_rec * loss_rec + w_cls * loss_cls + w_patch * loss_patch` (`loss.*` weights). A
# pixel-reconstructing MAE (`method.target=pixels`) has only `loss_rec`; `method.pseudo_labels`
# switches the other two.

# %%
# NBVAL_CHECK_OUTPUT
print(tour.loss_table(batch))

# %%
shelf.show("losses", tour.loss_figure(batch))

# %% [markdown]
# ## Next
# `01_pretrain` trains this model (any variant through `overrides`); re-run this tour with
# `run` set to its run folder to see trained tokens and confident pseudo labels.
