"""The two dashboards over a run's history rather than over images: the training monitor
(metrics.jsonl, refreshed while the run is in progress) and the teacher comparison
(checkpoints over training). See viz/app.py for the App contract."""

from __future__ import annotations

import json
import time
from pathlib import Path

import ipywidgets as widgets
import torch

from plaml_lab.collapse import rows_per_step
from plaml_lab.config import load_config
from plaml_lab.method import PLAML
from plaml_lab.paths import user_path
from plaml_lab.probes import nmi_ari
from plaml_lab.runs import Run, read_metrics
from plaml_lab.viz import canvas as C, figures as F, inspect as I, plots as P
from plaml_lab.viz.app import (App, ImageView, PlotlyView, PollingApp, build, dropdown, slider,
                               wants)


def _run_dir(run) -> Path | None:
    """The run folder of a Run, or of a run folder / checkpoint path as typed (resolved as by
    every loader: the current directory, then the repo root; plaml_lab.paths)."""
    if isinstance(run, Run):
        return run.path
    if run is None:
        return None
    path = user_path(run)
    return path.parent.parent if path.suffix == ".pt" else path


# --- 5. training monitor -------------------------------------------------------------------

class TrainingMonitor(PollingApp):
    """state: rows (the metrics rows shown), steps, figure (the plotly Figure: loss parts,
    lr, momenta), parts, window, log_y, total_steps, finished (summary.json is newer than the
    last metrics row).

    `refresh()` re-reads metrics.jsonl and re-draws when it changed (returns whether it did);
    with auto refresh on, a daemon thread calls it every `interval` seconds until the run
    finishes or the app is closed."""

    app_name = "training-monitor"

    def __init__(self, run=None, parts=F.LOSS_PARTS, window: int = 1, log_y: bool = False,
                 auto_refresh: bool = True, interval: float = 5.0):
        super().__init__("Training monitor", interval)
        self.dir = _run_dir(run)
        self._sig = None
        self.rows: list[dict] = []
        if self.dir is None or not (self.dir / "config.yaml").exists():
            self.unavailable("no run folder (a random-init model has no metrics): pass the "
                             "folder of a run, e.g. training_monitor('experiments/runs/lab')")
            return
        self.cfg = load_config(self.dir / "config.yaml")
        self._read()
        auto_refresh = auto_refresh and not self.finished  # nothing more will come
        for key in F.LOSS_PARTS:
            self.control(f"part_{key}", widgets.Checkbox(value=key in parts, description=key,
                                                         indent=False,
                                                         layout=widgets.Layout(width="90px")))
        self.control("smoothing", slider("smoothing (rows)", 1, 50, int(window)))
        self.control("log_y", widgets.Checkbox(value=log_y, description="log loss axis",
                                               indent=False))
        self.refresh_controls(auto_refresh)
        self.plot = self.view("metrics", PlotlyView("metrics"))
        # collapse statistics (plaml_lab.collapse), when the run logs them
        self.collapse_plot = self.view("collapse", PlotlyView("collapse"))
        self.finish([self.plot, self.collapse_plot])
        self._set_auto(auto_refresh)

    # -- data ----------------------------------------------------------------------------------
    def _signature(self):
        paths = [self.dir / "metrics.jsonl", self.dir / "summary.json"]
        return tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None
                     for p in paths)

    def _read(self) -> None:
        self._sig = self._signature()
        self.rows = read_metrics(self.dir)
        summary = {}
        path = self.dir / "summary.json"
        if path.exists():
            try:
                summary = json.loads(path.read_text())
            except json.JSONDecodeError:
                summary = {}
        self.summary = summary
        self.total = I.total_steps(self.cfg, self.rows, summary)
        last = self.rows[-1]["step"] if self.rows else 0
        # a finished pretrain() writes summary.json after its last row
        m, s = self.dir / "metrics.jsonl", self.dir / "summary.json"
        self.finished = bool(summary) and s.exists() and (
            not m.exists() or s.stat().st_mtime_ns >= m.stat().st_mtime_ns) and \
            summary.get("steps", -1) >= last

    def refresh(self, force: bool = False) -> bool:
        """Re-read the run's files; re-draw when they changed (or when forced)."""
        if "unavailable" in self.state:
            return False
        with self._render_lock:  # the polling thread and the button may both call this
            if not force and self._signature() == self._sig:
                return False
            self._read()
            self.render(("all",))
        return True

    def polling_done(self) -> bool:
        return self.finished

    # -- drawing -------------------------------------------------------------------------------
    def _render(self, parts: set[str]) -> None:
        c = self.controls
        shown = [k for k in F.LOSS_PARTS if c[f"part_{k}"].value]
        window, log_y = c["smoothing"].value, c["log_y"].value
        fig = P.metrics_figure(self.rows, shown, window, log_y)
        self.plot.show(fig)
        collapse_fig = None
        if any("pl_used_cls" in r or "cls_std" in r for r in self.rows):
            collapse_fig = P.collapse_figure(self.rows, self.cfg.pl.num_prototypes,
                                             rows_per_step(self.cfg))
            self.collapse_plot.show(collapse_fig)
        last = self.rows[-1] if self.rows else {}
        step = last.get("step", 0)
        self.state.update(rows=list(self.rows), steps=[r.get("step") for r in self.rows],
                          figure=fig, collapse_figure=collapse_fig, parts=shown, window=window, log_y=log_y,
                          total_steps=self.total, finished=self.finished)
        self.set_readout({"step": f"{step} / {self.total}",
                          "loss": last.get("loss", float("nan")),
                          "imgs/s": last.get("imgs_per_s", float("nan")),
                          "status": "finished" if self.finished else "in progress",
                          "read at": time.strftime("%H:%M:%S")})


