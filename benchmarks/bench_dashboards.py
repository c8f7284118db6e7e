"""How fast the dashboards answer, at the lab preset, on this machine's CPU.

    .venv/bin/python benchmarks/bench_dashboards.py                    # timings table
    .venv/bin/python benchmarks/bench_dashboards.py --screens docs/img # + one PNG per app
    .venv/bin/python benchmarks/bench_dashboards.py --run experiments/runs/lab

Without --run it first trains a short run of the preset (run.max_steps, checkpoints every
--ckpt-every steps) into a temporary folder, so that teacher_compare and training_monitor have
checkpoints and metrics. Each interaction sets one control's value, which re-draws the app
synchronously, exactly what a slider release or a dropdown pick does in JupyterLab (minus the
browser's drawing); the table gives the median and the worst of --repeats changes, each to a
different value. Building an app (loading data, running the teacher over the images, starting
t-SNE in the background) is reported separately: it happens once, not per interaction.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_CONFIG = ROOT / "experiments" / "configs" / "lab.yaml"


def train_short_run(config: Path, out: Path, steps: int, ckpt_every: int) -> Path:
    from plaml_lab.train import pretrain
    t0 = time.perf_counter()
    # fp32: bf16 autocast is several times slower on most CPUs, and the dashboards run in fp32
    pretrain(str(config), out, [f"run.max_steps={steps}", f"run.ckpt_every={ckpt_every}",
                                "run.keep_ckpts=5", "run.eval_knn=false", "run.log_every=5",
                                "run.progress=false", "run.precision=fp32"])
    print(f"trained {steps} steps of {config.name} into {out} in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return out


def cycle(options, current, n):
    """n values to set in turn, each different from the one before (so each set re-draws)."""
    opts = list(options)
    out, prev, i = [], current, 0
    while len(out) < n and len(opts) > 1:
        v = opts[i % len(opts)]
        i += 1
        if v != prev:
            out.append(v)
            prev = v
    return out


def time_control(app, name: str, values) -> list[float]:
    w = app.controls[name]
    times = []
    for v in values:
        t0 = time.perf_counter()
        w.value = v
        times.append(time.perf_counter() - t0)
        if "error" in app.state:
            raise RuntimeError(f"{app.app_name}.{name}={v!r}: {app.state['error']}")
    return times


def option_values(w):
    return [o[1] if isinstance(o, tuple) else o for o in w.options]


def interactions(app, repeats: int) -> dict[str, list]:
    """{control name: values to cycle} for every value-carrying control of an app."""
    c = app.controls
    plan = {}
    for name, w in c.items():
        if name == "auto_refresh" or not hasattr(w, "value"):
            continue
        if name == "image":
            plan[name] = [(w.value + 7 * (i + 1)) % (w.max + 1) for i in range(repeats)]
        elif name == "mask_ratio":
            plan[name] = cycle([0.5, 0.6, 0.75, 0.9], w.value, repeats)
        elif name in ("seed",):
            plan[name] = [w.value + i + 1 for i in range(repeats)]
        elif name == "smoothing":
            plan[name] = cycle([1, 5, 10, 20], w.value, repeats)
        elif isinstance(w.value, bool):
            plan[name] = cycle([True, False], w.value, repeats)
        elif hasattr(w, "options"):
            plan[name] = cycle(option_values(w)[:8], w.value, repeats)
    return plan


def bench(run_dir: Path, repeats: int, only: list[str] | None = None) -> list[tuple]:
    from plaml_lab.runs import load_run
    from plaml_lab.viz import dashboards as D

    rows = []
    t0 = time.perf_counter()
    run = load_run(run_dir)
    rows.append(("(all)", "load_run", [time.perf_counter() - t0]))
    live = Path(tempfile.mkdtemp(prefix="plaml-live-"))
    shutil.copy(run_dir / "config.yaml", live)
    metrics = (run_dir / "metrics.jsonl").read_text().splitlines()
    (live / "metrics.jsonl").write_text("\n".join(metrics[:-repeats]) + "\n")
    makers = {
        "mask_explorer": lambda: D.mask_explorer(run),
        "token_map_viewer": lambda: D.token_map_viewer(run),
        "cluster_explorer": lambda: D.cluster_explorer(run),
        "attention_viewer": lambda: D.attention_viewer(run),
        "training_monitor": lambda: D.training_monitor(live, auto_refresh=False),
        "teacher_compare": lambda: D.teacher_compare(run),
    }
    apps = {}
    for name, make in makers.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        app = make()
        rows.append((name, "build (once)", [time.perf_counter() - t0]))
        if "error" in app.state or "unavailable" in app.state:
            raise RuntimeError(f"{name}: {app.state.get('error') or app.state['unavailable']}")
        if name == "cluster_explorer":
            app.xy("tsne")  # waits for the background t-SNE, as a user pausing would
            rows.append((name, "t-SNE in background (once)", [app.embed_seconds["tsne"]]))
        for ctrl, values in interactions(app, repeats).items():
            start = app.controls[ctrl].value
            rows.append((name, ctrl, time_control(app, ctrl, values)))
            app.controls[ctrl].value = start  # the screenshots show the default view
        if name == "training_monitor":
            times = []
            for line in metrics[-repeats:]:
                with open(live / "metrics.jsonl", "a") as f:
                    f.write(line + "\n")
                t0 = time.perf_counter()
                assert app.refresh()
                times.append(time.perf_counter() - t0)
            rows.append((name, "refresh (new rows)", times))
        apps[name] = app
    shutil.rmtree(live, ignore_errors=True)
    return rows, apps


def reference_rows(repeats: int) -> list[tuple]:
    """The same five panels (an image, three RGB maps, a scalar map with a colour bar) as a
    PIL canvas (what the apps use) and as a matplotlib figure saved to PNG (what they avoid)."""
    from plaml_lab.viz import canvas
    from plaml_lab.viz.figures import figure_png, new_figure
    rng = np.random.default_rng(0)
    items = [("image", rng.random((32, 32, 3)))]
    items += [(f"map {i}", rng.random((8, 8, 3))) for i in range(3)]
    items += [("cosine", rng.random((8, 8)))]

    def with_pil():
        canvas.png(canvas.compose(items))

    def with_matplotlib():
        fig = new_figure(10.2, 2.1, dpi=80)
        for ax, (title, arr) in zip(fig.subplots(1, 5), items):
            im = ax.imshow(arr, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if arr.ndim == 2:
                fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        figure_png(fig)

    rows = []
    for name, fn in (("5 panels as a PIL canvas + PNG", with_pil),
                     ("5 panels as a matplotlib figure + PNG", with_matplotlib)):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        rows.append(("(reference)", name, times))
    return rows


def print_table(rows) -> None:
    print("| app | interaction | median ms | max ms | n |")
    print("|---|---|---:|---:|---:|")
    for app, what, times in rows:
        ms = [1000 * t for t in times]
        print(f"| {app} | {what} | {statistics.median(ms):.0f} | {max(ms):.0f} | {len(ms)} |")


# --- screenshots -----------------------------------------------------------------------------

def _png_array(data: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _mpl_array(fig) -> np.ndarray:
    from plaml_lab.viz.figures import figure_png
    return _png_array(figure_png(fig, dpi=80))


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    w = max(a.shape[1] for a in arrays)
    pad = [np.pad(a, ((0, 8), (0, w - a.shape[1]), (0, 0)), constant_values=255) for a in arrays]
    return np.concatenate(pad, axis=0)


def write_screens(apps: dict, out: Path) -> None:
    """One PNG per app: its image views as shown, its plotly figures as static copies."""
    from PIL import Image

    from plaml_lab.viz.plots import to_matplotlib
    out.mkdir(parents=True, exist_ok=True)
    for name, app in apps.items():
        parts = []
        for vname, v in app.views.items():
            if getattr(v, "figure", None) is not None:  # PlotlyView
                width = 11.0 if name == "teacher_compare" else 7.5
                parts.append(_mpl_array(to_matplotlib(v.figure, width=width)))
            elif hasattr(v, "format") and v.value:
                parts.append(_png_array(v.value))
        # a 256-colour palette keeps each screenshot well under 150 KB
        img = Image.fromarray(_stack(parts)).quantize(256, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
        path = out / f"dash_{name}.png"
        path.write_bytes(data)
        print(f"wrote {path} ({len(data) / 1024:.0f} KB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="preset YAML (lab)")
    ap.add_argument("--run", help="an existing run folder (skips the short training run)")
    ap.add_argument("--steps", type=int, default=40, help="short run: optimiser steps")
    ap.add_argument("--ckpt-every", type=int, default=10, help="short run: checkpoint period")
    ap.add_argument("--repeats", type=int, default=5, help="changes per control")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the short run)")
    ap.add_argument("--app-threads", type=int, default=None,
                    help="torch threads of the apps (App.threads; default 1, 0 = torch's)")
    ap.add_argument("--apps", help="comma-separated subset of the apps")
    ap.add_argument("--screens", metavar="DIR", help="also write dash_<app>.png into DIR")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from plaml_lab.viz.app import App
    if args.app_threads is not None:
        App.threads = args.app_threads
    tmp = None
    if args.run:
        run_dir = Path(args.run)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="plaml-bench-"))
        run_dir = train_short_run(Path(args.config), tmp / "run", args.steps, args.ckpt_every)
    try:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"# dashboards on {run_dir} ({os.cpu_count()} CPUs, app torch threads "
              f"{App.threads or torch.get_num_threads()}, load average {load:.1f} at start)",
              flush=True)
        rows, apps = bench(run_dir, args.repeats, args.apps.split(",") if args.apps else None)
        rows += reference_rows(args.repeats)
        print_table(rows)
        inter = [statistics.median(t) for a, w, t in rows
                 if "once" not in w and not a.startswith("(")]
        print(f"\nslowest interaction median: {1000 * max(inter):.0f} ms; load average at end "
              f"{os.getloadavg()[0]:.1f}")
        if args.screens:
            write_screens(apps, Path(args.screens))
        for app in apps.values():
            app.close()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
