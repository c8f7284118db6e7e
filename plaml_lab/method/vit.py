"""ViT encoder with timm's attribute names, so that its state dict loads into
`timm.models.vision_transformer.VisionTransformer` (strict=True) without key surgery.

Unlike timm's model it can run on a subset of data tokens (MAE's visible patches) and hand back
the outputs of its last blocks (the reconstruction teacher's multi-layer targets).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from timm.layers import LayerNorm, PatchEmbed
from timm.models.vision_transformer import Block


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding as in MAE: (1 + grid_size**2, D), zeros for the class
    token. Half of D encodes the row, half the column; each half is [sin, cos] of omega * pos."""
    assert embed_dim % 4 == 0, "2-D sin-cos embedding needs embed_dim divisible by 4"
    grid_h = np.arange(grid_size, dtype=np.float64)
    grid_w = np.arange(grid_size, dtype=np.float64)
    grid = np.meshgrid(grid_w, grid_h)  # w first, as in MAE
    grid = np.stack(grid, axis=0).reshape(2, 1, grid_size, grid_size)

    def one_d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return torch.from_numpy(emb).float()


ATTN_IMPLS = ("auto", "sdpa", "math")
PRECISIONS = ("fp32", "bf16", "fp16")


def fused_attention(impl: str, device: torch.device | str, precision: str = "fp32") -> bool:
    """Whether timm's Attention takes its fused SDPA path (else explicit q @ k^T, softmax, @ v)
    for a model on `device` run under `precision` (fp32 | bf16 | fp16, already resolved:
    plaml_lab.hardware.resolve_precision turns run.precision=auto into one of them). 'auto' =
    SDPA except on CPU under bf16/fp16 autocast: there, at ViT-small sizes (head dim 32-64,
    17-65 tokens), torch's CPU SDPA kernels are 2-7x slower than the explicit matmuls, which
    makes a whole bf16 step 1.4-1.9x slower; in fp32 SDPA is a few percent faster
    (benchmarks/README.md, attention)."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f"model.attn_impl={impl!r}: allowed values are {'|'.join(ATTN_IMPLS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: allowed values are {'|'.join(PRECISIONS)} "
                         "(resolve 'auto' first)")
    if impl == "auto":
        return torch.device(device).type != "cpu" or precision == "fp32"
    return impl == "sdpa"


def set_attention(blocks: nn.ModuleList, impl: str, device: torch.device | str,
                  precision: str = "fp32") -> None:
    """Point every block's attention at the implementation `impl` picks (see fused_attention).
    A model is built for fp32 on any device; the trainer and the benchmark call this (through
    PLAML.set_attention) once they know the device and the resolved precision of the step."""
    fused = fused_attention(impl, device, precision)
    for blk in blocks:
        blk.attn.fused_attn = fused


def init_linear_and_norm(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears with zero bias, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ViTEncoder(nn.Module):
    """Patch embedding + class token + fixed sin-cos positions + transformer blocks + final norm."""

    def __init__(self, img_size: int = 32, patch_size: int = 4, in_chans: int = 3,
                 embed_dim: int = 192, depth: int = 6, num_heads: int = 3, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, attn_impl: str = "auto"):
        super().__init__()
        self.patch_size = patch_size
        self.attn_impl = attn_impl  # model.attn_impl: auto|sdpa|math (see fused_attention)
        self.embed_dim = self.num_features = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.num_patches = self.patch_embed.num_patches
        self.grid_size = int(math.isqrt(self.num_patches))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Fixed, not learned (MAE): kept as a frozen Parameter so the name matches timm's.
        self.pos_embed = nn.Parameter(
            get_2d_sincos_pos_embed(embed_dim, self.grid_size).unsqueeze(0), requires_grad=False)
        dpr = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=LayerNorm,
                  drop_path=dpr[i]) for i in range(depth)])
        self.norm = LayerNorm(embed_dim)
        self._init_weights()
        set_attention(self.blocks, attn_impl, "cpu")  # fp32: fused unless attn_impl=math

    def _init_weights(self) -> None:
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # as a linear layer (MAE)
        nn.init.normal_(self.cls_token, std=0.02)
        for name, m in self.named_modules():
            if name != "patch_embed.proj":
                init_linear_and_norm(m)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed"}

    def embed(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) -> class token + (kept) data tokens with positions, (B, 1+N, D).

        ids_keep (B, N) selects the visible data tokens; None keeps all L of them."""
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def forward_features(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None,
                         return_layers: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Images (B, C, H, W) -> (normed tokens (B, 1+N, D), outputs of the last
        `return_layers` blocks, each (B, 1+N, D), before the final norm)."""
        x = self.embed(x, ids_keep)
        layers = []
        first_kept = len(self.blocks) - return_layers
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i >= first_kept:
                layers.append(x)
        return self.norm(x), layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normed tokens (B, 1+L, D) (timm's forward_features)."""
        return self.forward_features(x)[0]
