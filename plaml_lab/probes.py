"""Probes on frozen features: pure functions of feature tensors, labels and masks.

Everything here is deterministic: linear probes are full-batch L-BFGS from zero weights on a
convex, L2-regularised loss (one optimum, whatever the seed), so the same features always give
the same numbers. Feature extraction lives in evaluate.py; nothing here touches a model.

Shapes: N images, L = g*g data tokens per image (patch grid g), D feature width,
H x W pixels, patch size p (H = g * p).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

SMALL_PROBLEM = 1 << 22  # N * D * C below which a probe fits on one thread


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run the block with n torch CPU threads (None or 0: leave as is), then restore."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Linear (softmax-regression) probe


def standardize(train: torch.Tensor, *others: torch.Tensor, eps: float = 1e-6
                ) -> tuple[torch.Tensor, ...]:
    """Scale features by the training set's per-dimension mean and std (train (N, D), others
    (M, D)): a probe then needs no learning-rate tuning per encoder."""
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True).clamp(min=eps)
    return tuple((x - mean) / std for x in (train, *others))


def fit_softmax_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, *,
                           l2: float = 1e-4, max_iter: int = 1000, tol: float = 1e-6
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS: x (N, D) float, y (N,) int64 in
    [0, num_classes) -> weight (num_classes, D), bias (num_classes,).

    Loss: mean cross-entropy + l2/2 ||W||^2. The L2 term keeps the optimum finite on separable
    features (without it L-BFGS would chase infinite weights) and makes the loss strictly convex,
    so starting from zeros the result does not depend on any seed."""
    x = x.float()
    # A small problem costs more in waking BLAS threads than in arithmetic (measured 15-60x
    # slower per L-BFGS step with 2 threads than with 1 on a busy 2-core machine): go 1-thread.
    threads = 1 if x.shape[0] * x.shape[1] * num_classes < SMALL_PROBLEM else None
    with num_threads(threads):
        return _fit_lbfgs(x, y, num_classes, l2, max_iter, tol)


