"""A straightforward masked autoencoder, written the way the MAE paper describes it, as the
speed reference for plaml_lab's pixel mode (benchmarks/bench.py --reference).

Nothing here is shared with plaml_lab on purpose: patch embedding, fixed 2-D sin-cos
positions, a class token, per-sample random masking by argsort of uniform noise, timm Blocks
(default settings: fused SDPA attention), a light decoder with mask tokens, and the per-patch
normalised pixel loss on hidden patches. One training step = forward under autocast, backward,
AdamW step.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """(1 + grid*grid, dim) fixed position embedding, zeros for the class token: half the
    channels encode the column, half the row, each as [sin, cos] of pos * 10000^(-2i/(dim/2))."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                            torch.arange(grid, dtype=torch.float64), indexing="ij")
    ox = xs.reshape(-1, 1) * omega
    oy = ys.reshape(-1, 1) * omega
    emb = torch.cat([ox.sin(), ox.cos(), oy.sin(), oy.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb]).float()


class ReferenceMAE(nn.Module):
    def __init__(self, img_size=32, patch_size=4, in_chans=3, embed_dim=192, depth=6,
                 num_heads=3, decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
                 mlp_ratio=4.0, mask_ratio=0.75, norm_pix_loss=True):
        super().__init__()
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, grid)[None], requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(decoder_embed_dim, grid)[None],
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True)
             for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * in_chans)
        self.num_patches = num_patches
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, L, p*p*3)."""
        p = self.patch_size
        n, c, h, w = imgs.shape
        x = imgs.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(n, (h // p) * (w // p), p * p * c)

    def random_masking(self, x: torch.Tensor):
        """x (N, L, D) -> visible tokens (N, L_keep, D), mask (N, L) with 1 = hidden,
        ids_restore (N, L)."""
        n, L, d = x.shape
        keep = int(L * (1 - self.mask_ratio))
        noise = torch.rand(n, L, device=x.device)
        ids_shuffle = noise.argsort(dim=1)
        ids_restore = ids_shuffle.argsort(dim=1)
        ids_keep = ids_shuffle[:, :keep]
        visible = x.gather(1, ids_keep[..., None].expand(-1, -1, d))
        mask = torch.ones(n, L, device=x.device)
        mask[:, :keep] = 0
        return visible, mask.gather(1, ids_restore), ids_restore

    def forward_encoder(self, imgs: torch.Tensor):
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        x, mask, ids_restore = self.random_masking(x)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(x)
        n, L = ids_restore.shape
        masks = self.mask_token.expand(n, L + 1 - x.shape[1], -1).to(x.dtype)
        x_ = torch.cat([x[:, 1:], masks], dim=1)
        x_ = x_.gather(1, ids_restore[..., None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward_loss(self, imgs, pred, mask) -> torch.Tensor:
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        latent, mask, ids_restore = self.forward_encoder(imgs)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred.float(), mask)


def reference_case(cfg, device: torch.device, seed: int = 0):
    """A plaml_lab.lab.bench.Case that trains ReferenceMAE at cfg's sizes on the same number of
    random view-images (batch x views) as the plaml_lab 'mae' case."""
    from plaml_lab.lab.bench import Case

    m = cfg.model
    torch.manual_seed(seed)
    model = ReferenceMAE(m.img_size, m.patch_size, m.in_chans, m.embed_dim, m.depth,
                         m.num_heads, m.decoder_embed_dim, m.decoder_depth, m.decoder_num_heads,
                         m.mlp_ratio, cfg.mask.ratio, cfg.rec.norm_pix_loss).to(device)
    model.train()
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.optim.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4,
                            betas=(cfg.optim.beta1, cfg.optim.beta2))
    g = torch.Generator(device=device).manual_seed(seed)
    n = cfg.optim.batch_size * cfg.data.views
    imgs = torch.randn(n, m.in_chans, m.img_size, m.img_size, device=device, generator=g)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.run.precision]

    def step() -> None:
        ctx = (torch.autocast(device.type, dtype=dtype) if dtype is not None
               else contextlib.nullcontext())
        with ctx:
            loss = model(imgs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    attn = "sdpa" if all(b.attn.fused_attn for b in model.blocks) else "math"
    return Case("ref_mae", cfg.run.precision, cfg, device, step, None, model, attn=attn)
