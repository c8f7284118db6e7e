"""Figures of what a model does on held-out images, from the model itself (no run folder
needed): the demo saves them next to a finished run, the TensorBoard sink logs them while
training."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from plaml_lab.data import build_dataset, normalize
from plaml_lab.method.losses import unpatchify
from plaml_lab.viz import figures as F


def held_out_images(cfg, num_images: int) -> torch.Tensor:
    """The first `num_images` held-out images of cfg's dataset, (N, 3, H, W) in [0, 1]."""
    val = build_dataset(cfg.data, cfg.model.img_size, "val")
    return val.get_batch(torch.arange(min(num_images, len(val))))["image"]


@torch.no_grad()
def model_figures(model, cfg, images: torch.Tensor) -> dict[str, Figure]:
    """masks (and pixel reconstructions in pixel mode) and images grouped by the labelling
    teacher's class-token pseudo label, for images (N, 3, H, W) in [0, 1]. The model is put in
    eval mode for the forward and given back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = model([normalize(images.to(device))], cfg.pl.teacher_temp,
                    patch_teacher_temp=model.final_temp("patch"), return_details=True,
                    generator=torch.Generator(device).manual_seed(0))
    finally:
        model.train(was_training)
    images = images.cpu()
    recon = None
    if "pred_pixels" in out:
        # the decoder predicts per-patch normalised pixels: show them rescaled to [0, 1]
        pred = out["pred_pixels"].float().cpu()
        pred = (pred - pred.amin(-1, keepdim=True)) / (pred.amax(-1, keepdim=True)
                                                     - pred.amin(-1, keepdim=True) + 1e-6)
        recon = unpatchify(pred, cfg.model.patch_size)
    figs = {"masks": F.mask_grid(images, out["mask"].cpu(), cfg.model.patch_size, recon=recon)}
    if "teacher_cls_scores" in out:
        figs["pseudo_labels"] = F.pseudo_label_grid(
            images, model.pseudo_labels(out["teacher_cls_scores"], "cls").cpu())
    return figs


def demo_figures(run, num_images: int = 256) -> dict[str, Figure]:
    """model_figures of a loaded run on its first `num_images` held-out images."""
    return model_figures(run.model, run.cfg, held_out_images(run.cfg, num_images))
