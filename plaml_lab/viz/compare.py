"""The compare-runs dashboard: runs of a folder (a sweep, the ablation, any runs/ directory)
side by side. See viz/app.py for the App contract and viz/runset.py for the data.

    compare_runs("experiments/runs/ablation")
"""

from __future__ import annotations

import html
import math
import time

import ipywidgets as widgets
import plotly.graph_objects as go

from plaml_lab.viz.app import PlotlyView, PollingApp, build, dropdown, slider, wants
from plaml_lab.viz.plots import TEMPLATE
from plaml_lab.viz import runset as S

MAX_DEFAULT_SELECTED = 12  # runs selected at start; hundreds of curves help nobody
# Above this many curves WebGL (Scattergl) draws them; below, SVG lines, which also draw where a
# browser has no WebGL (headless, remote desktops) and which nbconvert/PNG exports keep.
WEBGL_FROM_CURVES = 40
OPENABLE = ("training_monitor", "mask_explorer", "token_map_viewer", "cluster_explorer",
            "attention_viewer", "teacher_compare")


def curves_figure(curves: dict[str, tuple], column: str, x: str, log_y: bool = False
                  ) -> go.Figure:
    """One line per run: curves {run name: (xs, ys)}."""
    fig = go.Figure()
    trace = go.Scattergl if len(curves) >= WEBGL_FROM_CURVES else go.Scatter
    for name, (xs, ys) in curves.items():
        fig.add_trace(trace(x=xs, y=ys, name=name, mode="lines"))
    fig.update_layout(template=TEMPLATE, height=380, title=f"{column} vs {x}",
                      margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      xaxis_title=x, yaxis_title=column,
                      yaxis_type="log" if log_y else "linear",
                      legend={"font": {"size": 10}})
    return fig


# probe result keys as the bars' axis names them (others are shown as they are)
METRIC_LABELS = {"knn_top1": "kNN top-1", "knn_top1_mean": "kNN top-1 (mean token)",
                 "linear_top1": "linear top-1", "linear_top1_mean": "linear top-1 (mean token)",
                 "finetune_top1": "fine-tune top-1", "nmi": "NMI", "ari": "ARI", "ami": "AMI",
                 "nmi_shuffled": "NMI, shuffled labels", "seg_miou": "segmentation mIoU",
                 "box_mean_iou": "box mean IoU"}
RANDOM_INIT = "random_init"  # the ablation's baseline folders: random_init-s<seed>


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


def bars_figure(grouped: dict[str, dict[str, tuple]], metrics: list[str]) -> go.Figure:
    """Grouped bars: metrics on x, one bar per config group (mean over its seeds, error bar =
    sample std, hover says n). A random-init group (random_init-s<seed>) is the reference, not
    a bar: a dashed line across each metric's bars at its value."""
    fig = go.Figure()
    index = {m: i for i, m in enumerate(metrics)}
    for label, stats in grouped.items():
        ms = [m for m in metrics if m in stats]
        if label.startswith(RANDOM_INIT):
            for m in ms:  # categories sit at 0, 1, ...: the line spans the category's bars
                fig.add_shape(type="line", x0=index[m] - 0.45, x1=index[m] + 0.45,
                              y0=stats[m][0], y1=stats[m][0], xref="x", yref="y",
                              line={"color": "#222", "dash": "dash", "width": 2})
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=label,
                                     line={"color": "#222", "dash": "dash", "width": 2}))
            continue
        fig.add_trace(go.Bar(
            x=ms, y=[stats[m][0] for m in ms], name=label,
            error_y={"type": "data", "array": [stats[m][1] for m in ms], "visible": True},
            customdata=[stats[m][2] for m in ms],
            hovertemplate="%{x}: %{y:.4f} (n=%{customdata})<extra>" + html.escape(label)
            + "</extra>"))
    fig.update_layout(template=TEMPLATE, barmode="group", height=380,
                      title="probe results (mean ± std over seeds of one config; dashed: "
                      "random init)" if any(g.startswith(RANDOM_INIT) for g in grouped)
                      else "probe results (mean ± std over seeds of one config)",
                      margin={"l": 60, "r": 20, "t": 40, "b": 60}, legend={"font": {"size": 10}},
                      xaxis={"type": "category", "categoryorder": "array",
                             "categoryarray": metrics, "tickvals": metrics,
                             "ticktext": [metric_label(m) for m in metrics]},
                      yaxis_title="score on the held-out split")
    return fig


def paired_table_html(paired: list[dict]) -> str:
    """The paired view (runset.paired_results): one row per two config groups and metric."""
    if not paired:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(p['better'])}</td><td>{html.escape(p['worse'])}</td>"
        f"<td>{p['metric']}</td><td>{p['pairs']}</td><td>{p['mean_diff']:+.4f}</td>"
        f"<td>[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}]</td><td>{p['paired_verdict']}</td></tr>"
        for p in paired)
    return ("<b>paired by seed</b> (A - B over the seeds both configs ran; 95% Student-t CI)"
            "<table><tr><th>A</th><th>B</th><th>metric</th><th>seeds</th><th>mean</th>"
            f"<th>95% CI</th><th>verdict</th></tr>{rows}</table>")