def _fit_lbfgs(x, y, num_classes, l2, max_iter, tol):
    w = torch.zeros(num_classes, x.shape[1], requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=tol * 1e-3, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(F.linear(x, w, b), y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def predict_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (N, D) -> logits (N, C)."""
    return F.linear(x.float(), weight, bias)


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                          test_y: torch.Tensor, num_classes: int | None = None, *,
                          l2: float = 1e-4, max_iter: int = 1000) -> float:
    """Top-1 of a standardised softmax-regression probe: train (N, D) / (N,), test (M, D) / (M,)."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1 if num_classes is None else num_classes
    tr, te = standardize(train_x.float(), test_x.float())
    w, b = fit_softmax_regression(tr, train_y, num_classes, l2=l2, max_iter=max_iter)
    pred = predict_logits(te, w, b).argmax(1)
    return float((pred == test_y).float().mean())


# --------------------------------------------------------------------------------------------
# Cluster metrics of pseudo labels


def cluster_metrics(assignments: torch.Tensor, labels: torch.Tensor | None = None,
                    num_prototypes: int | None = None) -> dict:
    """Pseudo labels (N,) int (argmax prototype per image) against true labels (N,) ->
    nmi, ari (sklearn; only with labels), prototypes_used (distinct prototypes assigned) and
    assignment_perplexity = exp(entropy of the assignment histogram): the effective number of
    prototypes in use, 1 when everything collapses onto one prototype."""
    a = assignments.long().cpu()
    counts = torch.bincount(a, minlength=num_prototypes or 0).double()
    p = counts[counts > 0] / counts.sum()
    out = {"prototypes_used": int((counts > 0).sum()),
           "assignment_perplexity": float(torch.exp(-(p * p.log()).sum()))}
    if num_prototypes is not None:
        out["num_prototypes"] = int(num_prototypes)
    if labels is not None:
        out.update(nmi_ari(a, labels))
    return out


def nuisance_factors(images: torch.Tensor, masks: torch.Tensor, bins: int = 5
                     ) -> dict[str, torch.Tensor]:
    """What a shapes image shows besides its class, from its pixels and object mask:
    images uint8 or float (N, 3, H, W), masks (N, H, W) (> 0 = object) -> {factor: (N,) int}.
    fg_grey / bg_grey: mean luma of the object / the background; polarity: object brighter
    than the background; area: object fraction of the image; x / y: object centroid. Continuous
    factors are cut into `bins` equal-count bins, so an NMI against them reads like the NMI
    against a `bins`-class label."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).flatten(1)
    obj = (masks > 0).flatten(1).float()
    area = obj.mean(1)
    fg = (luma * obj).sum(1) / obj.sum(1).clamp_min(1)
    bg = (luma * (1 - obj)).sum(1) / (1 - obj).sum(1).clamp_min(1)
    h, w = masks.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    cx = (obj * xs.flatten()).sum(1) / obj.sum(1).clamp_min(1)
    cy = (obj * ys.flatten()).sum(1) / obj.sum(1).clamp_min(1)

    def binned(v: torch.Tensor) -> torch.Tensor:
        edges = torch.quantile(v, torch.linspace(0, 1, bins + 1)[1:-1])
        return torch.bucketize(v, edges)

    return {"fg_grey": binned(fg), "bg_grey": binned(bg), "polarity": (fg > bg).long(),
            "area": binned(area), "x": binned(cx), "y": binned(cy)}


def nmi_ari(assignments, labels) -> dict[str, float]:
    """NMI and ARI (scikit-learn) between assignments (N,) and labels (N,), both int arrays or
    tensors; items with label < 0 (unlabelled) are left out; {} when fewer than 2 remain."""
    # sklearn.metrics takes seconds to import: only code that scores clusters pays for it
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    a = torch.as_tensor(assignments).long().cpu().numpy()
    y = torch.as_tensor(labels).long().cpu().numpy()
    keep = y >= 0
    if keep.sum() < 2:
        return {}
    # NMI is not corrected for chance: many small clusters score above 0 against any labels.
    # nmi_shuffled (the same clusters against permuted labels) is that floor; ami corrects it.
    from sklearn.metrics import adjusted_mutual_info_score
    a, y = a[keep], y[keep]
    shuffled = y[np.random.default_rng(0).permutation(len(y))]
    return {"nmi": float(normalized_mutual_info_score(y, a)),
            "ari": float(adjusted_rand_score(y, a)),
            "ami": float(adjusted_mutual_info_score(y, a)),
            "nmi_shuffled": float(normalized_mutual_info_score(shuffled, a))}


# --------------------------------------------------------------------------------------------
# Dense probes: per-patch targets from pixel masks


def _patch_counts(masks: torch.Tensor, patch_size: int, num_classes: int) -> torch.Tensor:
    """masks (N, H, W) int in [0, num_classes) -> pixel counts per patch and class
    (N, L, num_classes), patches in row-major order (the encoder's token order)."""
    n, h, w = masks.shape
    g_h, g_w = h // patch_size, w // patch_size
    m = masks[:, :g_h * patch_size, :g_w * patch_size].long()
    onehot = F.one_hot(m, num_classes).float()  # (N, H, W, C)
    onehot = onehot.view(n, g_h, patch_size, g_w, patch_size, num_classes)
    return onehot.sum(dim=(2, 4)).view(n, g_h * g_w, num_classes)


def patch_majority_labels(masks: torch.Tensor, patch_size: int, num_classes: int) -> torch.Tensor:
    """masks (N, H, W) -> (N, L) int64: the most frequent class in each patch (ties go to the
    lower class id, i.e. to background)."""
    return _patch_counts(masks, patch_size, num_classes).argmax(-1)


def patch_objectness(masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """masks (N, H, W), 0 = background -> (N, L) int64: 1 where at least half of the patch's
    pixels belong to the object."""
    counts = _patch_counts((masks > 0).long(), patch_size, 2)
    return (counts[..., 1] * 2 >= patch_size * patch_size).long()


def upsample_patch_labels(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Patch-level predictions (N, L) -> pixel labels (N, H, W) by nearest upsampling."""
    n, L = pred.shape
    g = math.isqrt(L)
    grid = pred.view(n, 1, g, g).float()
    return F.interpolate(grid, size=size, mode="nearest").view(n, *size).long()


def segmentation_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict:
    """pred, target (N, H, W) int -> miou (mean IoU over classes present in target), pixel_acc,
    and the per-class IoU list (NaN for classes absent from target)."""
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    conf = torch.bincount(t * num_classes + p, minlength=num_classes ** 2)
    conf = conf.view(num_classes, num_classes).double()  # rows: true, columns: predicted
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    present = conf.sum(1) > 0
    iou = torch.where(present, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    return {"miou": float(iou[present].mean()), "pixel_acc": float(tp.sum() / conf.sum()),
            "iou_per_class": [None if math.isnan(v) else round(v, 6) for v in iou.tolist()]}


def seg_probe(train_patches: torch.Tensor, train_masks: torch.Tensor, test_patches: torch.Tensor,
              test_masks: torch.Tensor, patch_size: int, num_seg_classes: int, *,
              l2: float = 1e-4, max_iter: int = 1000) -> dict:
    """Linear per-patch classifier on frozen data tokens.

    train/test_patches (N, L, D), masks (N, H, W) with classes in [0, num_seg_classes).
    Trained on each patch's majority class, predicted at patch resolution, upsampled (nearest)
    to pixels and scored there: seg_miou, seg_pixel_acc."""
    d = train_patches.shape[-1]
    y = patch_majority_labels(train_masks, patch_size, num_seg_classes).reshape(-1)
    tr, te = standardize(train_patches.reshape(-1, d).float(), test_patches.reshape(-1, d).float())
    w, b = fit_softmax_regression(tr, y, num_seg_classes, l2=l2, max_iter=max_iter)
    pred = predict_logits(te, w, b).argmax(1).view(test_patches.shape[:2])
    pixels = upsample_patch_labels(pred, tuple(test_masks.shape[1:]))
    s = segmentation_scores(pixels, test_masks, num_seg_classes)
    return {"seg_miou": s["miou"], "seg_pixel_acc": s["pixel_acc"]}


# --------------------------------------------------------------------------------------------
# Box probe: patch objectness -> one box per image


def boxes_from_objectness(prob: torch.Tensor, patch_size: int, threshold: float = 0.5
                          ) -> torch.Tensor:
    """Objectness (N, L) in [0, 1] -> boxes (N, 4) xyxy pixels (x1, y1 exclusive): the bounding
    box of patches above threshold; an image with none gets its most object-like patch."""
    n, L = prob.shape
    g = math.isqrt(L)
    on = prob > threshold
    fallback = F.one_hot(prob.argmax(1), L).bool()
    on = torch.where(on.any(1, keepdim=True), on, fallback).view(n, g, g)
    cols, rows = on.any(1), on.any(2)  # (N, g) each
    x0 = cols.float().argmax(1)
    x1 = g - cols.flip(1).float().argmax(1)
    y0 = rows.float().argmax(1)
    y1 = g - rows.flip(1).float().argmax(1)
    return torch.stack([x0, y0, x1, y1], 1).float() * patch_size


def _box_area(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 2] - x[:, 0]).clamp(min=0) * (x[:, 3] - x[:, 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Paired boxes a, b (N, 4) xyxy -> IoU (N,); 0 where both are empty."""
    ix = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    iy = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = ix * iy
    union = _box_area(a) + _box_area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def box_probe(train_patches: torch.Tensor, train_masks: torch.Tensor, test_patches: torch.Tensor,
              test_boxes: torch.Tensor, patch_size: int, *, l2: float = 1e-4,
              max_iter: int = 1000) -> dict:
    """Logistic per-patch objectness probe on frozen data tokens -> one box per image.

    train_patches (N, L, D), train_masks (N, H, W) (0 = background), test_patches (M, L, D),
    test_boxes (M, 4) xyxy pixels. Returns box_mean_iou and box_iou50 (fraction of images with
    IoU >= 0.5)."""
    d = train_patches.shape[-1]
    y = patch_objectness(train_masks, patch_size).reshape(-1)
    tr, te = standardize(train_patches.reshape(-1, d).float(), test_patches.reshape(-1, d).float())
    w, b = fit_softmax_regression(tr, y, 2, l2=l2, max_iter=max_iter)
    prob = predict_logits(te, w, b).softmax(1)[:, 1].view(test_patches.shape[:2])
    iou = box_iou(boxes_from_objectness(prob, patch_size), test_boxes.float())
    return {"box_mean_iou": float(iou.mean()), "box_iou50": float((iou >= 0.5).float().mean())}
