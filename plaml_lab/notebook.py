"""What the notebooks call that belongs to no other module: repo-relative paths, the SMOKE
preset, compact figure display and live loss curves.

Notebooks run with cwd = notebooks/ under JupyterLab, papermill and nbval, but their parameters
name files the way the CLI does (`experiments/configs/lab.yaml`), so every path a notebook takes
is resolved against the repo root (the folder holding pyproject.toml).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

QUICK = "experiments/configs/quick.yaml"

# SMOKE (CI): the quick preset cut to a few optimiser steps and small evaluation sets, so a
# notebook runs in seconds; applied before the notebook's own overrides (those still win).
# One thread: the checked outputs then do not depend on the machine's core count.
SMOKE_OVERRIDES = [
    "run.device=cpu", "run.max_steps=6", "run.log_every=1", "run.ckpt_every=0",
    "run.progress=false", "run.num_threads=1",
    "data.num_train=256", "data.num_val=128", "eval.max_train=256", "eval.max_val=128",
]


def repo_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd, then this package) that holds
    pyproject.toml."""
    starts = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).parent]
    for s in starts:
        for folder in [s.resolve(), *s.resolve().parents]:
            if (folder / "pyproject.toml").is_file():
                return folder
    return Path.cwd().resolve()


def repo_path(path: str | Path | None) -> Path | None:
    """An absolute path: relative paths are taken relative to the repo root."""
    if path is None or str(path) == "":
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def shown_path(path: str | Path) -> str:
    """`path` relative to the repo root when inside it (what a notebook prints)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(repo_root()))
    except ValueError:
        return str(p)


def settings(config: str | None, overrides: list[str] | None, smoke: bool
             ) -> tuple[str | None, list[str]]:
    """(config path, overrides) a notebook hands to plaml_lab: with smoke, the quick preset and
    SMOKE_OVERRIDES come first and the notebook's own overrides are applied after them, and
    torch is pinned to one thread."""
    overrides = [str(o) for o in (overrides or [])]
    if smoke:
        import torch
        torch.set_num_threads(1)  # as run.num_threads=1: checked outputs match on any CPU count
        return str(repo_path(QUICK)), SMOKE_OVERRIDES + overrides
    path = repo_path(config)
    return (str(path) if path else None), overrides


def run_dir(out_dir: str | Path, smoke: bool) -> Path:
    """Where a notebook writes its run. Under SMOKE a relative out_dir (a notebook default) goes
    to a fresh temporary folder: CI runs always train from scratch and never collide with (or
    resume) the lab run of the same name. Absolute paths (sweeps, tests) are kept."""
    path = Path(out_dir).expanduser()
    if smoke and not path.is_absolute():
        import tempfile
        return Path(tempfile.mkdtemp(prefix="plaml_smoke_")) / path.name
    return repo_path(path)


def load(config: str | None, overrides: list[str] | None):
    """A validated PretrainConfig from notebook parameters (paths resolved as above)."""
    from plaml_lab.config import load_config
    return load_config(repo_path(config), overrides)


def open_run(run: str | None, config: str | None, overrides: list[str] | None):
    """A notebook's `run` parameter -> Run: the run folder / checkpoint when given, else a
    random-init model of `config` + `overrides` (seeded by run.seed)."""
    from plaml_lab.runs import load_run, random_init_run
    if run:
        return load_run(repo_path(run))
    return random_init_run(load(config, overrides))


# --- text ---------------------------------------------------------------------------------------

def describe_config(cfg) -> str:
    """The knobs that say what a run is (method switches, masking, teachers, model, schedule)."""
    from plaml_lab.train import variant_name
    m, t = cfg.model, cfg.teachers
    lines = [
        f"variant   : {variant_name(cfg)} (method.target={cfg.method.target}, "
        f"method.pseudo_labels={cfg.method.pseudo_labels}, method.teachers={cfg.method.teachers})",
        f"teachers  : {', '.join(cfg.teacher_roles) or 'none'}"
        + (f" (labelling momentum {t.labelling.momentum} -> {t.labelling.momentum_end}, "
           f"reconstruction {t.reconstruction.momentum} -> {t.reconstruction.momentum_end})"
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


def metrics_text(values: dict, keys: list[str] | tuple[str, ...], digits: int = 3) -> str:
    """`key  value` lines, numbers rounded (what notebooks print and nbval compares)."""
    lines = []
    for k in keys:
        v = values.get(k)
        shown = f"{v:.{digits}f}" if isinstance(v, float) else str(v)
        lines.append(f"{k:<14} {shown}")
    return "\n".join(lines)


def table(rows: dict[str, dict] | list[dict], keys: list[str], first: str = "",
          digits: int = 3) -> str:
    """A fixed-width text table: one line per row (a dict of name -> values, or a list of dicts
    whose `first` key names the row), one column per key."""
    items = list(rows.items()) if isinstance(rows, dict) else [(r.get(first, ""), r) for r in rows]

    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return "" if v is None else str(v)

    names = [str(n) for n, _ in items]
    width0 = max([len(first)] + [len(n) for n in names])
    cells = [[fmt(r.get(k)) for k in keys] for _, r in items]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    out = [f"{first:<{width0}}  " + "  ".join(f"{k:>{w}}" for k, w in zip(keys, widths))]
    for n, c in zip(names, cells):
        out.append(f"{n:<{width0}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(c, widths)))
    return "\n".join(line.rstrip() for line in out)


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
    """A matplotlib figure (closed afterwards) or an (H, W, 3) uint8 canvas -> palette PNG
    bytes: a few tens of kB, so committed notebooks stay small."""
    from PIL import Image

    if hasattr(fig, "savefig"):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
        import matplotlib.pyplot as plt
        plt.close(fig)  # pyplot figures would otherwise be shown a second time by the backend
        buf.seek(0)
        img = Image.open(buf).convert("RGB")
    else:
        img = Image.fromarray(fig).convert("RGB")
    img = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def show(fig, dpi: int = 72) -> None:
    """Display a matplotlib figure or an (H, W, 3) uint8 canvas as a compact PNG (anything
    else, e.g. a widget, is displayed as is)."""
    from IPython.display import Image, display
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
        from IPython.display import Image, display
        data = png_bytes(fig, dpi)
        display(Image(data=data))
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / f"{name}.png"
            path.write_bytes(data)
            self.saved.append(path)


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
        from IPython.display import Image, display
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
        from plaml_lab.runs import read_metrics
        self.rows = read_metrics(run_dir) or self.rows
        self.draw()


def loss_figure(rows: list[dict], title: str = ""):
    """Loss curves of metrics rows (the viz figure builder when present)."""
    from plaml_lab.viz.figures import loss_curves
    fig = loss_curves(rows)
    if title and fig.axes:
        fig.axes[0].set_title(title, fontsize=9)
    return fig


def smoke_env() -> bool:
    """The SMOKE switch as notebooks read it (CI sets CI=true)."""
    return "CI" in os.environ
