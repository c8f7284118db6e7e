"""What a notebook shows: config and metric text, tables, compact PNG figures, dashboard
snapshots and live loss curves."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import PIL.Image
from IPython.display import Image, display

from plaml_lab.collapse import rows_per_step
from plaml_lab.config import load_config
from plaml_lab.notebook.params import repo_path, shown_path
from plaml_lab.runs import read_metrics
from plaml_lab.method.rules import variant_name
from plaml_lab.viz import figures as F, inspect as I
from plaml_lab.viz.figures import loss_curves
from plaml_lab.viz.plots import collapse_figure as plotly_collapse, plotly_bundle, to_matplotlib

PLOTLY_MAX_BYTES = 150_000  # larger plotly snapshots are left out of saved notebooks


# --- text ---------------------------------------------------------------------------------------

def _ema(t) -> str:
    """A teacher's EMA schedule as given: momenta, or windows as shares of the run's steps."""
    start = f"window {t.window:g} of the run" if t.window > 0 else f"{t.momentum}"
    end = f"window {t.window_end:g}" if t.window_end > 0 else f"{t.momentum_end}"
    return f"{start} -> {end}"


def describe_config(cfg) -> str:
    """The knobs that say what a run is (method switches, masking, teachers, model, schedule)."""
    m, t = cfg.model, cfg.teachers
    lines = [
        f"variant   : {variant_name(cfg)} (method.target={cfg.method.target}, "
        f"method.pseudo_labels={cfg.method.pseudo_labels}, method.teachers={cfg.method.teachers})",
        f"teachers  : {', '.join(cfg.teacher_roles) or 'none'}"
        + (f" (labelling momentum {_ema(t.labelling)}, reconstruction {_ema(t.reconstruction)})"
           if cfg.teacher_roles else ""),
        f"masking   : ratio {cfg.mask.ratio}, {cfg.mask.strategy}",
        f"model     : ViT {m.embed_dim}-d x {m.depth} blocks, {m.img_size}px images, "
        f"{m.patch_size}px patches; decoder {m.decoder_embed_dim}-d x {m.decoder_depth}",
        f"data      : {cfg.data.dataset}"
        + (f" ({cfg.data.num_train} train / {cfg.data.num_val} held-out images)"
           if cfg.data.dataset == "shapes" else ""),
        f"schedule  : batch {cfg.optim.batch_size}, {cfg.optim.epochs:g} epochs"
        + (f", stopping after {cfg.run.max_steps} steps" if cfg.run.max_steps else "")
        + f", seed {cfg.run.seed}, device {cfg.run.device}",
    ]
    return "\n".join(lines)


def coarse(v) -> str:
    """What a checked notebook cell shows of a measured number: only what no CPU class or
    precision changes (nbval compares it on every machine): `0` (the term is off), `finite`,
    or the non-finite value itself (`nan`, `inf`); None is blank, other text unchanged."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if x == 0:
        return "0"
    return "finite" if math.isfinite(x) else str(x)


def _fmt(v, digits: int) -> str:
    if isinstance(v, float):
        return f"{round(v, digits) + 0.0:.{digits}f}"  # + 0.0: no "-0.000"
    return "" if v is None else str(v)


def metrics_text(values: dict, keys: list[str] | tuple[str, ...], digits: int = 3,
                 coarse_keys: tuple[str, ...] | list[str] = ()) -> str:
    """`key  value` lines, numbers rounded (keys in coarse_keys shown by `coarse`: what a
    checked cell may show)."""
    shown = [coarse(values.get(k)) if k in coarse_keys else _fmt(values.get(k), digits)
             for k in keys]
    return "\n".join(f"{k:<14} {v}".rstrip() for k, v in zip(keys, shown))


