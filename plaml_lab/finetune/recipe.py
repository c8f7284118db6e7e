"""The fine-tuning recipe as small builders over timm's blocks (MAE / BEiT fine-tuning):

    classifier   timm VisionTransformer of the run's encoder shape + a linear head, drop path
    freeze       full fine-tuning or only the last K blocks (+ final norm + head)
    optimizer    AdamW through timm.optim.create_optimizer_v2 with layer-wise lr decay
    mixing       timm.data.Mixup (mixup / cutmix, with label smoothing folded into the targets)
    criterion    SoftTargetCrossEntropy with mixing, LabelSmoothingCrossEntropy without
    labels       a fixed, class-balanced fraction of the labelled training images

Everything here is a pure builder or a function of tensors; the loop lives in loop.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.models.vision_transformer import VisionTransformer
from timm.optim import create_optimizer_v2

from plaml_lab.data.transforms import normalize, random_resized_crop


def build_classifier(timm_kwargs: dict, num_classes: int, encoder_state: dict | None, *,
                     pool: str = "avg", drop_path: float = 0.0, seed: int = 0
                     ) -> VisionTransformer:
    """timm VisionTransformer of the encoder's shape with a `num_classes` linear head.

    encoder_state: our encoder's state dict (timm's names, no head): loaded strictly, so a
    missing or extra tensor is an error, not a silently random block. pool: 'avg' = mean of the
    data tokens after the final norm (MAE fine-tunes this way: an MAE's class token gets no
    training signal), 'token' = the class token. The head starts near zero (MAE: std 2e-5)."""
    torch.manual_seed(seed)
    model = VisionTransformer(**timm_kwargs, num_classes=0, global_pool=pool,
                              fc_norm=False,  # keep `norm` (ours) before pooling: same keys
                              drop_path_rate=drop_path)
    if encoder_state is not None:
        model.load_state_dict(encoder_state, strict=True)
    model.reset_classifier(num_classes)
    nn.init.trunc_normal_(model.head.weight, std=2e-5)
    nn.init.zeros_(model.head.bias)
    return model


def freeze_for_blocks(model: VisionTransformer, blocks: int) -> list[str]:
    """Train only the last `blocks` transformer blocks + final norm + head (-1: everything,
    0: the head and final norm only). Returns the names of the trainable parameters."""
    depth = len(model.blocks)
    first = 0 if blocks < 0 else depth - blocks
    for name, p in model.named_parameters():
        if name.startswith("blocks."):
            p.requires_grad = int(name.split(".")[1]) >= first
        elif name.startswith(("norm.", "head.", "fc_norm.")):
            p.requires_grad = True
        else:  # patch_embed, cls_token, pos_embed: below block 0
            p.requires_grad = blocks < 0
    return [n for n, p in model.named_parameters() if p.requires_grad]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    layer_decay: float) -> torch.optim.Optimizer:
    """AdamW (0.9, 0.999) via timm's factory: one param group per (layer, decay / no decay),
    each with `lr_scale` = layer_decay ** (num_layers - 1 - layer) (BEiT's layer-wise decay:
    patch embedding lowest, head 1.0). No weight decay on 1-D tensors, cls_token, pos_embed.
    Frozen parameters are left out."""
    return create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=weight_decay,
                               layer_decay=layer_decay if layer_decay < 1 else None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Apply a scheduled lr to every group, times its layer-decay scale."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def build_mixing(ft, num_classes: int) -> Mixup | None:
    """timm's Mixup (batch mode: one lambda per batch) or None when mixing is off."""
    if ft.mixup_prob <= 0 or (ft.mixup <= 0 and ft.cutmix <= 0):
        return None
    return Mixup(mixup_alpha=ft.mixup, cutmix_alpha=ft.cutmix, prob=ft.mixup_prob,
                 switch_prob=0.5, mode="batch", label_smoothing=ft.smoothing,
                 num_classes=num_classes)


def build_criterion(ft, mixing: Mixup | None) -> nn.Module:
    """Mixed soft targets already carry the smoothing; hard labels get it here."""
    if mixing is not None:
        return SoftTargetCrossEntropy()
    if ft.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=ft.smoothing)
    return nn.CrossEntropyLoss()


def label_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Indices of a class-balanced `fraction` of the labelled items (labels (N,), -1 =
    unlabelled): ceil(fraction * n_c) of each class c, drawn by a seeded permutation, sorted.
    The same (labels, fraction, seed) always give the same subset."""
    labels = torch.as_tensor(labels)
    g = torch.Generator().manual_seed(int(seed))
    keep = []
    for c in torch.unique(labels[labels >= 0]).tolist():
        idx = torch.nonzero(labels == c).flatten()
        n = max(1, math.ceil(fraction * len(idx)))
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    if not keep:
        return torch.zeros(0, dtype=torch.long)
    return torch.sort(torch.cat(keep)).values


class Subset(torch.utils.data.Dataset):
    """Items `indices` of `base`, with a batched `get_batch(idx)` (the loader's fast path):
    image (B, 3, H, W) float in [0, 1], label (B,). Unreadable folder images are dropped."""

    def __init__(self, base, indices: torch.Tensor):
        self.base = base
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.num_classes = int(getattr(base, "num_classes", 0) or 0)

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = self.indices[torch.as_tensor(idx, dtype=torch.long).cpu()]
        if hasattr(self.base, "get_batch"):
            b = self.base.get_batch(rows)
            return {"image": b["image"].float(), "label": torch.as_tensor(b["label"])}
        items = [it for it in (self.base[int(i)] for i in rows) if it is not None]
        if not items:
            return {"image": torch.zeros(0, 3, 1, 1), "label": torch.zeros(0, dtype=torch.long)}
        return {"image": torch.stack([it["image"] for it in items]).float(),
                "label": torch.as_tensor([int(it["label"]) for it in items])}


def dataset_labels(dataset) -> torch.Tensor:
    """(N,) int64 labels of a plaml_lab dataset (-1 = unlabelled), without loading images."""
    return torch.as_tensor(dataset.labels, dtype=torch.long)


def augment(images: torch.Tensor, img_size: int, crop_scale_min: float,
            generator: torch.Generator) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> random-resized-crop + flip, normalised (B, 3, S, S)."""
    views = random_resized_crop(images, img_size, scale=(crop_scale_min, 1.0), flip_p=0.5,
                                generator=generator)
    return normalize(views)


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Subset, *, device="cpu", batch_size: int = 256
             ) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of `model` on every item of `dataset` (whole
    images, no augmentation)."""
    was_training = model.training
    model.eval()
    n = len(dataset)
    correct, total, loss = 0, 0, 0.0
    for start in range(0, n, batch_size):
        batch = dataset.get_batch(torch.arange(start, min(n, start + batch_size)))
        keep = batch["label"] >= 0
        x = normalize(batch["image"][keep].to(device).float())
        y = batch["label"][keep].to(device)
        logits = model(x).float()
        loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += int(y.numel())
    model.train(was_training)
    return {"top1": correct / max(total, 1), "loss": loss / max(total, 1), "num": total}
