"""Per-sample masking of data tokens, following MAE exactly.

Both strategies produce a noise tensor; the mask is "keep the len_keep lowest-noise patches".
Random masking uses i.i.d. uniform noise (MAE). Block masking uses spatially smooth noise, so
that the hidden patches form blobs, yet the number hidden per sample is still exact. Callers can
pass their own `noise` or `generator` to make masks reproducible (tests, dashboards, resume).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def num_visible(num_patches: int, ratio: float) -> int:
    """MAE's rule: keep int(L * (1 - ratio)) patches."""
    return int(num_patches * (1 - ratio))


def uniform_noise(batch: int, num_patches: int, *, device=None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, L) i.i.d. uniform noise in [0, 1) (MAE's random masking)."""
    return torch.rand(batch, num_patches, device=device, generator=generator)


def block_noise(batch: int, grid_size: int, block_size: int = 2, *, device=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, L) spatially smooth noise: coarse uniform noise on a (grid/block) lattice, bilinearly
    upsampled to the patch grid, plus a tiny jitter that breaks ties. Sorting it hides blobs of
    roughly block_size x block_size patches instead of scattered single patches."""
    coarse = max(1, -(-grid_size // block_size))
    low = torch.rand(batch, 1, coarse + 1, coarse + 1, device=device, generator=generator)
    smooth = F.interpolate(low, size=(grid_size, grid_size), mode="bilinear", align_corners=True)
    jitter = torch.rand(batch, grid_size * grid_size, device=device, generator=generator)
    return smooth.flatten(1) + 1e-3 * jitter


def mask_from_noise(noise: torch.Tensor, ratio: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise (B, L) -> (ids_keep (B, N), mask (B, L), ids_restore (B, L), ids_masked (B, L-N)).

    mask is 1 on hidden patches and 0 on visible ones, in the original patch order;
    ids_restore undoes the shuffle: gathering [kept, masked] tokens with it restores order."""
    B, L = noise.shape
    len_keep = num_visible(L, ratio)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascend: small is keep
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    ids_masked = ids_shuffle[:, len_keep:]
    mask = torch.ones(B, L, device=noise.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, mask, ids_restore, ids_masked


def sample_noise(batch: int, num_patches: int, strategy: str = "random", block_size: int = 2, *,
                 device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, L) masking noise of a strategy (random: i.i.d. uniform; block: smooth)."""
    if strategy == "random":
        return uniform_noise(batch, num_patches, device=device, generator=generator)
    if strategy == "block":
        grid = int(round(num_patches ** 0.5))
        return block_noise(batch, grid, block_size, device=device, generator=generator)
    raise ValueError(f"mask.strategy={strategy!r}: allowed values are random|block")


def random_masking(batch: int, num_patches: int, ratio: float, *, strategy: str = "random",
                   block_size: int = 2, device=None, generator: torch.Generator | None = None,
                   noise: torch.Tensor | None = None):
    """Sample (or take) noise for a strategy and turn it into a mask; see mask_from_noise."""
    if noise is None:
        noise = sample_noise(batch, num_patches, strategy, block_size, device=device,
                             generator=generator)
    return mask_from_noise(noise, ratio)
