"""The collapse statistics of one training step (docs/method.md, 'Collapse'), as pure functions
of tensors: PLAML.forward(monitor=True) returns them, training logs them, and
plaml_lab.collapse reads them back to warn. 0-dim tensors on the inputs' device: computing them
needs no host sync.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def target_stats(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target distributions (..., K) -> (mean entropy in nats, prototypes used as argmax), both
    0-dim tensors on the targets' device (no host sync)."""
    flat = targets.float().reshape(-1, targets.shape[-1])
    entropy = -(flat * flat.clamp_min(1e-12).log()).sum(-1).mean()
    hits = F.one_hot(flat.argmax(-1), flat.shape[-1]).amax(0)
    return entropy, hits.sum().float()


@torch.no_grad()
def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, D) -> (std of the L2-normalised features over N, mean over D, times sqrt(D);
    effective rank). 0-dim tensors."""
    x = features.float()
    finite = torch.isfinite(x).all()
    x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)  # SVD refuses non-finite input
    d = x.shape[-1]
    z = F.normalize(x, dim=-1)
    std = z.std(dim=0).mean() * math.sqrt(d)
    s = torch.linalg.svdvals(x - x.mean(0, keepdim=True))
    p = s / s.sum().clamp_min(1e-12)
    erank = torch.exp(-(p * p.clamp_min(1e-12).log()).sum())
    nan = torch.full_like(std, float("nan"))  # a non-finite step reports NaN, without a sync
    return torch.where(finite, std, nan), torch.where(finite, erank, nan)
