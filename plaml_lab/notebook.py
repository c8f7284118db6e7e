"""What the notebooks call that belongs to no other module: repo-relative paths, the SMOKE
preset, compact figure display and live loss curves.

Notebooks run with cwd = notebooks/ under JupyterLab, papermill and nbval, but their parameters
name files the way the CLI does (`experiments/configs/lab.yaml`), so every path a notebook takes
is resolved against the repo root (the folder holding pyproject.toml).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

QUICK = "experiments/configs/quick.yaml"
PRETRAIN_OUT = "experiments/runs/nb_pretrain"  # 01_pretrain's default run folder (04 reads it)
PLOTLY_MAX_BYTES = 150_000  # larger plotly snapshots are left out of saved notebooks

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


def as_list(value) -> list[str]:
    """A list parameter as papermill may deliver it: a list, or a string (`-p overrides '[..]'`
    passes the text): YAML/JSON list text, or whitespace-separated items; None/"" -> []."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    import yaml
    try:
        parsed = yaml.safe_load(str(value))
    except yaml.YAMLError:
        parsed = None
    if isinstance(parsed, list):
        return [str(v) for v in parsed]
    return str(value).replace(",", " ").split()


def settings(config: str | None, overrides: list[str] | str | None, smoke: bool
             ) -> tuple[str | None, list[str]]:
    """(config path, overrides) a notebook hands to plaml_lab: with smoke, the quick preset and
    SMOKE_OVERRIDES come first and the notebook's own overrides are applied after them, and
    torch is pinned to one thread."""
    overrides = as_list(overrides)
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


def smoke_run(overrides: list[str] | None = None) -> Path:
    """A few-step quick run (checkpoints every 2 steps, for the teacher comparison) in a fresh
    temporary folder: what 03_dashboards and 04_evaluate open under SMOKE."""
    import tempfile

    from plaml_lab.train import pretrain
    out = Path(tempfile.mkdtemp(prefix="plaml_smoke_")) / "run"
    pretrain(repo_path(QUICK), out, SMOKE_OVERRIDES + ["run.ckpt_every=2", "run.keep_ckpts=3"]
             + list(overrides or []))
    return out


def eval_target(run: str, smoke: bool) -> Path | None:
    """04_evaluate's `run` parameter -> the run to evaluate: under SMOKE a relative (default) or
    empty one becomes a fresh smoke_run(); otherwise the repo-relative path, which must exist,
    except 01_pretrain's default run folder: while that one has not been trained, and for an
    empty `run`, None (only the random-init baseline is evaluated; a note says so)."""
    if smoke and (not run or not Path(run).is_absolute()):
        return smoke_run()
    if not run:
        return None
    path = repo_path(run)
    if path.exists():
        return path
    if path == repo_path(PRETRAIN_OUT):
        print(f"note: {PRETRAIN_OUT} does not exist yet (01_pretrain writes it): evaluating the "
              "random-init baseline only")
        return None
    from plaml_lab.checkpoint import CheckpointError
    raise CheckpointError(f"run={run!r}: no such run folder or checkpoint (train one with "
                          "01_pretrain or `plaml-lab pretrain`)")


def evaluate_against_baseline(run: Path | None, probes: list[str] | str,
                              encoder: str = "student", overrides: list[str] | str | None = None,
                              config: str | None = None
                              ) -> dict[str, dict]:
    """{'pretrained': evaluate(run), 'random init': the same probes on a random-init encoder of
    the same config} (only the latter, from `config`, when run is None)."""
    from plaml_lab.evaluate import evaluate
    probes, overrides = as_list(probes), as_list(overrides)
    out = {}
    if run is not None:
        out["pretrained"] = evaluate(run, probes, encoder=encoder, overrides=overrides)
        out["random init"] = evaluate(run, probes, encoder=encoder, random_init=True,
                                      overrides=overrides)
    else:
        out["random init"] = evaluate(None, probes, encoder=encoder, random_init=True,
                                      config=config, overrides=overrides)
    return out


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
        shown = f"{round(v, digits) + 0.0:.{digits}f}" if isinstance(v, float) else str(v)
        lines.append(f"{k:<14} {shown}")
    return "\n".join(lines)


def table(rows: dict[str, dict] | list[dict], keys: list[str], first: str = "",
          digits: int = 3) -> str:
    """A fixed-width text table: one line per row (a dict of name -> values, or a list of dicts
    whose `first` key names the row), one column per key."""
    items = list(rows.items()) if isinstance(rows, dict) else [(r.get(first, ""), r) for r in rows]

    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{round(v, digits) + 0.0:.{digits}f}"  # + 0.0: no "-0.000"
        return "" if v is None else str(v)

    names = [str(n) for n, _ in items]
    width0 = max([len(first)] + [len(n) for n in names])
    cells = [[fmt(r.get(k)) for k in keys] for _, r in items]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    out = [f"{first:<{width0}}  " + "  ".join(f"{k:>{w}}" for k, w in zip(keys, widths))]
    for n, c in zip(names, cells):
        out.append(f"{n:<{width0}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(c, widths)))
    return "\n".join(line.rstrip() for line in out)


def comparison(results: dict[str, dict], keys: list[str] | tuple[str, ...], digits: int = 3
               ) -> str:
    """Metrics as rows, one column per result (e.g. pretrained, random init), plus the
    difference of the first two; metrics no result has are left out."""
    names = list(results)
    keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in results.values())]
    rows = {}
    for k in keys:
        row = {n: results[n].get(k) for n in names}
        a, b = (results[n].get(k) for n in names[:2]) if len(names) > 1 else (None, None)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            row["difference"] = a - b
        rows[k] = row
    cols = names + (["difference"] if len(names) > 1 else [])
    return table(rows, cols, first="metric", digits=digits)


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
    from IPython.display import display
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
            from plaml_lab.viz.plots import plotly_bundle
            bundle = plotly_bundle(view.figure)
            if len(json.dumps(bundle)) <= PLOTLY_MAX_BYTES:
                display(bundle, raw=True)


def pseudo_label_gallery(run, num_images: int = 256, dataset: str = "val"):
    """The labelling teacher's class-token pseudo labels on held-out images, as a grid of the
    images grouped by label (None when the run has no labelling teacher)."""
    from plaml_lab.viz import figures as F
    from plaml_lab.viz import inspect as I
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
    from PIL import Image

    if isinstance(fig, bytes):  # an encoded image (e.g. a dashboard's PNG view)
        img = Image.open(io.BytesIO(fig)).convert("RGB")
    elif hasattr(fig, "savefig"):
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
