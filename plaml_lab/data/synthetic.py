"""The embedded `shapes` dataset: procedurally rendered, counter-based, vectorised.

A sample is a pure function of ``(seed, index)`` and the rendering knobs: every random
parameter is an integer hash of ``(seed, index, parameter id)``, so a sample never depends on
which batch or device generated it, and no files are needed.  A whole batch is rendered at
once with signed-distance functions evaluated on the pixel grid; Python loops run only over
shape kinds and distractors.

Coordinates: the image spans ``[-1, 1]`` on both axes (x to the right, y down), pixel centres
at ``(2k + 1) / S - 1``.  Each shape is defined in a local unit frame (it fits in the unit
disc, up to ~5% at corners) and placed by radius ``r``, rotation and centre.  Signed distances
are converted to pixels for a one-pixel anti-aliasing ramp.

Drawing order: background colour + plaid texture -> distractors -> object -> illumination
gradient (whole image) -> pixel noise -> clamp to ``[0, 1]``.  Distractors lie behind the
object, so the mask is exactly the object's pixels.
"""
from __future__ import annotations

import math

import torch

SHAPE_NAMES: tuple[str, ...] = (
    "circle", "square", "triangle", "ring", "cross", "star",
    "half_disc", "ellipse", "crescent", "arrow", "hexagon", "diamond",
)
# The first 10 are the most distinct at 32x32; hexagon (close to circle at small radii) and
# diamond (a thin rhombus, close to ellipse) only appear with num_classes > 10.

_MASK32 = 0xFFFFFFFF
_EXTENT = 1.05  # largest distance of a shape's pixels from its centre, in units of r
_FG_CANDIDATES = 4  # foreground colours tried before falling back to the farthest cube corner

# Parameter ids: fixed so that adding a parameter never reshuffles the existing ones.
_P_LABEL, _P_SCALE, _P_ROT, _P_CX, _P_CY = 0, 1, 2, 3, 4
_P_BG = 5  # 3 ids
_P_FG = 8  # 3 * _FG_CANDIDATES ids
_P_GRAD_ANGLE, _P_GRAD_AMP = 20, 21
_P_TEX_FX, _P_TEX_FY, _P_TEX_PX, _P_TEX_PY, _P_TEX_AMP = 22, 23, 24, 25, 26
_P_TEX_DIR = 27  # 3 ids
_P_NOISE_OFF, _P_NOISE_SIGN = 30, 31
_P_DISTRACTOR, _DISTRACTOR_STRIDE = 64, 16  # distractor d uses ids 64 + 16 d + [0, 9)
_NUM_OBJECT_PARAMS = 32


# ----------------------------------------------------------------------------- hashing
def _mul32(x, m: int):
    """``(x * m) mod 2**32`` for ``x`` in ``[0, 2**32)``, split in 16-bit halves so that no
    int64 product overflows (signed overflow would make the result platform-dependent)."""
    return (x * (m & 0xFFFF) + (((x * (m >> 16)) & 0xFFFF) << 16)) & _MASK32