def trials_table_html(trials: dict[str, dict], configs: dict[str, dict], keys: list[str]) -> str:
    """A search folder's trials (runset.read_trials) in trial order, with their state, objective
    value and the searched keys' values; "" for a folder that is not a search's."""
    if not trials:
        return ""
    objective = html.escape(next(iter(trials.values()))["objective"])
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    rows = []
    for name, t in trials.items():
        value = "" if math.isnan(t["value"]) else f"{t['value']:.4f}"
        cells = [str(t["trial"]), str(t["state"]), value,
                 *(str(configs.get(name, {}).get(k, "—")) for k in keys), name]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (f"<b>search trials</b> (the search's trials.csv: pruned trials stopped early and "
            f"have no {objective})<div style='max-height:260px;overflow:auto'>"
            "<table class='plaml-trials' style='font-size:85%;border-collapse:collapse'>"
            f"<tr><th>trial</th><th>state</th><th>{objective}</th>{head}<th>run</th></tr>"
            + "".join(rows) + "</table></div>")


def _trial_counts(trials: dict[str, dict]) -> dict[str, int]:
    """The readout's search line: trials by state ({} outside a search folder)."""
    counts: dict[str, int] = {}
    for t in trials.values():
        counts[f"trials {t['state']}"] = counts.get(f"trials {t['state']}", 0) + 1
    return dict(sorted(counts.items()))


def diff_table_html(records: list, keys: list[str]) -> str:
    """An HTML table: a row per run, a column per differing key."""
    if not keys:
        return "<i>the selected runs share every config key</i>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr><td><b>" + html.escape(r.name) + "</b></td>"
        + "".join(f"<td>{html.escape(str(r.config.get(k, '—')))}</td>" for k in keys)
        + "</tr>" for r in records)
    return ("<div style='max-height:260px;overflow:auto'><table class='plaml-diff' "
            "style='font-size:85%;border-collapse:collapse'><tr><th>run</th>"
            f"{head}</tr>{body}</table></div>")


