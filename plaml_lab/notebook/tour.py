"""The method tour (notebooks/00_method_tour.ipynb): one batch through PLAML with every
intermediate kept, and the figures that teach the method from it.

`one_batch` runs exactly the training forward (`PLAML.forward(return_details=True)`) on a few
held-out images, in eval mode and without gradients, so touring a run never changes it (the
DINO centers move only in training mode). Everything random (views, masks) comes from one
seeded generator, so the tour is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from plaml_lab.data import build_dataset, get_items, make_views, unnormalize
from plaml_lab.method import LOSS_KEYS
from plaml_lab.runs import Run
from plaml_lab.viz import canvas as C
from plaml_lab.viz import figures as F


@dataclass
class Tour:
    """images (B, 3, H, W) in [0, 1]; views: V views, each (B, 3, H, W) in [0, 1] (display
    form of what the model saw); out: PLAML.forward(..., return_details=True) on the views,
    tensors of V*B rows (view-major); labels (B,) the dataset's classes."""

    run: Run
    images: torch.Tensor
    labels: torch.Tensor
    views: list[torch.Tensor]
    out: dict[str, torch.Tensor]

    @property
    def cfg(self):
        return self.run.cfg


@torch.no_grad()
def one_batch(run: Run, num_images: int = 4, seed: int = 0, split: str = "val") -> Tour:
    """The first `num_images` items of `split`, augmented into cfg.data.views views and masked
    with cfg.mask, through the student, both teachers and every loss."""
    cfg = run.cfg
    ds = build_dataset(cfg.data, cfg.model.img_size, split)
    batch = get_items(ds, torch.arange(min(num_images, len(ds))))
    images = batch["image"]
    g = torch.Generator().manual_seed(seed)
    views = make_views(images, cfg.data.aug, cfg.data.views, cfg.model.img_size, generator=g)
    model = run.model.eval()
    out = model(views, cfg.pl.teacher_temp, patch_teacher_temp=model.final_temp("patch"),
                generator=g, return_details=True)
    return Tour(run=run, images=images, labels=batch["label"], views=[unnormalize(v) for v in views],
                out={k: v.detach() for k, v in out.items()})


# --- text ---------------------------------------------------------------------------------------

def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def describe(tour: Tour) -> str:
    """What each stage produced, as shapes and counts (deterministic text for notebooks)."""
    cfg, o = tour.cfg, tour.out
    s = tour.run.model.student
    b, v = tour.images.shape[0], len(tour.views)
    L = s.num_patches
    M = o["ids_masked"].shape[1]
    lines = [
        f"variant: target={cfg.method.target}, pseudo_labels={cfg.method.pseudo_labels}, "
        f"teachers={cfg.method.teachers} ({', '.join(cfg.teacher_roles) or 'no teacher'})",
        f"batch: {b} images x {v} view(s) = {b * v} rows; {L} data tokens per image "
        f"({cfg.model.img_size}px / {cfg.model.patch_size}px patches)",
        f"mask {_shape(o['mask'])}: {M} of {L} data tokens hidden per row (mask.ratio="
        f"{cfg.mask.ratio}, {cfg.mask.strategy})",
        f"student visible tokens {_shape(o['latent'])}: class token + {L - M} visible data tokens",
    ]
    if "pred_tokens" in o:
        lines.append(f"predicted tokens {_shape(o['pred_tokens'])}: decoder -> token predictor "
                     "at the hidden positions")
    if "pred_pixels" in o:
        lines.append(f"predicted pixels {_shape(o['pred_pixels'])}: decoder -> "
                     f"{cfg.model.patch_size}x{cfg.model.patch_size}x3 values per patch")
    if "teacher_rec" in o:
        lines.append(f"reconstruction teacher targets {_shape(o['teacher_rec'])}: its data tokens "
                     f"at the hidden positions (last {cfg.rec.target_layers} block(s), "
                     f"{cfg.rec.target_norm}-normalised)")
    if "teacher_cls" in o:
        lines.append(f"class-token pseudo labels {_shape(o['teacher_cls'])}: labelling teacher's "
                     f"distribution over {cfg.pl.num_prototypes} prototypes")
    if "teacher_patch" in o:
        lines.append(f"data-token pseudo labels {_shape(o['teacher_patch'])}: one distribution per "
                     "hidden data token")
    return "\n".join(lines)


def loss_table(tour: Tour, digits: int = 3) -> str:
    """The loss parts of the batch and the weights that combine them."""
    w = tour.cfg.loss
    weights = {"loss_rec": w.w_rec, "loss_cls": w.w_cls, "loss_patch": w.w_patch}
    lines = []
    for k in LOSS_KEYS:
        val = float(tour.out[k])
        extra = f"  (weight {weights[k]:g})" if k in weights else "  (weighted sum)"
        lines.append(f"{k:<11} {val:.{digits}f}{extra}")
    return "\n".join(lines)


def pseudo_label_summary(tour: Tour) -> str:
    """Hard pseudo labels (argmax prototype) of the first view: per image for the class token,
    and how many distinct prototypes the hidden data tokens use."""
    o, b = tour.out, tour.images.shape[0]
    lines = []
    if "teacher_cls" in o:
        ids = o["teacher_cls"][:b].argmax(-1).tolist()
        conf = o["teacher_cls"][:b].max(-1).values.tolist()
        lines.append("class-token pseudo label per image: " +
                     ", ".join(f"#{i} (p={c:.2f})" for i, c in zip(ids, conf)))
    if "teacher_patch" in o:
        ids = o["teacher_patch"][:b].argmax(-1)
        used = [len(set(r.tolist())) for r in ids]
        lines.append(f"distinct data-token pseudo labels per image (of {ids.shape[1]} hidden "
                     f"tokens): {used}")
    return "\n".join(lines) or "this variant has no pseudo labels"


