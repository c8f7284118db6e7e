"""Pure figure builders: tensors / arrays in, matplotlib Figures or arrays out.

Nothing here displays anything or touches pyplot's global state: figures are made with
`matplotlib.figure.Figure` (Agg canvas), so a library call never opens a window, never needs
`plt.close`, and is safe in a headless process. `make demo` and reports save them with
`fig.savefig` (or `figure_png`); the dashboards use the array helpers here and compose their
PNG panels with viz/canvas.py, which is much faster than a matplotlib figure per re-draw.

Array conventions: images are (3, H, W) or (N, 3, H, W) in [0, 1] (tensor or numpy), patch masks
are (L,) or (N, L) with 1 = hidden (MAE's convention), patch grids are row-major g x g.
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

HIDDEN_GREY = 0.5  # fill of hidden patches / positions without a value
LOSS_PARTS = ("loss", "loss_rec", "loss_cls", "loss_patch")


# --- arrays ----------------------------------------------------------------------------------

def to_numpy(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_hwc(image) -> np.ndarray:
    """(3, H, W) tensor/array in [0, 1] -> (H, W, 3) float array clipped to [0, 1]."""
    a = to_numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a.transpose(1, 2, 0)  # channel-first, the library's convention
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def grid_size(num_patches: int) -> int:
    g = math.isqrt(int(num_patches))
    if g * g != num_patches:
        raise ValueError(f"{num_patches} patches do not form a square grid")
    return g


def patch_to_pixels(values, patch_size: int) -> np.ndarray:
    """Per-patch values (L,) or (L, C) -> a pixel map (H, W) or (H, W, C), each patch a block."""
    v = to_numpy(values)
    g = grid_size(v.shape[0])
    v = v.reshape(g, g, *v.shape[1:])
    return np.repeat(np.repeat(v, patch_size, axis=0), patch_size, axis=1)


def masked_image(image, mask, patch_size: int, fill: float = HIDDEN_GREY) -> np.ndarray:
    """The student's view: (3, H, W) image, (L,) mask (1 = hidden) -> (H, W, 3), hidden = fill."""
    img = image_hwc(image)
    hidden = patch_to_pixels(to_numpy(mask) > 0.5, patch_size)
    out = img.copy()
    out[hidden] = fill
    return out


def paste_patches(image, recon, mask, patch_size: int) -> np.ndarray:
    """MAE's display: visible patches from `image`, hidden ones from `recon` -> (H, W, 3)."""
    hidden = patch_to_pixels(to_numpy(mask) > 0.5, patch_size)
    return np.where(hidden[..., None], image_hwc(recon), image_hwc(image))


def pca_rgb(fit, *apply, quantile: float = 0.01) -> list[np.ndarray]:
    """Colour tokens by their first three principal components.

    fit (N, D) fixes the PCA basis and the colour range (per component, the [q, 1 - q]
    quantiles of the fitted tokens map to [0, 1]); each array of `apply` (M, D) is projected with
    that same basis, so colours are comparable across arrays. Component signs are fixed (largest
    loading positive) so a colour does not flip between calls. Returns one (M, 3) array in [0, 1]
    per array of `apply` (or for `fit` itself when nothing is given)."""
    f = torch.as_tensor(to_numpy(fit), dtype=torch.float64)
    mean = f.mean(0, keepdim=True)
    centred = f - mean
    k = min(3, centred.shape[0], centred.shape[1])
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    basis = vh[:k]  # (k, D)
    signs = torch.sign(basis.gather(1, basis.abs().argmax(1, keepdim=True)))
    basis = basis * torch.where(signs == 0, torch.ones_like(signs), signs)
    proj = centred @ basis.T
    lo = torch.quantile(proj, quantile, dim=0)
    hi = torch.quantile(proj, 1 - quantile, dim=0)
    span = torch.where(hi - lo > 1e-12, hi - lo, torch.ones_like(hi))
    outs = []
    for a in (apply or (fit,)):
        t = torch.as_tensor(to_numpy(a), dtype=torch.float64)
        p = ((t - mean) @ basis.T - lo) / span
        rgb = torch.full((t.shape[0], 3), HIDDEN_GREY, dtype=torch.float64)
        rgb[:, :k] = p.clamp(0, 1)
        outs.append(rgb.numpy().astype(np.float32))
    return outs


