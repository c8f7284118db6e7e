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

from plaml_lab.model.heads import PLHead
from plaml_lab.model.vit import (ViTEncoder, get_2d_sincos_pos_embed, init_linear_and_norm,
                                 set_attention)


class Student(nn.Module):
    """Parts present depend on the method switches (cfg.method):
    - decoder: when reconstructing (pixels | tokens) or predicting patch pseudo labels;
    - decoder_pred (pixels), token_pred (tokens, or patch pseudo labels on predicted tokens);
    - heads['cls'] / heads['patch'] for class-token / data-token pseudo labels (one module under
      both keys when pl.shared_head)."""

    def __init__(self, cfg):
        super().__init__()
        m, pl = cfg.model, cfg.pl
        self.patch_size = m.patch_size
        self.in_chans = m.in_chans
        self.encoder = ViTEncoder(m.img_size, m.patch_size, m.in_chans, m.embed_dim, m.depth,
                                  m.num_heads, m.mlp_ratio, m.drop_path, m.attn_impl,
                                  cfg.run.precision)
        self.attn_impl, self.precision = m.attn_impl, cfg.run.precision
        num_patches = self.encoder.num_patches
        self.has_decoder = cfg.method.target != "none" or cfg.pl_patch
        if self.has_decoder:
            dd = m.decoder_embed_dim
            self.decoder_embed = nn.Linear(m.embed_dim, dd)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
            self.decoder_pos_embed = nn.Parameter(
                get_2d_sincos_pos_embed(dd, self.encoder.grid_size).unsqueeze(0),
                requires_grad=False)
            self.decoder_blocks = nn.ModuleList([
                Block(dd, m.decoder_num_heads, m.mlp_ratio, qkv_bias=True, norm_layer=LayerNorm)
                for _ in range(m.decoder_depth)])
            self.decoder_norm = LayerNorm(dd)
            if cfg.method.target == "pixels":
                self.decoder_pred = nn.Linear(dd, m.patch_size ** 2 * m.in_chans)
            if cfg.method.target == "tokens" or cfg.pl_patch:
                self.token_pred = nn.Linear(dd, m.embed_dim)
            for name, mod in self.named_modules():
                if name.startswith(("decoder", "token_pred")):
                    init_linear_and_norm(mod)
            nn.init.normal_(self.mask_token, std=0.02)
            set_attention(self.decoder_blocks, m.attn_impl, self.mask_token.device,
                          self.precision)
        self.num_patches = num_patches

        self.heads: nn.ModuleDict | None = None
        if cfg.uses_pseudo_labels:
            def make_head():
                return PLHead(m.embed_dim, pl.num_prototypes, pl.head_hidden_dim,
                              pl.head_bottleneck_dim, pl.head_layers)
            self.heads = nn.ModuleDict()
            if cfg.pl_cls:
                self.heads["cls"] = make_head()
            if cfg.pl_patch:
                shared = pl.shared_head and cfg.pl_cls
                self.heads["patch"] = self.heads["cls"] if shared else make_head()

    def _apply(self, fn, *args, **kwargs):
        # as ViTEncoder._apply: the decoder's attention path follows the device
        out = super()._apply(fn, *args, **kwargs)
        if self.has_decoder:
            set_attention(self.decoder_blocks, self.attn_impl, self.mask_token.device,
                          self.precision)
        return out

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
