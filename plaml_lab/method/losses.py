"""Losses of the method as pure functions of tensors.

Pixel reconstruction (MAE), token reconstruction (data2vec/dBOT-style targets), and the
pseudo-label cross-entropy with its two ways of turning teacher scores into targets: centering +
sharpening (DINO) or Sinkhorn-Knopp (SwAV / DINOv2). Only `sinkhorn_knopp` and `batch_mean` talk
to torch.distributed, and only when it is initialised.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


# --- pixels ----------------------------------------------------------------------------------

def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, p*p*C) in MAE's order ('nchpwq->nhwpqc')."""
    n, c, h, w = imgs.shape
    p = patch_size
    gh, gw = h // p, w // p
    x = imgs.reshape(n, c, gh, p, gw, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, gh * gw, p * p * c)


def unpatchify(x: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """(N, L, p*p*C) -> (N, C, H, W), the inverse of patchify."""
    n, L, _ = x.shape
    p = patch_size
    g = int(round(L ** 0.5))
    x = x.reshape(n, g, g, p, p, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(n, channels, g * p, g * p)


def pixel_targets(imgs: torch.Tensor, patch_size: int, norm_pix: bool = True) -> torch.Tensor:
    """MAE's target: patchified pixels, each patch normalised by its mean and unbiased variance."""
    target = patchify(imgs, patch_size)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    return target


def pixel_loss(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor, patch_size: int,
               norm_pix: bool = True) -> torch.Tensor:
    """MAE's loss: pred (N, L, p*p*C), imgs (N, C, H, W), mask (N, L) 1 = hidden.
    Mean squared error per patch, averaged over hidden patches only."""
    target = pixel_targets(imgs, patch_size, norm_pix)
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


# --- tokens ----------------------------------------------------------------------------------

def normalize_target_layer(x: torch.Tensor, kind: str) -> torch.Tensor:
    """One teacher layer's data tokens (N, L, D), normalised as data2vec does before averaging:
    'layer' = per-token LayerNorm without affine, 'instance' = per-channel over the tokens of an
    image, 'none' = as is."""
    if kind == "layer":
        return F.layer_norm(x.float(), x.shape[-1:])
    if kind == "instance":
        return F.instance_norm(x.float().transpose(1, 2)).transpose(1, 2)
    if kind == "none":
        return x.float()
    raise ValueError(f"rec.target_norm={kind!r}: allowed values are layer|instance|none")


def token_targets(layers: list[torch.Tensor], norm: str) -> torch.Tensor:
    """Average of the normalised layers: list of (N, L, D) -> (N, L, D)."""
    return torch.stack([normalize_target_layer(x, norm) for x in layers]).mean(0)


def token_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse", scale: str = "mean"
               ) -> torch.Tensor:
    """pred, target (N, M, D) at hidden positions -> scalar, averaged over tokens.

    scale: 'mean' averages the per-channel error over D; 'sqrt_dim' sums it over D and divides
    by sqrt(D), as data2vec does (mse / smooth_l1; the cosine loss is per token already)."""
    pred = pred.float()
    target = target.float()
    if kind == "mse":
        loss = ((pred - target) ** 2).mean()
    elif kind == "smooth_l1":
        loss = F.smooth_l1_loss(pred, target, beta=1.0)
    elif kind == "cosine":
        return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    else:
        raise ValueError(f"rec.loss={kind!r}: allowed values are mse|smooth_l1|cosine")
    if scale == "sqrt_dim":
        return loss * pred.shape[-1] ** 0.5  # mean over D x D / sqrt(D)
    if scale != "mean":
        raise ValueError(f"rec.loss_scale={scale!r}: allowed values are mean|sqrt_dim")
    return loss


# --- pseudo labels ---------------------------------------------------------------------------

def centering_targets(teacher_scores: torch.Tensor, center: torch.Tensor, temp: float
                      ) -> torch.Tensor:
    """DINO: softmax((t - center) / temp) over the K prototypes; (..., K) -> (..., K)."""
    return F.softmax((teacher_scores.float() - center) / temp, dim=-1)


def batch_mean(scores: torch.Tensor) -> torch.Tensor:
    """Mean of teacher scores over all leading dims and all ranks: (..., K) -> (1, K)."""
    flat = scores.float().reshape(-1, scores.shape[-1])
    total = _all_reduce_sum(flat.sum(0, keepdim=True))
    count = flat.shape[0] * _world_size()
    return total / count


def center_update(center: torch.Tensor, batch_center: torch.Tensor, momentum: float
                  ) -> torch.Tensor:
    """EMA of the center; a non-finite batch statistic leaves the center unchanged, without a
    host sync (so a skipped step cannot poison later targets)."""
    new = center * momentum + batch_center * (1 - momentum)
    return torch.where(torch.isfinite(new), new, center)


@torch.no_grad()
def sinkhorn_knopp(teacher_scores: torch.Tensor, temp: float, num_iters: int = 3) -> torch.Tensor:
    """Equipartitioned soft assignments (SwAV): (N, K) scores -> (N, K) rows summing to 1, whose
    column sums are (close to) uniform over the global batch of all ranks."""
    scores = teacher_scores.float()
    q = torch.exp((scores - scores.max()) / temp).t()  # (K, N); max-shift for stability
    n = q.shape[1] * _world_size()
    k = q.shape[0]
    q /= _all_reduce_sum(q.sum()).clamp_min(1e-30)
    for _ in range(num_iters):
        q /= _all_reduce_sum(q.sum(dim=1, keepdim=True)).clamp_min(1e-30)
        q /= k
        q /= q.sum(dim=0, keepdim=True).clamp_min(1e-30)
        q /= n
    q *= n
    return q.t()


def pl_cross_entropy(targets: torch.Tensor, student_scores: torch.Tensor, student_temp: float
                     ) -> torch.Tensor:
    """Cross-entropy H(targets, softmax(student / temp)) per row: (..., K), (..., K) -> (...)."""
    log_p = F.log_softmax(student_scores.float() / student_temp, dim=-1)
    return -(targets * log_p).sum(dim=-1)


def cross_view_loss(targets: torch.Tensor, student_scores: torch.Tensor, student_temp: float
                    ) -> torch.Tensor:
    """Class-token loss over V views: targets, scores (V, B, K). With V > 1 every student view is
    matched to every *other* teacher view (DINO); with V == 1 it is the same-view loss."""
    num_views = targets.shape[0]
    if num_views == 1:
        return pl_cross_entropy(targets[0], student_scores[0], student_temp).mean()
    total, pairs = 0.0, 0
    for t in range(num_views):
        for s in range(num_views):
            if s != t:
                total = total + pl_cross_entropy(targets[t], student_scores[s], student_temp).mean()
                pairs += 1
    return total / pairs