def prototype_colors(num: int) -> np.ndarray:
    """A fixed, distinct colour per prototype (K, 3): hues spaced by the golden ratio, with
    alternating lightness so neighbouring ids stay distinguishable for any K."""
    golden = (math.sqrt(5) - 1) / 2
    cols = [colorsys.hls_to_rgb((i * golden) % 1.0, (0.45, 0.62, 0.32)[i % 3], 0.75)
            for i in range(num)]
    return np.asarray(cols, dtype=np.float32).reshape(num, 3)


def label_map(labels, num_labels: int) -> np.ndarray:
    """Per-patch prototype ids (L,) -> colours (L, 3); negative ids (no label) are grey."""
    lab = to_numpy(labels).astype(np.int64)
    cols = prototype_colors(max(num_labels, 1))
    out = np.full((lab.shape[0], 3), HIDDEN_GREY, dtype=np.float32)
    ok = lab >= 0
    out[ok] = cols[lab[ok] % len(cols)]
    return out


# --- figures -------------------------------------------------------------------------------

def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, dpi: int | None = None) -> bytes:
    """Render a Figure to PNG bytes (what an ipywidgets.Image shows)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi)
    return buf.getvalue()


def _show(ax, arr, title: str = "", **kw) -> None:
    ax.imshow(arr, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def loss_curves(metrics_rows: Sequence[dict], parts: Sequence[str] = LOSS_PARTS) -> Figure:
    """Loss parts against the optimiser step, the learning rate on a twin axis.
    metrics_rows: the rows of a run's metrics.jsonl (each with `step`, loss parts, `lr`)."""
    fig = new_figure(6.0, 3.2)
    ax = fig.subplots()
    rows = [r for r in metrics_rows if "step" in r]
    steps = [r["step"] for r in rows]
    for key in parts:
        ys = [r.get(key) for r in rows]
        if any(y for y in ys):
            ax.plot(steps, [np.nan if y is None else y for y in ys], label=key,
                    lw=2.0 if key == "loss" else 1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if any("lr" in r for r in rows):
        ax2 = ax.twinx()
        ax2.plot(steps, [r.get("lr", np.nan) for r in rows], color="0.4", ls="--", lw=1,
                 label="lr")
        ax2.set_ylabel("learning rate")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    elif rows:
        ax.legend(fontsize=8)
    if not rows:
        ax.text(0.5, 0.5, "no metrics yet", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    return fig


def mask_grid(images, masks, patch_size: int, recon=None, max_images: int = 8) -> Figure:
    """One column per image: the image, the student's view (hidden patches grey), and with
    `recon` (N, 3, H, W) the reconstruction pasted into the hidden patches.
    images (N, 3, H, W) in [0, 1]; masks (N, L), 1 = hidden."""
    n = min(len(images), max_images)
    rows = [("image", [image_hwc(images[i]) for i in range(n)]),
            ("visible", [masked_image(images[i], masks[i], patch_size) for i in range(n)])]
    if recon is not None:
        rows.append(("reconstruction",
                     [paste_patches(images[i], recon[i], masks[i], patch_size) for i in range(n)]))
    fig = new_figure(1.1 * n + 0.6, 1.1 * len(rows))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, arrs) in enumerate(rows):
        for c, arr in enumerate(arrs):
            _show(axes[r, c], arr)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.subplots_adjust(0.08, 0.02, 0.99, 0.98, 0.05, 0.05)
    return fig


def pseudo_label_grid(images, labels, max_labels: int = 8, per_label: int = 8) -> Figure:
    """Images grouped by pseudo label: one row per label (the `max_labels` most used), up to
    `per_label` images each, the row titled with the label and its count.
    images (N, 3, H, W) in [0, 1]; labels (N,) prototype ids."""
    lab = to_numpy(labels).astype(np.int64)
    ids, counts = np.unique(lab, return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")][:max_labels]
    fig = new_figure(0.9 * per_label + 1.1, 0.9 * max(1, len(order)))
    axes = fig.subplots(max(1, len(order)), per_label, squeeze=False)
    for r, k in enumerate(order):
        members = np.flatnonzero(lab == k)
        for c in range(per_label):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(members):
                ax.imshow(image_hwc(images[int(members[c])]), interpolation="nearest")
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(f"#{k} ({len(members)})", fontsize=8, rotation=0, ha="right",
                              va="center")
    fig.subplots_adjust(0.12, 0.02, 0.99, 0.98, 0.05, 0.08)
    return fig
