"""Batched augmentation on the images' device: crops, flips, colour jitter, normalisation.

Every random number comes from the ``generator`` argument (on the images' device; None = the
global RNG) and the number drawn per call depends only on the batch size, so a caller that
seeds a generator per step gets identical views when it resumes at that step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_CROP_ATTEMPTS = 10  # as torchvision's RandomResizedCrop


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> ImageNet-normalised (B, 3, H, W)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    """The inverse of normalize, clamped to [0, 1]: (B, 3, H, W) -> (B, 3, H, W) to show."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def _uniform(shape: tuple, generator, device, dtype=torch.float32, rows=None) -> torch.Tensor:
    """torch.rand(shape). With rows = (ids (B,), total) the draw covers all `total` samples of a
    global batch and this batch's rows are taken: a batch split over ranks or micro-batches then
    sees, per sample, the same numbers as the unsplit batch (DDP / accumulation equivalence)."""
    if rows is None:
        return torch.rand(shape, generator=generator, device=device, dtype=dtype)
    ids, total = rows
    full = torch.rand((total, *shape[1:]), generator=generator, device=device, dtype=dtype)
    return full[ids.to(device)]


def _crop_boxes(B: int, H: int, W: int, scale, ratio, generator, device, rows=None) -> torch.Tensor:
    """(B, 4) float32 crop boxes (i, j, h, w) in pixels, sampled like RandomResizedCrop.get_params:
    the first of 10 attempts that fits, else a centre crop at the closest allowed aspect ratio."""
    r = _uniform((B, _CROP_ATTEMPTS, 4), generator, device, rows=rows)
    area = float(H * W)
    target = area * (scale[0] + (scale[1] - scale[0]) * r[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * r[..., 1])
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    valid = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    i = torch.floor(r[..., 2] * (H - h + 1))
    j = torch.floor(r[..., 3] * (W - w + 1))
    first = valid.to(torch.int8).argmax(dim=1, keepdim=True)
    pick = lambda t: t.gather(1, first).squeeze(1)  # noqa: E731
    boxes = torch.stack([pick(i), pick(j), pick(h), pick(w)], dim=1)

    in_ratio = W / H
    if in_ratio < min(ratio):
        fw, fh = W, round(W / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(H * max(ratio)), H
    else:
        fw, fh = W, H
    fallback = torch.tensor([(H - fh) // 2, (W - fw) // 2, fh, fw], device=device, dtype=torch.float32)
    return torch.where(valid.any(dim=1, keepdim=True), boxes, fallback).float()


def random_resized_crop(images: torch.Tensor, out_size: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3),
                        flip_p: float = 0.5, generator: torch.Generator | None = None,
                        rows=None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, out_size, out_size): per-sample random crop + resize + h-flip.

    One affine_grid + grid_sample (bilinear, align_corners=False, border padding): the crop
    of pixels [j, j+w) x [i, i+h) is resampled like a crop-then-resize, except that samples in
    the outer half-pixel margin read the pixels beyond the crop instead of clamping to its edge,
    and there is no antialiasing when shrinking.  The flip is a sign in the affine.
    """
    B, C, H, W = images.shape
    if B == 0:  # a batch whose every image was unreadable
        return images.new_empty(0, C, out_size, out_size)
    box = _crop_boxes(B, H, W, scale, ratio, generator, images.device, rows).to(images.dtype)
    flip = _uniform((B,), generator, images.device, rows=rows) < flip_p
    i, j, h, w = box.unbind(1)
    theta = torch.zeros(B, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = torch.where(flip, -w / W, w / W)
    theta[:, 0, 2] = (2 * j + w) / W - 1  # crop centre in [-1, 1] units
    theta[:, 1, 1] = h / H
    theta[:, 1, 2] = (2 * i + h) / H - 1
    grid = F.affine_grid(theta, [B, C, out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _luma(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) ITU-R 601 luma."""
    w = torch.tensor(_LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True)


def _hue_matrices(angle: torch.Tensor) -> torch.Tensor:
    """angle (B,) radians -> (B, 3, 3) RGB -> RGB matrices rotating the chroma plane of YIQ."""
    yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    to_yiq, from_yiq = yiq.to(angle.device, angle.dtype), torch.linalg.inv(yiq).to(angle.device, angle.dtype)
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rot = torch.stack([one, zero, zero, zero, c, -s, zero, s, c], dim=1).view(-1, 3, 3)
    return from_yiq @ rot @ to_yiq


def color_jitter(images: torch.Tensor, strength: float = 0.4, p: float = 0.8, grayscale_p: float = 0.2,
                 generator: torch.Generator | None = None, rows=None) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> jittered (B, 3, H, W) in [0, 1].

    With probability p per sample: brightness, contrast and saturation factors in
    [1 - s, 1 + s] and a hue shift in [-s/4, s/4] turns of the colour wheel (a YIQ rotation),
    applied in that fixed order with a clamp after each (torchvision shuffles the order).
    Then grayscale with probability grayscale_p.
    """
    B = images.shape[0]
    r = _uniform((B, 6), generator, images.device, images.dtype, rows)
    factor = 1 - strength + 2 * strength * r[:, :3]  # brightness, contrast, saturation
    hue = (2 * r[:, 3] - 1) * (strength / 4) * (2 * math.pi)
    view = lambda t: t.view(B, 1, 1, 1)  # noqa: E731

    x = (images * view(factor[:, 0])).clamp(0, 1)
    mean = _luma(x).mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * view(factor[:, 1]) + mean).clamp(0, 1)
    grey = _luma(x)
    x = ((x - grey) * view(factor[:, 2]) + grey).clamp(0, 1)
    x = torch.einsum("bij,bjhw->bihw", _hue_matrices(hue), x).clamp(0, 1)
    x = torch.where(view(r[:, 4] < p), x, images)
    return torch.where(view(r[:, 5] < grayscale_p), _luma(x).expand_as(x), x)


def color_nuisance(images: torch.Tensor, shuffle_p: float = 0.0, invert_p: float = 0.0,
                   generator: torch.Generator | None = None, rows=None) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> images whose colours no longer identify them across views.

    Per sample: with probability shuffle_p a random permutation of the RGB channels, then with
    probability invert_p the negative (1 - x). On data whose classes ignore colour (the embedded
    shapes draw foreground and background colours at random) colour is the easiest thing two
    views of one image share; jitter only nudges it, these make it useless as a cross-view cue,
    so pseudo labels have to agree on shape instead.
    """
    B = images.shape[0]
    r = _uniform((B, 5), generator, images.device, images.dtype, rows)
    view = lambda t: t.view(B, 1, 1, 1)  # noqa: E731
    perm = r[:, :3].argsort(dim=1)  # a uniformly random permutation per sample
    shuffled = torch.gather(images, 1, perm.view(B, 3, 1, 1).expand_as(images))
    x = torch.where(view(r[:, 3] < shuffle_p), shuffled, images)
    return torch.where(view(r[:, 4] < invert_p), 1 - x, x)


def tone_remap(images: torch.Tensor, p: float = 0.0, knots: int = 4,
               generator: torch.Generator | None = None, rows=None) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> images passed through a random tone curve, per sample.

    With probability p a sample's intensities go through a random piecewise-linear curve with
    `knots` equal segments whose knot values are uniform in [0, 1] (the same curve for every
    channel, so grey stays grey). knots=1 is a random line: contrast, brightness and polarity at
    once. With knots >= 4 two grey levels a segment apart land on independent values, so the
    grey levels of two views of one image share nothing: on the embedded shapes, where the
    object and background grey are drawn at random per image, that is the cue the class-token
    pseudo labels otherwise cluster by (docs/results_history.md), and brightness/contrast jitter or
    negatives keep it (both are monotone, up to a sign). DINO's solarisation is one fixed
    curve of this family.
    """
    B = images.shape[0]
    r = _uniform((B, knots + 2), generator, images.device, images.dtype, rows)
    values, apply = r[:, :knots + 1], r[:, knots + 1] < p
    pos = images.clamp(0, 1).reshape(B, -1) * knots
    lo = pos.floor().clamp(max=knots - 1)
    frac = pos - lo
    lo = lo.long()
    curve = torch.lerp(values.gather(1, lo), values.gather(1, lo + 1), frac).view_as(images)
    return torch.where(apply.view(B, 1, 1, 1), curve, images)


def make_views(images: torch.Tensor, aug_cfg, num_views: int, out_size: int,
               generator: torch.Generator | None = None, rows=None) -> list[torch.Tensor]:
    """(B, 3, H, W) in [0, 1] -> num_views independently augmented, ImageNet-normalised views,
    each (B, 3, out_size, out_size).

    aug_cfg: an AugConfig (config.py): crop_scale_min, crop_scale_max, flip (bool), color_jitter (strength,
    0 = off), color_jitter_p, grayscale_p (applied even when color_jitter is 0), channel_shuffle_p
    and invert_p (color_nuisance; nothing is drawn when both are 0), tone_remap_p and
    tone_remap_knots (tone_remap; nothing is drawn when p is 0), shared_crop (one crop+flip
    for all views, so views differ in colour only).
    rows: optional (ids (B,), total): draw for a global batch of `total` samples, keep rows ids.
    """
    views = []
    shared_crop = aug_cfg.shared_crop
    crop = None
    for _ in range(num_views):
        if crop is None or not shared_crop:
            crop = random_resized_crop(images, out_size,
                                       scale=(aug_cfg.crop_scale_min, aug_cfg.crop_scale_max),
                                       flip_p=0.5 if aug_cfg.flip else 0.0, generator=generator,
                                       rows=rows)
        v = crop
        jitter_p = aug_cfg.color_jitter_p if aug_cfg.color_jitter > 0 else 0.0
        if jitter_p > 0 or aug_cfg.grayscale_p > 0:
            v = color_jitter(v, aug_cfg.color_jitter, p=jitter_p, grayscale_p=aug_cfg.grayscale_p,
                             generator=generator, rows=rows)
        shuffle_p, invert_p = aug_cfg.channel_shuffle_p, aug_cfg.invert_p
        if shuffle_p > 0 or invert_p > 0:
            v = color_nuisance(v, shuffle_p, invert_p, generator=generator, rows=rows)
        if aug_cfg.tone_remap_p > 0:
            v = tone_remap(v, aug_cfg.tone_remap_p, aug_cfg.tone_remap_knots, generator=generator,
                           rows=rows)
        views.append(normalize(v))
    return views
