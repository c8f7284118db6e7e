"""Throughput of the data package on this machine, and the shapes sample grid.

    .venv/bin/python benchmarks/bench_data.py --threads 2            # timings
    .venv/bin/python benchmarks/bench_data.py --grid docs/shapes_grid.png

Timings: render_shapes alone (float images), generate_shapes (render + uint8 dataset, what
build_dataset runs), epoch_batches over an ArrayDataset and make_views (two views).  Each is
the best of a few repeats of ``--seconds`` each, because the machine is shared.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from plaml_lab.config import AugConfig
from plaml_lab.data import SHAPE_NAMES, epoch_batches, make_views, render_shapes
from plaml_lab.data.datasets import generate_shapes


def rate(fn, items_per_call: int, seconds: float, repeats: int = 3) -> float:
    """Best items/s over `repeats` windows of about `seconds` each."""
    fn(0)  # warm-up (noise table, allocator)
    best, call = 0.0, 1
    for _ in range(repeats):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            fn(call)
            call, n = call + 1, n + items_per_call
        best = max(best, n / (time.perf_counter() - t0))
    return best


def bench(img_size: int, batch: int, seconds: float, device: str = "cpu") -> None:
    if device != "cpu":  # generation on an accelerator: render only, synchronised per call
        def render(c):
            render_shapes(torch.arange(c * batch, (c + 1) * batch), img_size=img_size, device=device)
            torch.cuda.synchronize()
        r = rate(render, batch, seconds)
        print(f"render_shapes   {img_size:4d}px batch {batch:5d} on {device}: {r:12,.0f} img/s")
        return
    r = rate(lambda c: render_shapes(torch.arange(c * batch, (c + 1) * batch), img_size=img_size), batch, seconds)
    print(f"render_shapes   {img_size:4d}px batch {batch:5d}: {r:10,.0f} img/s")
    n = 8 * batch
    g = rate(lambda c: generate_shapes(torch.arange(c * n, (c + 1) * n), 0, img_size), n, seconds, repeats=2)
    print(f"generate_shapes {img_size:4d}px {n:5d} imgs : {g:10,.0f} img/s (render + uint8 dataset)")
    ds = generate_shapes(torch.arange(4 * batch), 0, img_size)
    e = rate(lambda c: sum(1 for _ in epoch_batches(ds, 256, seed=0, epoch=c)), (4 * batch // 256) * 256, seconds)
    print(f"epoch_batches   {img_size:4d}px batch   256: {e:10,.0f} img/s")
    aug = AugConfig(crop_scale_min=0.3, crop_scale_max=1.0, flip=True, color_jitter=0.4,
                    color_jitter_p=0.8, grayscale_p=0.2)
    x = ds.get_batch(torch.arange(256))["image"]
    gen = torch.Generator().manual_seed(0)
    v = rate(lambda c: make_views(x, aug, 2, img_size, generator=gen), 256, seconds)
    print(f"make_views x2   {img_size:4d}px batch   256: {v:10,.0f} img/s")


def save_grid(path: str, num_classes: int = 12, per_class: int = 16, img_size: int = 32, zoom: int = 2) -> None:
    """PNG grid: one row per class, per_class samples with the default nuisances, shown at
    `zoom` x.  Pixel noise makes a lossless RGB PNG of this grid ~600 KB, so the images are
    reduced to a 254-colour dithered palette at 1x before zooming (2x2 blocks compress well)."""
    import io

    import matplotlib
    import numpy as np
    from PIL import Image

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = render_shapes(torch.arange(per_class * num_classes * 3), num_classes=num_classes, img_size=img_size)
    rows = []
    for k in range(num_classes):
        sel = (out["label"] == k).nonzero().squeeze(1)[:per_class]
        rows.append(out["image"][sel].permute(2, 0, 3, 1).reshape(img_size, per_class * img_size, 3))
    grid = Image.fromarray((torch.cat(rows) * 255).round().byte().numpy())
    palette = grid.quantize(254, method=Image.Quantize.MEDIANCUT)
    palette.putpalette(palette.getpalette()[: 254 * 3] + [255, 255, 255, 0, 0, 0])  # + figure bg, text
    dithered = np.asarray(grid.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).convert("RGB"))
    zoomed = dithered.repeat(zoom, axis=0).repeat(zoom, axis=1)

    dpi, label_px = 100, 80
    h, w = zoomed.shape[:2]
    fig = plt.figure(figsize=((w + label_px) / dpi, h / dpi), dpi=dpi)
    fig.figimage(zoomed, xo=label_px, yo=0, origin="upper")  # 1:1 pixels, no resampling
    for k, name in enumerate(SHAPE_NAMES[:num_classes]):
        y = 1 - (k + 0.5) * img_size * zoom / h
        fig.text((label_px - 6) / (w + label_px), y, name, ha="right", va="center", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    figure = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    figure.quantize(palette=palette, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({per_class} samples x {num_classes} classes, default knobs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the target machine has 2 cores)")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="image sizes to time")
    p.add_argument("--batch", type=int, default=2048, help="images per render_shapes call at 32 px (scaled by 1/area)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one timing window")
    p.add_argument("--device", type=str, default="cpu", help="cuda: time render_shapes on the GPU only")
    p.add_argument("--grid", type=str, default=None, help="write the sample grid PNG here and skip timings")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.grid:
        save_grid(args.grid)
        return
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # shared machine: say how busy it was
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, load {load}")
    for size in args.sizes:
        bench(size, max(16, args.batch * 32 * 32 // (size * size)), args.seconds, args.device)


if __name__ == "__main__":
    main()
