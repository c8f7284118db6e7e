"""Attention weights of a ViT encoder, captured only while a dashboard asks for them.

timm's `Attention` computes attention with the fused `scaled_dot_product_attention` kernel, which
never materialises the weights. `capture_attention` switches the fused path off on the encoder's
blocks for the duration of a `with` block and records what the unfused path feeds to `attn_drop`
(the post-softmax weights, exactly those the block uses). On exit the fused flags come back and
the hooks go away, so training never runs the slower path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def attention_modules(encoder: nn.Module) -> list[nn.Module]:
    """The timm `Attention` module of each block of `encoder`, in depth order."""
    blocks = getattr(encoder, "blocks", None)
    if blocks is None:
        raise ValueError(f"{type(encoder).__name__}: no .blocks; expected a ViT encoder")
    mods = [blk.attn for blk in blocks]
    for m in mods:
        if not hasattr(m, "attn_drop") or not hasattr(m, "fused_attn"):
            raise ValueError(f"{type(m).__name__}: not a timm Attention module (no attn_drop / "
                             "fused_attn); attention cannot be captured")
    return mods


@contextlib.contextmanager
def capture_attention(encoder: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the block every forward of `encoder` appends, per block, its attention weights
    (B, heads, N, N) (rows sum to 1) to the yielded list, in call order. Fused attention is off
    only inside the block; flags and hooks are restored even if the forward raises."""
    mods = attention_modules(encoder)
    weights: list[torch.Tensor] = []
    saved = [m.fused_attn for m in mods]
    handles = []

    def hook(_module, inputs, _output):
        weights.append(inputs[0].detach())

    try:
        for m in mods:
            m.fused_attn = False
            handles.append(m.attn_drop.register_forward_hook(hook))
        yield weights
    finally:
        for h in handles:
            h.remove()
        for m, flag in zip(mods, saved):
            m.fused_attn = flag


@torch.no_grad()
def cls_attention(encoder: nn.Module, x: torch.Tensor, ids_keep: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Class-token-to-data-token attention of every block and head.

    x (B, C, H, W) normalised images; ids_keep (B, N) optional visible patches (the student's
    masked view). Returns (depth, B, heads, L) over the full patch grid; with ids_keep, hidden
    patches are NaN (they were not attended to). Each row over the kept tokens plus the class
    token sums to 1, so values over patches sum to 1 - attention to the class token itself."""
    was_training = encoder.training
    encoder.eval()
    try:
        with capture_attention(encoder) as weights:
            encoder.forward_features(x, ids_keep)
    finally:
        encoder.train(was_training)
    att = torch.stack([w[:, :, 0, 1:] for w in weights]).float()  # (depth, B, heads, N)
    if ids_keep is None:
        return att
    depth, b, heads, _ = att.shape
    num_patches = encoder.num_patches
    full = att.new_full((depth, b, heads, num_patches), float("nan"))
    idx = ids_keep[None, :, None, :].expand(depth, -1, heads, -1)
    return full.scatter(3, idx, att)