def training_monitor(run=None, dataset=None, **options) -> TrainingMonitor:
    """Loss parts, learning rate and teacher momenta from a run's metrics.jsonl, refreshed
    every `interval` seconds while the run is in progress (auto refresh) or on the refresh
    button. run: a run folder (it may still be training, even before its first checkpoint),
    a checkpoint file or a Run. dataset is not used. options: parts, window, log_y,
    auto_refresh, interval."""
    return build(TrainingMonitor, run, **options)


# --- 6. teacher comparison ----------------------------------------------------------------

class TeacherCompare(App):
    """state: steps (checkpoint steps), distances {teacher: {'abs': [...], 'rel': [...]}},
    agreement {'class token' | 'data tokens': [...]} (fraction of images / data tokens whose
    pseudo labels from the two teachers' encoders, through the labelling teacher's heads, are
    equal), teacher_nmi [...], selected_step, distance ('rel' | 'abs'), figure, png_maps."""

    app_name = "teacher-compare"

    def __init__(self, run=None, dataset=None, max_images: int = 128, num_maps: int = 6,
                 distance: str = "rel"):
        super().__init__("Labelling teacher vs reconstruction teacher")
        path = _run_dir(run)
        if path is None or not I.list_checkpoints(path):
            self.unavailable("no checkpoints over training (a random-init model has none): pass "
                             "the folder of a run with checkpoints/step_*.pt")
            return
        self.run = run if isinstance(run, Run) and run.path is not None else I.resolve_run(path)
        cfg = self.cfg = self.run.cfg
        self.teachers = list(cfg.teacher_roles)
        self.history = I.checkpoint_history(path)
        self.steps = [h["step"] for h in self.history]
        self.distances = {t: {"abs": [], "rel": []} for t in self.teachers}
        for h in self.history:
            for t in self.teachers:
                for k, v in I.param_distance(h["state"], t).items():
                    self.distances[t][k].append(v)
        self.dual = {"labelling", "reconstruction"} <= set(self.teachers)
        ds = I.resolve_dataset(self.run, dataset)
        self.images = I.fetch(ds, torch.arange(min(max_images, len(ds))))["image"]
        self.num_maps = num_maps
        self.agreement, self.teacher_nmi, self.maps = ({}, [], [])
        if self.dual:
            self.agreement, self.teacher_nmi, self.maps = self._agreement()
        for h in self.history:
            h.pop("state")  # what the controls need is computed: free the weights
        total = I.total_steps(cfg, self.run.metrics, self.run.summary)
        self.curves = I.momentum_curves(cfg, total)
        self.logged = {t: ([r["step"] - 1 for r in self.run.metrics if f"momentum_{t}" in r],
                           [r[f"momentum_{t}"] for r in self.run.metrics if f"momentum_{t}" in r])
                       for t in self.teachers}
        opts = [(f"step {s}", i) for i, s in enumerate(self.steps)]
        self.control("checkpoint", dropdown("checkpoint", opts, len(opts) - 1))
        self.control("distance", dropdown("distance", [("relative L2", "rel"),
                                                       ("absolute L2", "abs")], distance),
                     ("plot",))
        self.plot = self.view("compare", PlotlyView("compare"))
        self.figure = self.view("maps", ImageView("maps"))
        rows = [self.plot] + ([self.figure] if self.dual else [])
        if not self.dual:
            self.readout.value = "one teacher in this run: nothing to compare pseudo labels with"
        self.finish(rows)

    def _agreement(self):
        """Per checkpoint: agreement of the pseudo labels that the two teachers' encoders give
        through the labelling teacher's heads, plus the data-token label maps of a few images."""
        agree = {"class token": [], "data tokens": []}
        nmi, maps = [], []
        model = PLAML.from_config(self.cfg)
        for h in self.history:
            r = I.run_at(self.run, h, model)
            a = I.pseudo_labels(r, self.images, "labelling")
            b = I.pseudo_labels(r, self.images, "reconstruction")
            if "cls" in a:
                agree["class token"].append(float((a["cls"] == b["cls"]).float().mean()))
            if "patch" in a:
                agree["data tokens"].append(float((a["patch"] == b["patch"]).float().mean()))
                maps.append((a["patch"][:self.num_maps], b["patch"][:self.num_maps]))
            nmi.append(nmi_ari(a["image"], b["image"]).get("nmi"))
        return {k: v for k, v in agree.items() if v}, nmi, maps

    def _render(self, parts: set[str]) -> None:
        c = self.controls
        i = c["checkpoint"].value
        kind = c["distance"].value
        step = self.steps[i]
        dist = {t: (self.steps, d[kind]) for t, d in self.distances.items()}
        agree = {k: (self.steps, v) for k, v in self.agreement.items()}
        label = "relative to ||student||" if kind == "rel" else "absolute"
        fig = P.teacher_compare_figure(dist, agree, self.curves, self.logged, step, label)
        self.plot.show(fig)
        png = None
        if self.maps and wants(parts, "all"):
            a, b = self.maps[i]
            k = self.cfg.pl.num_prototypes
            items = [(f"image {j}", F.image_hwc(self.images[j])) for j in range(len(a))]
            p = self.cfg.model.patch_size
            items += [("labelling", F.patch_to_pixels(F.label_map(a[j], k), p))
                      for j in range(len(a))]
            items += [("reconstruction", F.patch_to_pixels(F.label_map(b[j], k), p))
                      for j in range(len(a))]
            png = self.figure.show(C.compose(
                items, ncols=len(a), panel=96,
                title=f"data-token pseudo labels at step {step}: labelling teacher's encoder "
                         "(middle) vs reconstruction teacher's (bottom), same heads"))
            self.state["png_maps"] = png
        self.state.update(steps=self.steps, distances=self.distances, agreement=self.agreement,
                          teacher_nmi=self.teacher_nmi, selected_step=step, distance=kind,
                          figure=fig)
        read = {"checkpoint step": step}
        for t in self.teachers:
            read[f"{t} distance ({kind})"] = self.distances[t][kind][i]
        for k, v in self.agreement.items():
            read[f"agreement, {k}"] = v[i]
        self.set_readout(read)


def teacher_compare(run=None, dataset=None, **options) -> TeacherCompare:
    """Labelling vs reconstruction teacher over training, from the run's checkpoints
    (step_*.pt and last.pt): each teacher's parameter distance to the student, the agreement
    of the pseudo labels the two teachers' encoders give (through the labelling teacher's heads)
    and each teacher's momentum schedule with the logged momenta. options: max_images,
    num_maps, distance ('rel' | 'abs')."""
    return build(TeacherCompare, run, dataset, **options)