class CompareRuns(PollingApp):
    """state: runs (every run found), selected, diff_keys (config keys that differ between the
    selected runs), curve_columns, metric, x, window, log_y, curves {run: (xs, ys)},
    figure_curves, result_metrics, grouped {group: {metric: (mean, std, n)}}, figure_bars,
    finished {run: bool}, opened (the app opened for a run, or None), scan_s, trials (a
    search folder's trials by run name: state, objective, value; {} for other folders).

    `refresh()` re-reads changed runs and re-draws; with auto refresh on, a daemon thread calls
    it every `interval` seconds while a selected run is still training."""

    app_name = "compare-runs"

    def __init__(self, folder=None, dataset=None, selected=None, metric: str = "loss",
                 x: str = "step", window: int = 1, log_y: bool = False,
                 auto_refresh: bool = True, interval: float = 5.0):
        super().__init__("Compare runs", interval)
        if folder is None:
            self.unavailable("no folder: pass a folder of runs, e.g. "
                             "compare_runs('experiments/runs/ablation')")
            return
        t0 = time.perf_counter()
        self.runset = S.RunSet(folder)
        self.state["scan_s"] = time.perf_counter() - t0
        names = self.runset.names
        if not names:
            self.unavailable(f"{folder}: no runs (folders with config.yaml or eval.json)")
            return
        selected = list(selected) if selected else names[:MAX_DEFAULT_SELECTED]
        self.control("runs", widgets.SelectMultiple(
            options=names, value=[n for n in selected if n in names], description="runs",
            rows=min(10, len(names)), layout=widgets.Layout(width="420px")))
        columns = S.curve_columns([self.runset[n] for n in names[:50]]) or ["loss"]
        self.control("metric", dropdown("curve", columns, metric if metric in columns
                                        else columns[0]), ("curves",))
        self.control("x", dropdown("against", ["step", "epoch"], x), ("curves",))
        self.control("smoothing", slider("smoothing (rows)", 1, 50, int(window)), ("curves",))
        self.control("log_y", widgets.Checkbox(value=log_y, description="log y",
                                               indent=False), ("curves",))
        self.refresh_controls(auto_refresh)
        self.control("open_run", dropdown("open run", names, selected[0] if selected else
                                          names[0]), redraws=())
        self.control("dashboard", dropdown("dashboard", list(OPENABLE), OPENABLE[0]),
                     redraws=())
        opener = widgets.Button(description="open", icon="external-link")
        opener.on_click(lambda _b: self.open_run())
        self.control("open", opener)
        self.trials = self.view("trials", widgets.HTML())
        self.table = self.view("diff", widgets.HTML())
        self.curves = self.view("curves", PlotlyView("curves"))
        self.bars = self.view("bars", PlotlyView("bars"))
        self.paired = self.view("paired", widgets.HTML())
        self.opened_box = self.view("opened", widgets.VBox())
        self.state["opened"] = None
        self.finish([self.trials, self.table, self.curves, self.bars, self.paired, self.opened_box])
        self._set_auto(auto_refresh and not all(r.finished for r in self.records()))

    # -- data ----------------------------------------------------------------------------------
    def records(self) -> list:
        return [self.runset[n] for n in self.controls["runs"].value if n in self.runset.runs]

    def refresh(self, force: bool = False) -> bool:
        """Re-scan the folder (new runs appear, changed ones are re-read); re-draw on change."""
        with self._render_lock:
            t0 = time.perf_counter()
            changed = self.runset.scan()
            self.state["scan_s"] = time.perf_counter() - t0
            if changed:
                names = self.runset.names
                keep = [n for n in self.controls["runs"].value if n in names]
                self.controls["runs"].options = names
                self.controls["runs"].value = keep
                self.controls["open_run"].options = names
            if changed or force:
                self.render(("all",))
        return changed

    def polling_done(self) -> bool:
        return all(r.finished for r in self.records())

    def open_run(self):
        """Open the chosen dashboard on the chosen run below the comparison (the 'click on a
        run'); returns the app (state['opened'])."""
        from plaml_lab.viz.dashboards import APPS  # torch + the six apps: only when opened

        name = self.controls["open_run"].value
        app = APPS[self.controls["dashboard"].value](self.runset[name].path)
        old = self.state.get("opened")
        if old is not None:
            old.close()
        self.opened_box.children = [widgets.HTML(f"<b>{html.escape(name)}</b>"), app]
        self.state.update(opened=app, opened_run=name)
        return app

    # -- drawing -------------------------------------------------------------------------------
    def _render(self, parts: set[str]) -> None:
        c = self.controls
        records = self.records()
        if wants(parts, "runs", "table"):
            keys = S.differing_keys([r.config for r in records if r.config])
            self.table.value = diff_table_html(records, keys)
            self.state.update(diff_keys=keys)
        if wants(parts, "runs", "curves"):
            column, x, window = c["metric"].value, c["x"].value, c["smoothing"].value
            curves = {r.name: S.curve(r, column, x, window) for r in records}
            curves = {n: xy for n, xy in curves.items() if len(xy[0])}
            fig = curves_figure(curves, column, x, c["log_y"].value)
            self.curves.show(fig)
            self.state.update(curves=curves, metric=column, x=x, window=window,
                              log_y=c["log_y"].value, figure_curves=fig)
        if wants(parts, "runs", "bars"):
            metrics = S.result_columns(records)
            grouped = S.grouped_results(records, metrics)
            fig = bars_figure(grouped, metrics)
            self.bars.show(fig)
            self.state.update(result_metrics=metrics, grouped=grouped, figure_bars=fig)
            paired = S.paired_results(records)
            self.paired.value = paired_table_html(paired)
            self.state.update(paired=paired)
        if wants(parts, "runs", "trials"):
            trials = self.runset.trials
            configs = {n: self.runset[n].config for n in trials if n in self.runset.runs}
            self.trials.value = trials_table_html(
                trials, configs, S.differing_keys([c for c in configs.values() if c]))
            self.state.update(trials=trials)
        finished = {r.name: r.finished for r in records}
        self.state.update(runs=self.runset.names, selected=[r.name for r in records],
                          finished=finished, curve_columns=list(c["metric"].options))
        self.set_readout({"runs found": len(self.runset.names), "selected": len(records),
                          "config keys that differ": len(self.state.get("diff_keys", [])),
                          "still training": sum(not f for f in finished.values()),
                          **_trial_counts(self.runset.trials),
                          "read at": time.strftime("%H:%M:%S")})


def compare_runs(folder=None, dataset=None, **options) -> CompareRuns:
    """Runs of a folder side by side: pick runs; a table of only the config keys that differ
    between them; their metrics.jsonl curves overlaid (any column, against step or epoch,
    smoothed); probe results (eval.json, summary.json, finetune_top1) as grouped bars, mean ±
    std over the seeds of each config, and, where configs share seeds, their differences
    paired by seed (mean, 95% CI, verdict); open any run's own dashboards below. Refreshes while
    runs train. A `plaml-lab search` folder also lists its trials (state, objective, searched
    keys); its pruned trials count as done. dataset is not used. options: selected (run names relative to folder), metric,
    x ('step' | 'epoch'), window, log_y, auto_refresh, interval."""
    return build(CompareRuns, folder, dataset, **options)
