"""Pseudo-label heads (DINO/iBOT style): MLP -> L2-normalised bottleneck -> K prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PLHead(nn.Module):
    """Features (..., D) -> prototype scores (..., K).

    The last layer is weight-normalised with its gain fixed to 1 (DINO's norm_last_layer=True):
    scores are cosine similarities between the L2-normalised bottleneck and unit-norm prototypes,
    which keeps the teacher's softmax temperature meaningful."""

    def __init__(self, in_dim: int, num_prototypes: int, hidden_dim: int = 512,
                 bottleneck_dim: int = 128, num_layers: int = 3, prototype_init: str = "dino"):
        super().__init__()
        if num_layers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            for _ in range(num_layers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.apply(self._init)
        # Created after apply(), as DINO's and iBOT's DINOHead create last_layer: the prototypes
        # keep nn.Linear's default (kaiming-uniform) init unless asked for trunc_normal(0.02).
        # The scores use unit-norm prototypes, so an Adam step turns a prototype by about
        # lr / |w|: the default init's larger norm (~3.6x at 64-d) keeps them steadier early on.
        self.prototypes = nn.Linear(bottleneck_dim, num_prototypes, bias=False)
        if prototype_init == "trunc_normal":
            self._init(self.prototypes)
        elif prototype_init != "dino":
            raise ValueError(f"pl.prototype_init={prototype_init!r}: allowed values are dino|trunc_normal")

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> L2-normalised bottleneck (..., bottleneck_dim)."""
        return F.normalize(self.mlp(x), dim=-1, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.normalize(self.prototypes.weight, dim=1, eps=1e-6)
        return F.linear(self.embed(x), w)