def table(rows: dict[str, dict] | list[dict], keys: list[str], first: str = "",
          digits: int = 3, coarse_keys: tuple[str, ...] | list[str] = ()) -> str:
    """A fixed-width text table: one line per row (a dict of name -> values, or a list of dicts
    whose `first` key names the row), one column per key (those in coarse_keys by `coarse`)."""
    items = list(rows.items()) if isinstance(rows, dict) else [(r.get(first, ""), r) for r in rows]
    names = [str(n) for n, _ in items]
    width0 = max([len(first)] + [len(n) for n in names])
    cells = [[coarse(r.get(k)) if k in coarse_keys else _fmt(r.get(k), digits) for k in keys]
             for _, r in items]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    out = [f"{first:<{width0}}  " + "  ".join(f"{k:>{w}}" for k, w in zip(keys, widths))]
    for n, c in zip(names, cells):
        out.append(f"{n:<{width0}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(c, widths)))
    return "\n".join(line.rstrip() for line in out)


def comparison(results: dict[str, dict], keys: list[str] | tuple[str, ...], digits: int = 3,
               coarse_values: bool = False) -> str:
    """Metrics as rows, one column per result (e.g. pretrained, random init), plus the
    difference of the first two; metrics no result has are left out. coarse_values: every
    value by `coarse` and no difference column (what a checked cell may show)."""
    names = list(results)
    keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in results.values())]
    with_diff = len(names) > 1 and not coarse_values
    rows = {}
    for k in keys:
        row = {n: results[n].get(k) for n in names}
        a, b = (results[n].get(k) for n in names[:2]) if len(names) > 1 else (None, None)
        if with_diff and isinstance(a, (int, float)) and isinstance(b, (int, float)):
            row["difference"] = a - b
        rows[k] = row
    cols = names + (["difference"] if with_diff else [])
    return table(rows, cols, first="metric", digits=digits,
                 coarse_keys=cols if coarse_values else ())


def app_status(name: str, app) -> str:
    """One line on a dashboard: its controls and views, and whether it rendered (the error or
    the reason it is unavailable otherwise)."""
    if app.state.get("unavailable"):
        return f"{name}: unavailable ({app.state['unavailable']})"
    line = f"{name}: controls {', '.join(app.controls)}; views {', '.join(app.views)}"
    if app.state.get("error"):
        return f"{line}; ERROR {app.state['error']}"
    return f"{line}; rendered"


def show_app(app, shelf: "Shelf | None" = None, name: str = "app", static: bool = False) -> None:
    """Display a dashboard; with `static` (or a shelf with an out_dir) also snapshots of its
    views, so a saved notebook shows them without a live kernel: image views as PNG (saved to
    the shelf's out_dir), plotly views as plotly's own mime bundle when small."""
    display(app)
    if not (static or (shelf and shelf.out_dir)):
        return
    shelf = shelf or Shelf()
    for view_name, view in app.views.items():
        data = getattr(view, "value", None)  # an image view's PNG (bytes or a memoryview)
        if isinstance(data, (bytes, memoryview)) and len(data):
            shelf.show(f"{name}_{view_name}", bytes(data))
        elif getattr(view, "figure", None) is not None:
            # a plotly view: its own mime bundle (JupyterLab renders it), if it stays small
            bundle = plotly_bundle(view.figure)
            if len(json.dumps(bundle)) <= PLOTLY_MAX_BYTES:
                display(bundle, raw=True)


def pseudo_label_gallery(run, num_images: int = 256, dataset: str = "val"):
    """The labelling teacher's class-token pseudo labels on held-out images, as a grid of the
    images grouped by label (None when the run has no labelling teacher)."""
    if run.model.labelling_teacher is None:
        return None
    ds = I.resolve_dataset(run, dataset)
    batch = I.fetch(ds, range(min(num_images, len(ds))))
    labels = I.pseudo_labels(run, batch["image"])["image"]
    return F.pseudo_label_grid(batch["image"], labels)


def run_files(run_dir: str | Path) -> str:
    """What a run folder holds, one line per file (sizes in kB)."""
    run_dir = Path(run_dir)
    lines = [f"run folder: {shown_path(run_dir)}"]
    for p in sorted(run_dir.rglob("*")):
        if p.is_file():
            extra = ""
            if p.name == "metrics.jsonl":
                extra = f", {sum(1 for ln in p.read_text().splitlines() if ln.strip())} rows"
            lines.append(f"  {p.relative_to(run_dir)}  ({p.stat().st_size / 1e3:.0f} kB{extra})")
    return "\n".join(lines)


