"""The student: an MAE (encoder on visible tokens, light decoder with mask tokens) whose decoder
also feeds a linear token predictor into the encoder's feature space, plus pseudo-label heads.

Decoder attribute names follow reference MAE (decoder_embed, mask_token, decoder_pos_embed,
decoder_blocks, decoder_norm, decoder_pred); the encoder's follow timm (see vit.py).
"""

from __future__ import annotations

import torch
from torch import nn
from timm.layers import LayerNorm
from timm.models.vision_transformer import Block

from .heads import PLHead
from .vit import ViTEncoder, get_2d_sincos_pos_embed, init_linear_and_norm, set_attention


class Student(nn.Module):
    """The encoder (a ViTEncoder of the given shape) plus the parts the method switches ask for:
    - decoder: when reconstructing (target pixels | tokens) or predicting data-token pseudo
      labels (pl_patch);
    - decoder_pred (target pixels), token_pred (target tokens, or pl_patch on predicted tokens);
    - heads['cls'] / heads['patch'] (PLHead) for class-token / data-token pseudo labels (one
      module under both keys with shared_head).
    `head` holds PLHead's arguments besides in_dim (num_prototypes, hidden_dim, bottleneck_dim,
    num_layers, prototype_init). A part the switches leave out is None, so callers test
    `student.token_pred is not None` rather than the module's attributes."""

    def __init__(self, *, img_size: int, patch_size: int, in_chans: int = 3, embed_dim: int,
                 depth: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 attn_impl: str = "auto", decoder_embed_dim: int = 128, decoder_depth: int = 2,
                 decoder_num_heads: int = 4, target: str = "tokens", pl_cls: bool = True,
                 pl_patch: bool = True, shared_head: bool = False, head: dict | None = None):
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.encoder = ViTEncoder(img_size, patch_size, in_chans, embed_dim, depth, num_heads,
                                  mlp_ratio, drop_path, attn_impl)
        self.attn_impl = attn_impl
        self.num_patches = self.encoder.num_patches
        self.has_decoder = target != "none" or pl_patch
        self.decoder_pred: nn.Linear | None = None
        self.token_pred: nn.Linear | None = None
        if self.has_decoder:
            dd = decoder_embed_dim
            self.decoder_embed = nn.Linear(embed_dim, dd)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
            self.decoder_pos_embed = nn.Parameter(
                get_2d_sincos_pos_embed(dd, self.encoder.grid_size).unsqueeze(0),
                requires_grad=False)
            self.decoder_blocks = nn.ModuleList([
                Block(dd, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=LayerNorm)
                for _ in range(decoder_depth)])
            self.decoder_norm = LayerNorm(dd)
            if target == "pixels":
                self.decoder_pred = nn.Linear(dd, patch_size ** 2 * in_chans)
            if target == "tokens" or pl_patch:
                self.token_pred = nn.Linear(dd, embed_dim)
            for name, mod in self.named_modules():
                if name.startswith(("decoder", "token_pred")):
                    init_linear_and_norm(mod)
            nn.init.normal_(self.mask_token, std=0.02)
            set_attention(self.decoder_blocks, attn_impl, "cpu")

        self.heads: nn.ModuleDict | None = None
        if pl_cls or pl_patch:
            self.heads = nn.ModuleDict()
            if pl_cls:
                self.heads["cls"] = PLHead(embed_dim, **(head or {}))
            if pl_patch:
                shared = shared_head and pl_cls
                self.heads["patch"] = self.heads["cls"] if shared else PLHead(embed_dim,
                                                                              **(head or {}))

    def set_attention(self, device: torch.device | str, precision: str) -> None:
        """Pick the attention kernel of every block for a step on `device` under `precision`."""
        set_attention(self.encoder.blocks, self.attn_impl, device, precision)
        if self.has_decoder:
            set_attention(self.decoder_blocks, self.attn_impl, device, precision)

    def no_weight_decay(self) -> set[str]:
        """Names excluded from weight decay besides 1-D tensors: tokens and position embeddings."""
        return {"encoder.cls_token", "encoder.pos_embed", "mask_token", "decoder_pos_embed"}

    def forward_encoder(self, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W), ids_keep (B, N) -> normed class token + visible tokens (B, 1+N, D)."""
        return self.encoder.forward_features(x, ids_keep)[0]

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Encoder tokens (B, 1+N, D) -> decoder features at all L positions (B, L, Dd), in the
        original patch order (MAE: append mask tokens, unshuffle, add positions)."""
        x = self.decoder_embed(latent)
        B, L = ids_restore.shape
        mask_tokens = self.mask_token.to(x.dtype).expand(B, L + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_norm(x)[:, 1:, :]
