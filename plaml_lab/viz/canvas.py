"""Fast PNG panels for the dashboards, composed with numpy + PIL instead of matplotlib.

A dashboard re-draws on every slider release; a matplotlib figure of five panels with colour
bars costs 0.3-1 s on a busy 2-core CPU, mostly in axes creation and layout, while the same
picture composed here costs a few milliseconds (docs/dashboards.md). Images are small (16-64
pixels), so each panel is the array upscaled with nearest neighbours, a title above it and, for
scalar maps, a colour bar with its range beside it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from plaml_lab.viz.figures import image_hwc, to_numpy

BACKGROUND = 255
NAN_GREY = 0.5  # scalar maps: positions without a value (grey, as hidden patches)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def colourise(values, cmap: str = "viridis", vmin: float | None = None,
              vmax: float | None = None) -> tuple[np.ndarray, float, float]:
    """(H, W) scalars -> ((H, W, 3) colours in [0, 1], vmin, vmax); NaN -> light grey."""
    v = to_numpy(values).astype(np.float64)
    finite = np.isfinite(v)
    lo = float(np.min(v[finite])) if vmin is None and finite.any() else (vmin or 0.0)
    hi = float(np.max(v[finite])) if vmax is None and finite.any() else (
        vmax if vmax is not None else 1.0)
    span = hi - lo if hi > lo else 1.0
    rgb = colormaps[cmap](np.clip((np.where(finite, v, lo) - lo) / span, 0, 1))[..., :3]
    rgb[~finite] = NAN_GREY
    return rgb.astype(np.float32), lo, hi


def _upscale(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    k = max(1, size // max(h, w))
    return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def _colour_bar(height: int, cmap: str, lo: float, hi: float, font) -> Image.Image:
    """A vertical bar (high at the top) with the top / bottom values written beside it."""
    ramp = colormaps[cmap](np.linspace(1, 0, height))[:, :3]
    bar = np.repeat(ramp[:, None, :], 10, axis=1)
    img = Image.new("RGB", (52, height), (BACKGROUND,) * 3)
    img.paste(Image.fromarray(_to_uint8(bar)), (2, 0))
    d = ImageDraw.Draw(img)
    d.text((15, 0), f"{hi:.3g}", fill=(0, 0, 0), font=font)
    d.text((15, height - font.size - 2), f"{lo:.3g}", fill=(0, 0, 0), font=font)
    return img


def compose(items: Sequence[tuple[str, np.ndarray | None]], *, panel: int = 160,
            ncols: int | None = None, title: str = "", cmap: str = "viridis",
            vmin: float | None = None, vmax: float | None = None, font_size: int = 12
            ) -> np.ndarray:
    """Titled panels on a white canvas -> (H, W, 3) uint8.

    items: (title, array): (h, w, 3) RGB in [0, 1] or (3, h, w); (h, w) scalars shown with
    `cmap` (range vmin..vmax, default the panel's own) and a colour bar; None leaves an empty
    panel with its title (e.g. 'no reconstruction'). Titles may hold '\\n'."""
    font, small = _font(font_size), _font(font_size - 2)
    tiles = []
    for name, arr in items:
        lines = name.split("\n")
        head = len(lines) * (font_size + 3) + 4
        if arr is None:
            body, bar = np.full((panel, panel, 3), 1.0, np.float32), None
        elif np.ndim(arr) == 2:
            rgb, lo, hi = colourise(arr, cmap, vmin, vmax)
            body = _upscale(rgb, panel)
            bar = _colour_bar(body.shape[0], cmap, lo, hi, small)
        else:
            body, bar = _upscale(image_hwc(arr), panel), None
        w = body.shape[1] + (bar.width if bar else 0)
        w = max(w, max(int(font.getlength(t)) for t in lines) + 4)
        tile = Image.new("RGB", (w, head + body.shape[0]), (BACKGROUND,) * 3)
        d = ImageDraw.Draw(tile)
        for i, t in enumerate(lines):
            d.text((2, 2 + i * (font_size + 3)), t, fill=(0, 0, 0), font=font)
        tile.paste(Image.fromarray(_to_uint8(body)), (0, head))
        if bar:
            tile.paste(bar, (body.shape[1] + 2, head))
        tiles.append(tile)
    ncols = ncols or len(tiles)
    rows = [tiles[i:i + ncols] for i in range(0, len(tiles), ncols)]
    gap = 10
    col_w = [max(r[c].width for r in rows if c < len(r)) for c in range(ncols)]
    row_h = [max(t.height for t in r) for r in rows]
    top = (font_size + 8) if title else 0
    width = max(sum(col_w) + gap * (ncols - 1) + 8, int(font.getlength(title)) + 8 if title else 0)
    canvas = Image.new("RGB", (width, sum(row_h) + gap * (len(rows) - 1) + top + 8),
                       (BACKGROUND,) * 3)
    if title:
        ImageDraw.Draw(canvas).text((4, 3), title, fill=(60, 60, 60), font=font)
    y = top + 4
    for r, row in enumerate(rows):
        x = 4
        for c, tile in enumerate(row):
            canvas.paste(tile, (x, y))
            x += col_w[c] + gap
        y += row_h[r] + gap
    return np.asarray(canvas)


def gallery(images, captions: Sequence[str] | None = None, *, ncols: int = 8, size: int = 64,
            empty: str = "no images", font_size: int = 11) -> np.ndarray:
    """A grid of (N, 3, h, w) images, each upscaled to about `size` pixels with an optional
    caption (e.g. its dataset index) -> (H, W, 3) uint8."""
    if len(images) == 0:
        return compose([(empty, None)], panel=size)
    items = [(captions[i] if captions else "", image_hwc(images[i])) for i in range(len(images))]
    return compose(items, panel=size, ncols=min(ncols, len(items)), font_size=font_size)


def png(canvas: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (what an ipywidgets.Image shows)."""
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