def _hash32(x):
    """lowbias32 integer hash (C. Wellons) on int64 tensors or Python ints in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _sample_keys(indices: torch.Tensor, seed: int) -> torch.Tensor:
    """(B,) int64 indices -> (B,) int64 32-bit keys, one per (seed, index)."""
    s = _hash32((seed & _MASK32) ^ _hash32(((seed >> 32) & _MASK32) ^ 0x5BD1E995))
    lo = indices & _MASK32
    hi = (indices >> 32) & _MASK32
    return _hash32(_hash32(lo ^ s) ^ _hash32(hi ^ 0x68E31DA4))


def _param_hashes(keys: torch.Tensor, first_id: int, count: int) -> torch.Tensor:
    """(B,) keys -> (B, count) int64 32-bit hashes for parameter ids first_id .. first_id+count-1."""
    ids = torch.arange(first_id, first_id + count, device=keys.device, dtype=torch.int64)
    salt = _hash32((ids * 0x9E3779B9) & _MASK32)
    return _hash32(keys[:, None] ^ salt[None, :])


def _to_unit(h: torch.Tensor) -> torch.Tensor:
    """32-bit hashes -> float32 uniforms in [0, 1) (top 24 bits: exact in float32)."""
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


# ----------------------------------------------------------------------------- noise table
_NOISE_LEN = 1 << 20
_noise_cache: dict[tuple[str, int], torch.Tensor] = {}


def _noise_windows(device: torch.device, n: int) -> torch.Tensor:
    """(L + 1, n) strided view over a fixed table of standard normals; row ``o`` is the window
    starting at offset ``o``.  Per-pixel hashing at 20k images/s would dominate the render time,
    so each image takes a hashed offset into this table instead (still counter-based)."""
    key = (str(device), n)
    if key not in _noise_cache:
        length = max(_NOISE_LEN, 1 << (4 * n - 1).bit_length())
        i = torch.arange(length // 2, dtype=torch.int64)
        u1 = ((_hash32(2 * i ^ 0x2545F491) >> 8).double() + 0.5) / (1 << 24)
        u2 = ((_hash32((2 * i + 1) ^ 0x2545F491) >> 8).double() + 0.5) / (1 << 24)
        rad = torch.sqrt(-2.0 * torch.log(u1))  # Box-Muller, once per process
        table = torch.cat([rad * torch.cos(2 * math.pi * u2), rad * torch.sin(2 * math.pi * u2)])
        table = torch.cat([table, table[:n]]).float().to(device)  # wrap-around for the last windows
        _noise_cache.clear()  # one image size at a time is the common case; keep memory bounded
        _noise_cache[key] = table
    table = _noise_cache[key]
    return table.unfold(0, n, 1)


# ----------------------------------------------------------------------------- shapes (SDFs)
# Each takes local coordinates u, v (b, S, S) in units of the object radius and returns the
# signed distance (negative inside) in the same units.  Half-plane maxima are exact inside and
# near edges, which is all the one-pixel anti-aliasing needs.
def _length(u, v):
    return torch.sqrt(u * u + v * v)


def _regular_polygon(u, v, n: int, circumradius: float, phase: float = 0.0):
    out = None
    for k in range(n):
        a = phase + 2 * math.pi * k / n
        d = u * math.cos(a) + v * math.sin(a)
        out = d if out is None else torch.maximum(out, d)
    return out - circumradius * math.cos(math.pi / n)


def _box(u, v, hx: float, hy: float):
    return torch.maximum(u.abs() - hx, v.abs() - hy)


def _circle(u, v):
    return _length(u, v) - 1.0


def _square(u, v):
    return _box(u, v, 0.72, 0.72)


def _triangle(u, v):
    return _regular_polygon(u, v, 3, 1.05, phase=math.pi / 2)


def _ring(u, v):
    return (_length(u, v) - 0.68).abs() - 0.32


def _cross(u, v):
    return torch.minimum(_box(u, v, 1.0, 0.3), _box(u, v, 0.3, 1.0))


def _star(u, v, rf: float = 0.45):
    # five-pointed star, exact SDF after Inigo Quilez's sdStar5 (outer radius 1)
    k1x, k1y = 0.809016994375, -0.587785252292
    k2x, k2y = -k1x, k1y
    px, py = u.abs(), v
    d = (k1x * px + k1y * py).clamp(min=0)
    px, py = px - 2 * k1x * d, py - 2 * k1y * d
    d = (k2x * px + k2y * py).clamp(min=0)
    px, py = (px - 2 * k2x * d).abs(), py - 2 * k2y * d - 1.0
    bax, bay = -rf * k1y, rf * k1x - 1.0
    h = ((px * bax + py * bay) / (bax * bax + bay * bay)).clamp(0.0, 1.0)
    return _length(px - bax * h, py - bay * h) * torch.sign(py * bax - px * bay)


def _half_disc(u, v):
    # flat edge at v = -0.35 so that the centroid sits near the centre
    return torch.maximum(_length(u, v + 0.35) - 0.95, -(v + 0.35))


def _ellipse(u, v, a: float = 1.0, b: float = 0.5):
    # first-order approximation k0 (k0 - 1) / k1: exact on the boundary's normal direction
    k0 = _length(u / a, v / b)
    k1 = _length(u / (a * a), v / (b * b)).clamp(min=1e-6)
    return k0 * (k0 - 1.0) / k1


def _crescent(u, v):
    return torch.maximum(_length(u, v) - 1.0, 0.8 - _length(u - 0.45, v))


def _arrow(u, v):
    shaft = _box(u + 0.3, v, 0.6, 0.2)
    nx, ny = 0.65 / math.hypot(0.65, 0.85), 0.85 / math.hypot(0.65, 0.85)
    head = torch.maximum(0.15 - u, nx * u + ny * v.abs() - nx)
    return torch.minimum(shaft, head)


def _hexagon(u, v):
    return _regular_polygon(u, v, 6, 1.0)


def _diamond(u, v, a: float = 1.0, b: float = 0.55):
    return (b * u.abs() + a * v.abs() - a * b) / math.hypot(a, b)


_SDFS = (_circle, _square, _triangle, _ring, _cross, _star,
         _half_disc, _ellipse, _crescent, _arrow, _hexagon, _diamond)
assert len(_SDFS) == len(SHAPE_NAMES)


# ----------------------------------------------------------------------------- rendering
def _pick_foreground(fg: torch.Tensor, bg: torch.Tensor, min_contrast: float) -> torch.Tensor:
    """fg (B, K, 3) candidates, bg (B, 3) -> (B, 3): the first candidate whose distance to bg
    (Euclidean / sqrt(3), in [0, 1]) is >= min_contrast, else the cube corner farthest from bg
    (distance >= 0.5).  Colours stay independent of the label."""
    dist = (fg - bg[:, None, :]).norm(dim=-1) / math.sqrt(3.0)
    ok = dist >= min_contrast
    first = ok.to(torch.int8).argmax(dim=1)
    chosen = fg[torch.arange(fg.shape[0], device=fg.device), first]
    corner = (bg < 0.5).to(fg.dtype)
    return torch.where(ok.any(dim=1, keepdim=True), chosen, corner)


def _capsule_coverage(xs, ys, p: torch.Tensor, size: int) -> torch.Tensor:
    """Distractor coverage (B, S, S) in [0, 1]: capsules (blobs when half-length is 0, lines
    otherwise).  p (B, 9) uniforms: type, cx, cy, angle, length, radius, r, g, b."""
    is_line = p[:, 0] < 0.5
    cx, cy = (p[:, 1] * 1.8 - 0.9), (p[:, 2] * 1.8 - 0.9)
    ang = p[:, 3] * math.pi
    half_len = torch.where(is_line, 0.2 + 0.25 * p[:, 4], torch.zeros_like(p[:, 4]))
    pixel = 2.0 / size
    radius = torch.where(is_line, torch.full_like(p[:, 5], 0.6 * pixel).clamp(min=0.03),
                         0.08 + 0.08 * p[:, 5])
    ex, ey = torch.cos(ang), torch.sin(ang)
    dx = xs - cx[:, None, None]  # (B, 1, S)
    dy = ys - cy[:, None, None]  # (B, S, 1)
    t = (dx * ex[:, None, None] + dy * ey[:, None, None])
    t = torch.minimum(torch.maximum(t, -half_len[:, None, None]), half_len[:, None, None])
    qx = dx - t * ex[:, None, None]
    qy = dy - t * ey[:, None, None]
    sdf_px = (_length(qx, qy) - radius[:, None, None]) * (size / 2.0)
    return (0.5 - sdf_px).clamp_(0.0, 1.0)


def _desaturate(colours: torch.Tensor) -> torch.Tensor:
    """(..., 3) RGB -> (..., 3) grey: each colour's channel mean in all three channels."""
    return colours.mean(dim=-1, keepdim=True).expand_as(colours)