# --- figures ------------------------------------------------------------------------------------

def views_figure(tour: Tour, max_images: int = 4) -> np.ndarray:
    """Each image and its augmented views (what the student and teachers are given), as an
    (H, W, 3) uint8 canvas."""
    n = min(max_images, tour.images.shape[0])
    items = []
    for i in range(n):
        items.append((f"image {i} (class {int(tour.labels[i])})", F.image_hwc(tour.images[i])))
        for j, view in enumerate(tour.views):
            items.append((f"view {'ab'[j] if j < 2 else j}", F.image_hwc(view[i])))
    return C.compose(items, ncols=1 + len(tour.views), panel=96)


def mask_figure(tour: Tour, max_images: int = 4):
    """View a and the student's input: hidden patches grey."""
    b = tour.images.shape[0]
    n = min(max_images, b)
    return F.mask_grid(tour.views[0][:n], tour.out["mask"][:n], tour.cfg.model.patch_size)


def _on_grid(values: np.ndarray, ids: torch.Tensor, num_patches: int) -> np.ndarray:
    """Per-position colours (M, 3) at positions ids (M,) -> (L, 3), other positions grey."""
    out = np.full((num_patches, 3), F.HIDDEN_GREY, dtype=np.float32)
    out[ids.cpu().numpy()] = values
    return out


def token_figure(tour: Tour, max_images: int = 3) -> np.ndarray:
    """Per image (view a): the student's visible tokens, the predicted tokens at the hidden
    positions, the reconstruction teacher's targets there, and the data-token pseudo labels,
    as an (H, W, 3) uint8 canvas. Tokens are coloured by a PCA fitted on the teacher targets
    (or the student's tokens), so matching colours mean matching tokens."""
    cfg, o = tour.cfg, tour.out
    s = tour.run.model.student
    L, p = s.num_patches, cfg.model.patch_size
    n = min(max_images, tour.images.shape[0])
    visible = o["latent"][:, 1:]  # (VB, L - M, D)
    fit = o["teacher_rec"].reshape(-1, o["teacher_rec"].shape[-1]) if "teacher_rec" in o \
        else visible.reshape(-1, visible.shape[-1])
    items = []
    for i in range(n):
        keep, hid = o["ids_keep"][i], o["ids_masked"][i]
        cols = F.pca_rgb(fit, visible[i], *[o[k][i] for k in ("pred_tokens", "teacher_rec")
                                            if k in o])
        vis_map = _on_grid(cols[0], keep, L)
        items.append((f"image {i}: visible tokens", F.patch_to_pixels(vis_map, p)))
        k = 1
        for key, title in (("pred_tokens", "predicted tokens"),
                           ("teacher_rec", "teacher targets")):
            if key in o:
                items.append((title, F.patch_to_pixels(_on_grid(cols[k], hid, L), p)))
                k += 1
            else:
                items.append((f"{title}:\nnot in this variant", None))
        if "teacher_patch" in o:
            lab = torch.full((L,), -1, dtype=torch.long)
            lab[hid] = o["teacher_patch"][i].argmax(-1)
            items.append(("data-token pseudo labels",
                          F.patch_to_pixels(F.label_map(lab, cfg.pl.num_prototypes), p)))
        else:
            items.append(("data-token pseudo labels:\noff in this variant", None))
    return C.compose(items, ncols=4, panel=96)


def class_token_figure(tour: Tour, max_images: int = 4, top: int = 8):
    """The labelling teacher's class-token distribution for each image of view a and view b
    (the student of view a is trained towards view b's, and vice versa), top prototypes."""
    o = tour.out
    fig = F.new_figure(6.0, 1.4 * min(max_images, tour.images.shape[0]) + 0.3)
    if "teacher_cls" not in o:
        fig.text(0.5, 0.5, "this variant has no class-token pseudo labels", ha="center")
        return fig
    b = tour.images.shape[0]
    n = min(max_images, b)
    v = len(tour.views)
    probs = o["teacher_cls"].reshape(v, b, -1)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for i, ax in enumerate(axes):
        order = torch.argsort(probs[0, i], descending=True)[:top]
        xs = np.arange(len(order))
        width = 0.8 / v
        for j in range(v):
            ax.bar(xs + j * width, F.to_numpy(probs[j, i, order]), width,
                   label=f"view {'ab'[j] if j < 2 else j}")
        ax.set_xticks(xs + width * (v - 1) / 2, [f"#{int(k)}" for k in order], fontsize=7)
        ax.set_ylabel(f"image {i}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[0].set_title("class-token pseudo labels (labelling teacher, top prototypes)", fontsize=9)
    fig.tight_layout()
    return fig


def loss_figure(tour: Tour):
    """The loss terms of this batch, weighted, and their sum."""
    w = tour.cfg.loss
    parts = [("loss_rec", w.w_rec), ("loss_cls", w.w_cls), ("loss_patch", w.w_patch)]
    fig = F.new_figure(4.5, 2.4)
    ax = fig.subplots()
    names = [k for k, _ in parts] + ["loss"]
    vals = [wt * float(tour.out[k]) for k, wt in parts] + [float(tour.out["loss"])]
    ax.bar(names, vals, color=["C0", "C1", "C2", "0.3"])
    for x, y in enumerate(vals):
        ax.text(x, y, f"{y:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("weighted value")
    ax.set_title("loss terms of this batch", fontsize=9)
    fig.tight_layout()
    return fig