# --- figures ------------------------------------------------------------------------------------

def png_bytes(fig, dpi: int = 72, colors: int = 128) -> bytes:
    """A matplotlib figure (closed afterwards), an (H, W, 3) uint8 canvas or encoded image bytes
    -> palette PNG bytes: a few tens of kB, so committed notebooks stay small."""

    if isinstance(fig, bytes):  # an encoded image (e.g. a dashboard's PNG view)
        img = PIL.Image.open(io.BytesIO(fig)).convert("RGB")
    elif hasattr(fig, "savefig"):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
        plt.close(fig)  # pyplot figures would otherwise be shown a second time by the backend
        buf.seek(0)
        img = PIL.Image.open(buf).convert("RGB")
    else:
        img = PIL.Image.fromarray(fig).convert("RGB")
    img = img.quantize(colors=colors, method=PIL.Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def show(fig, dpi: int = 72) -> None:
    """Display a matplotlib figure or an (H, W, 3) uint8 canvas as a compact PNG (anything
    else, e.g. a widget, is displayed as is)."""
    if hasattr(fig, "savefig") or (hasattr(fig, "ndim") and fig.ndim == 3):
        display(Image(data=png_bytes(fig, dpi)))
    else:
        display(fig)


class Shelf:
    """Shows figures and, when `out_dir` is set, also saves each as out_dir/<name>.png."""

    def __init__(self, out_dir: str | Path | None = None):
        self.out_dir = repo_path(out_dir) if out_dir else None
        self.saved: list[Path] = []

    def show(self, name: str, fig, dpi: int = 72) -> None:
        data = png_bytes(fig, dpi)
        display(Image(data=data))
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / f"{name}.png"
            path.write_bytes(data)
            self.saved.append(path)

    def save_json(self, name: str, data) -> Path | None:
        """out_dir/<name>.json when out_dir is set."""
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{name}.json"
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        self.saved.append(path)
        return path


class LiveLoss:
    """pretrain(callback=LiveLoss(...)): redraws the loss curves every `every` logged rows in one
    display slot, so the notebook keeps a single figure, not one per update."""

    def __init__(self, every: int = 1, title: str = "", dpi: int = 72):
        self.rows: list[dict] = []
        self.every = max(1, every)
        self.title = title
        self.dpi = dpi
        self._handle = None

    def __call__(self, row: dict) -> None:
        self.rows.append(dict(row))
        if len(self.rows) % self.every == 0:
            self.draw()

    def draw(self) -> None:
        if not self.rows:
            return
        img = Image(data=png_bytes(loss_figure(self.rows, self.title), self.dpi))
        if self._handle is None:
            self._handle = display(img, display_id=True)
        else:
            self._handle.update(img)

    def finish(self, run_dir: str | Path) -> None:
        """Redraw from the run's metrics.jsonl: the whole curve, also when the run resumed (or
        was already complete and trained nothing now)."""
        self.rows = read_metrics(run_dir) or self.rows
        self.draw()


def loss_figure(rows: list[dict], title: str = ""):
    """Loss curves of metrics rows (the viz figure builder when present)."""
    fig = loss_curves(rows)
    if title and fig.axes:
        fig.axes[0].set_title(title, fontsize=9)
    return fig


def collapse_figure(run_dir: str | Path, width: float = 9.0):
    """The collapse statistics a run logged (plaml_lab.collapse: prototypes used by the
    targets, their entropy, the class token's spread and effective rank) as a static figure,
    with the warning's thresholds dashed: the training monitor's collapse panels, for reports."""

    cfg = load_config(Path(run_dir) / "config.yaml")
    fig = plotly_collapse(read_metrics(run_dir), cfg.pl.num_prototypes, rows_per_step(cfg))
    return to_matplotlib(fig, width=width, height=7.0)