# palette="mono": a dark background and a light object, with room on both sides for the
# texture, the illumination gradient and the noise before the clamp to [0, 1]
MONO_BG, MONO_FG = 0.2, 0.8


def render_shapes(indices: torch.Tensor, seed: int = 0, img_size: int = 32, *, num_classes: int = 10,
                  size_min: float = 0.5, size_max: float = 0.9, min_contrast: float = 0.3,
                  clutter: int = 1, noise: float = 0.02, texture: float = 0.5, rotation: bool = True,
                  jitter: float = 0.25, palette: str = "colour", device=None) -> dict[str, torch.Tensor]:
    """Render the `shapes` samples with the given indices.

    indices (B,) int64 >= 0 -> dict with
      image (B, 3, H, W) float32 in [0, 1], H = W = img_size;
      label (B,) int64 in [0, num_classes): hash(seed, index) mod num_classes;
      mask  (B, H, W) int64: 0 on background (and distractors), label + 1 on the object's pixels;
      box   (B, 4) float32 xyxy in pixels enclosing the mask (x1, y1 exclusive).

    Knobs: size_min/size_max = object radius as a fraction of half the image width;
    min_contrast = minimum fg/bg colour distance (Euclidean / sqrt 3; above 0.5 is not always
    reachable); clutter = number of distractors (blobs and lines, behind the object);
    noise = pixel noise std; texture = amplitude of background plaid texture and illumination
    gradient; rotation on/off; jitter = max centre offset as a fraction of the free space;
    palette = "colour" (random RGB colours) or "grey" (random grey levels: the same draws,
    desaturated, so colour cannot tell images apart) or "mono" (one dark background level and
    one light object level for every image, MONO_BG and MONO_FG; texture, gradient, noise and
    distractors grey: grey level cannot tell images apart either).
    """
    if palette not in ("colour", "grey", "mono"):
        raise ValueError(f"palette={palette!r}: allowed values are colour|grey|mono")
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"num_classes={num_classes}: shapes has 1..{len(SHAPE_NAMES)} classes")
    if not 0.0 < size_min <= size_max:
        raise ValueError(f"size_min={size_min}, size_max={size_max}: need 0 < size_min <= size_max")
    if device is None:
        device = indices.device if torch.is_tensor(indices) else "cpu"
    device = torch.device(device)
    idx = torch.as_tensor(indices, dtype=torch.int64).to(device).reshape(-1)
    B, S = idx.shape[0], int(img_size)
    keys = _sample_keys(idx, seed)
    ph = _param_hashes(keys, 0, _NUM_OBJECT_PARAMS)
    p = _to_unit(ph)
    label = ph[:, _P_LABEL] % num_classes

    # object placement: radius r, rotation, centre (all in [-1, 1] image units)
    r = size_min + (size_max - size_min) * p[:, _P_SCALE]
    theta = p[:, _P_ROT] * (2 * math.pi) if rotation else torch.zeros_like(r)
    free = (1.0 - _EXTENT * r).clamp(min=0.0)
    cx = jitter * free * (2 * p[:, _P_CX] - 1)
    cy = jitter * free * (2 * p[:, _P_CY] - 1)

    coords = (torch.arange(S, device=device, dtype=torch.float32) * 2 + 1) / S - 1
    xs, ys = coords.view(1, 1, S), coords.view(1, S, 1)

    # colours: uniform, independent of the label; fg at least min_contrast away from bg
    # grey: every colour drawn below (bg, fg candidates, texture, distractors) desaturated
    # mono: the same draws are made (every other parameter of an index stays the same), then
    # the two levels replace them
    tone = (lambda c: c) if palette == "colour" else _desaturate
    bg = tone(p[:, _P_BG:_P_BG + 3])
    fg = _pick_foreground(tone(p[:, _P_FG:_P_FG + 3 * _FG_CANDIDATES].view(B, _FG_CANDIDATES, 3)),
                          bg, min_contrast)
    if palette == "mono":
        bg = torch.full_like(bg, MONO_BG)
        fg = torch.full_like(fg, MONO_FG)

    # background: flat colour + coloured plaid texture (separable product of two cosines)
    fx = math.pi * (1.0 + 3.0 * p[:, _P_TEX_FX])
    fy = math.pi * (1.0 + 3.0 * p[:, _P_TEX_FY])
    tx = torch.cos(fx[:, None, None] * xs + 2 * math.pi * p[:, _P_TEX_PX, None, None])  # (B,1,S)
    ty = torch.cos(fy[:, None, None] * ys + 2 * math.pi * p[:, _P_TEX_PY, None, None])  # (B,S,1)
    tex_col = (0.3 * texture * p[:, _P_TEX_AMP, None]) * tone(2 * p[:, _P_TEX_DIR:_P_TEX_DIR + 3] - 1)
    image = bg[:, :, None, None] + tex_col[:, :, None, None] * (tx * ty)[:, None]

    for d in range(clutter):
        dp = _to_unit(_param_hashes(keys, _P_DISTRACTOR + _DISTRACTOR_STRIDE * d, 9))
        cov = _capsule_coverage(xs, ys, dp, S)
        image.lerp_(tone(dp[:, 6:9])[:, :, None, None].expand_as(image), cov[:, None].expand_as(image))

    # object: local frame u, v = R(-theta) (p - c) / r; one SDF per shape kind on its subset
    a = (torch.cos(theta) / r)[:, None, None]
    b = (torch.sin(theta) / r)[:, None, None]
    dx = xs - cx[:, None, None]
    dy = ys - cy[:, None, None]
    u = a * dx + b * dy
    v = a * dy - b * dx
    sdf = torch.empty(B, S, S, device=device)
    for k in range(num_classes):
        sel = (label == k).nonzero().squeeze(1)
        if sel.numel():
            sdf[sel] = _SDFS[k](u[sel], v[sel])
    sdf.mul_((r * (S / 2.0))[:, None, None])  # local units -> pixels
    coverage = (0.5 - sdf).clamp_(0.0, 1.0)
    image.lerp_(fg[:, :, None, None].expand_as(image), coverage[:, None].expand_as(image))

    # illumination gradient over the whole image, then pixel noise
    ang = p[:, _P_GRAD_ANGLE] * (2 * math.pi)
    amp = 0.4 * texture * p[:, _P_GRAD_AMP] / math.sqrt(2.0)
    image += ((amp * torch.cos(ang))[:, None, None] * xs + (amp * torch.sin(ang))[:, None, None] * ys)[:, None]
    if noise > 0:
        windows = _noise_windows(device, 3 * S * S)
        offset = (ph[:, _P_NOISE_OFF] % (windows.shape[0] - 1)).long()
        sign = torch.where(p[:, _P_NOISE_SIGN] < 0.5, -noise, noise)
        image.addcmul_(sign.view(B, 1, 1, 1), windows[offset].view(B, 3, S, S))
    image.clamp_(0.0, 1.0)

    inside = sdf < 0
    mask = inside.long() * (label + 1)[:, None, None]
    box = _mask_box(inside)
    return {"image": image, "label": label, "mask": mask, "box": box}


def _mask_box(inside: torch.Tensor) -> torch.Tensor:
    """inside (B, H, W) bool -> (B, 4) float32 xyxy pixel box (x1, y1 exclusive); zeros if empty."""
    H, W = inside.shape[1:]
    cols = inside.any(dim=1).to(torch.int8)  # (B, W)
    rows = inside.any(dim=2).to(torch.int8)  # (B, H)
    x0 = cols.argmax(dim=1)
    x1 = W - cols.flip(1).argmax(dim=1)
    y0 = rows.argmax(dim=1)
    y1 = H - rows.flip(1).argmax(dim=1)
    box = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    return box * cols.any(dim=1, keepdim=True)
