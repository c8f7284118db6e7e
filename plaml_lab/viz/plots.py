"""Pure plotly figure builders for the interactive parts of the dashboards (hover, zoom).

Each returns a `plotly.graph_objects.Figure`; nothing is displayed. The dashboards show them
with `plotly_bundle` (plotly's own JupyterLab mime type), which needs no widget extension.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from plaml_lab.viz.figures import LOSS_PARTS, new_figure, prototype_colors

TEMPLATE = "plotly_white"


def plotly_bundle(fig: go.Figure) -> dict:
    """The {'application/vnd.plotly.v1+json': {data, layout, config}} mime bundle that
    JupyterLab renders natively (what plotly's 'plotly_mimetype' renderer emits). Built from
    fig.to_json() directly: plotly.io's renderer registry imports nbformat and jsonschema,
    seconds of first-call latency for nothing we need."""
    spec = json.loads(fig.to_json())
    spec["config"] = {"displaylogo": False, "responsive": True}
    return {"application/vnd.plotly.v1+json": spec, "text/plain": "<plotly figure>"}


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average over `window` points (1 = unchanged); NaNs are skipped."""
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) == 0:
        return v
    ok = np.isfinite(v)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(ok)])
    hi = np.arange(1, len(v) + 1)
    lo = np.maximum(0, hi - window)
    n = ccount[hi] - ccount[lo]
    return np.where(n > 0, (csum[hi] - csum[lo]) / np.maximum(n, 1), np.nan)


def metrics_figure(rows: Sequence[dict], parts: Sequence[str] = LOSS_PARTS, window: int = 1,
                   log_y: bool = False) -> go.Figure:
    """Three stacked panels over the optimiser step: loss parts (smoothed over `window` logged
    rows), learning rate, and each teacher's EMA momentum (`momentum_<teacher>` columns)."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        row_heights=[0.55, 0.2, 0.25],
                        subplot_titles=("loss parts", "learning rate", "teacher momentum"))
    steps = [r.get("step") for r in rows]
    for key in parts:
        ys = [r.get(key, np.nan) for r in rows]
        fig.add_trace(go.Scatter(x=steps, y=smooth(ys, window), name=key, mode="lines",
                                 line={"width": 2.5 if key == "loss" else 1.5}), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=[r.get("lr", np.nan) for r in rows], name="lr",
                             mode="lines", line={"color": "#555"}), 2, 1)
    mom_keys = sorted({k for r in rows for k in r if k.startswith("momentum_")})
    for key in mom_keys:
        fig.add_trace(go.Scatter(x=steps, y=[r.get(key, np.nan) for r in rows],
                                 name=key.replace("momentum_", "m ") + " teacher",
                                 mode="lines+markers", marker={"size": 4}), 3, 1)
    fig.update_yaxes(type="log" if log_y else "linear", row=1, col=1)
    fig.update_xaxes(title_text="step", row=3, col=1)
    fig.update_layout(template=TEMPLATE, height=520, margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.12})
    return fig


def usage_histogram(counts: np.ndarray, selected: int | None = None, top: int = 64) -> go.Figure:
    """How many images each prototype labels (class-token pseudo labels): the `top` most used
    prototypes, in descending order, the selected one highlighted; unused ones are summarised
    in the title (collapse shows up as a few tall bars)."""
    counts = np.asarray(counts)
    order = np.argsort(-counts, kind="stable")[:top]
    order = order[counts[order] > 0]
    cols = ["#d62728" if k == selected else "#1f77b4" for k in order]
    fig = go.Figure(go.Bar(x=[f"#{k}" for k in order], y=counts[order], marker_color=cols,
                           customdata=order, hovertemplate="prototype %{customdata}: "
                           "%{y} images<extra></extra>"))
    used = int((counts > 0).sum())
    fig.update_layout(template=TEMPLATE, height=280, width=460,
                      margin={"l": 50, "r": 30, "t": 40, "b": 50},
                      title={"text": f"prototype usage: {used} of {len(counts)} used",
                             "font": {"size": 13}},
                      xaxis={"type": "category", "tickfont": {"size": 8},
                             "title": "prototype (most used first)"},
                      yaxis={"title": "images"})
    return fig


LEGEND_LABELS = 12  # the scatter's colour legend lists the most frequent labels only


def embedding_scatter(xy: np.ndarray, colour: np.ndarray, colour_name: str,
                      pseudo: np.ndarray, true: np.ndarray, title: str = "",
                      highlight: np.ndarray | None = None, axis_name: str = "PCA"
                      ) -> go.Figure:
    """Class-token embedding (N, 2), one point per image, coloured by an integer labelling
    (pseudo or true labels; colours match the cluster maps'); hover shows the dataset index,
    both labels. `highlight` (bool (N,)) rings the images of the selected prototype. Axes are
    `axis_name` 1 / 2; a legend names the colours of the LEGEND_LABELS most frequent labels
    (legend-only traces: the points stay one trace)."""
    colour = np.asarray(colour).astype(int)
    palette = prototype_colors(int(max(colour.max(initial=0), 0)) + 1)
    hexes = ["#%02x%02x%02x" % tuple(int(255 * c) for c in palette[k]) if k >= 0 else "#999999"
             for k in colour]
    idx = np.arange(len(xy))
    fig = go.Figure(go.Scatter(
        x=xy[:, 0], y=xy[:, 1], mode="markers", name="images",
        marker={"color": hexes, "size": 6, "line": {"width": 0}},
        customdata=np.stack([idx, np.asarray(pseudo), np.asarray(true)], axis=1),
        hovertemplate="image %{customdata[0]}<br>pseudo label %{customdata[1]}"
                      "<br>true label %{customdata[2]}<extra></extra>"))
    if highlight is not None and np.any(highlight):
        h = np.asarray(highlight, dtype=bool)
        fig.add_trace(go.Scatter(x=xy[h, 0], y=xy[h, 1], mode="markers", name="selected",
                                   marker={"size": 11, "color": "rgba(0,0,0,0)",
                                           "line": {"width": 1.5, "color": "black"}},
                                   hoverinfo="skip"))
    values, counts = np.unique(colour[colour >= 0], return_counts=True)
    shown = values[np.argsort(-counts, kind="stable")][:LEGEND_LABELS]
    prefix = "#" if colour_name.startswith("pseudo") else "class "
    for k in sorted(shown):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{prefix}{k}",
                                 marker={"color": hexes[int(np.flatnonzero(colour == k)[0])],
                                         "size": 8}, hoverinfo="skip"))
    more = len(values) - len(shown)
    fig.update_layout(template=TEMPLATE, height=400, width=620,
                      margin={"l": 50, "r": 10, "t": 40, "b": 45},
                      xaxis_title=f"{axis_name} 1", yaxis_title=f"{axis_name} 2",
                      legend={"title": {"text": colour_name + (f" (top {len(shown)} of "
                                                               f"{len(values)})" if more else "")},
                              "font": {"size": 10}, "itemclick": False,
                              "itemdoubleclick": False},
                      title={"text": title or f"class tokens, coloured by {colour_name}",
                             "font": {"size": 13}})
    fig.data[0].showlegend = False
    if len(fig.data) > 1 and fig.data[1].name == "selected":
        fig.data[1].showlegend = False
    return fig


def teacher_compare_figure(distances: dict[str, tuple[list, list]],
                           agreement: dict[str, tuple[list, list]],
                           curves: dict[str, tuple[np.ndarray, np.ndarray]],
                           logged: dict[str, tuple[list, list]], selected_step: int | None,
                           distance_label: str) -> go.Figure:
    """Three panels over the optimiser step: each teacher's parameter distance to the student
    at every checkpoint; agreement of the two teachers' pseudo labels; each teacher's momentum
    schedule (line) with the momenta the run logged (points). A dotted line marks the selected
    checkpoint."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=(f"teacher - student distance<br>({distance_label})",
                                        "pseudo-label agreement<br>of the teachers",
                                        "EMA momentum schedule"))
    # two short lines at 12 px: in a 1,000 px window a panel is about 210 px wide, and the
    # one-line 16 px titles ran into each other and off the figure's left edge
    fig.update_annotations(font_size=12)
    colours = {"labelling": "#1f77b4", "reconstruction": "#ff7f0e"}
    for name, (steps, vals) in distances.items():
        fig.add_trace(go.Scatter(x=steps, y=vals, name=f"{name} teacher", mode="lines+markers",
                                 line={"color": colours.get(name)}), 1, 1)
    for name, (steps, vals) in agreement.items():
        fig.add_trace(go.Scatter(x=steps, y=vals, name=f"agreement, {name}", mode="lines+markers",
                                 line={"dash": "solid" if name == "class token" else "dash",
                                       "color": "#2ca02c"}), 1, 2)
    for name, (steps, vals) in curves.items():
        fig.add_trace(go.Scatter(x=steps, y=vals, name=f"{name} schedule", mode="lines",
                                 line={"color": colours.get(name)}), 1, 3)
    for name, (steps, vals) in logged.items():
        fig.add_trace(go.Scatter(x=steps, y=vals, name=f"{name} logged", mode="markers",
                                 marker={"color": colours.get(name), "size": 6,
                                         "symbol": "circle-open"}), 1, 3)
    if selected_step is not None:
        for col in (1, 2):
            fig.add_vline(x=selected_step, line={"dash": "dot", "color": "#444"}, row=1, col=col)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    # no fixed width: the figure fills the output area (a fixed 1,100 px cut off the EMA panel
    # and the legend in a narrower notebook)
    fig.update_layout(template=TEMPLATE, height=380, autosize=True,
                      margin={"l": 50, "r": 20, "t": 60, "b": 40},
                      legend={"orientation": "h", "y": -0.3})
    return fig


def to_matplotlib(fig: go.Figure, width: float = 9.0, height: float | None = None):
    """A static matplotlib copy of one of this module's figures (lines, markers, bars, subplot
    titles, dotted vertical markers): for PNG screenshots and reports without a browser or
    plotly's image export. Returns a matplotlib Figure (no pyplot)."""

    layout = fig.layout
    xaxes = sorted([k for k in layout.to_plotly_json() if k.startswith("xaxis")],
                   key=lambda k: int(k[5:] or 1))
    n = max(1, len(xaxes))
    domains = [tuple(layout[k].domain or (0, 1)) for k in xaxes] or [(0, 1)]
    stacked = n > 1 and all(d == domains[0] for d in domains)  # make_subplots(rows=n)
    height = height or (2.2 * n if stacked else 3.2)
    out = new_figure(width, height)
    axes = (out.subplots(n, 1, sharex=True, squeeze=False)[:, 0] if stacked
            else out.subplots(1, n, squeeze=False)[0])
    axis_of = {("x" + k[5:]): axes[i] for i, k in enumerate(xaxes)} or {"x": axes[0]}
    titles = [a.text for a in (layout.annotations or [])]
    for i, ax in enumerate(axes):
        if i < len(titles):
            ax.set_title(titles[i].replace("<br>", " "), fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for tr in fig.data:
        ax = axis_of.get(tr.xaxis or "x", axes[0])
        x = np.asarray(tr.x if tr.x is not None else [])
        y = np.asarray(tr.y if tr.y is not None else [], dtype=float)
        if tr.type == "bar":
            cols = tr.marker.color if tr.marker and tr.marker.color is not None else None
            ax.bar(np.arange(len(y)), y, color=list(cols) if isinstance(cols, (list, tuple))
                   else cols)
            ax.set_xticks(np.arange(len(y)), [str(v) for v in x], rotation=90, fontsize=6)
            continue
        mode = tr.mode or "lines"
        colour = (tr.line.color if tr.line and tr.line.color else None)
        if "lines" in mode:
            ax.plot(x, y, label=tr.name, color=colour, marker="o" if "markers" in mode else None,
                    ms=3, ls="--" if tr.line and tr.line.dash in ("dash", "dot") else "-")
        elif "markers" in mode:
            mc = tr.marker.color if tr.marker and tr.marker.color is not None else colour
            size = (tr.marker.size or 6) if tr.marker else 6
            if tr.marker and tr.marker.symbol == "circle-open":
                ax.scatter(x, y, s=size ** 2, facecolors="none", edgecolors=mc, label=tr.name)
            elif isinstance(size, (int, float)) and size > 8:
                ax.scatter(x, y, s=size ** 2, facecolors="none", edgecolors="k", lw=1)
            else:
                ax.scatter(x, y, s=size ** 2 / 2, c=list(mc) if isinstance(mc, (list, tuple))
                           else mc, label=tr.name, lw=0)
    for shape in layout.shapes or []:
        if shape.type == "line" and shape.x0 == shape.x1:
            ax = axis_of.get((shape.xref or "x").replace(" domain", ""), axes[0])
            ax.axvline(shape.x0, ls=":", color="0.3")
    for k in xaxes:
        ya = layout["yaxis" + k[5:]]
        if ya.type == "log":
            axis_of["x" + k[5:]].set_yscale("log")
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        named = [(h, lab) for h, lab in zip(handles, labels) if lab and not lab.startswith("_")]
        if len(named) > 1:
            ax.legend(*zip(*named), fontsize=7)
    if layout.title and layout.title.text:
        out.suptitle(layout.title.text, fontsize=10)
    out.tight_layout()
    return out


def collapse_figure(rows: Sequence[dict], num_prototypes: int, rows_per_step: dict | None = None
                    ) -> go.Figure:
    """Four stacked panels over the optimiser step from metrics.jsonl's collapse statistics
    (plaml_lab.collapse): prototypes used by the class-token / patch targets, their mean
    entropy as a fraction of log K, the student class token's spread (std x sqrt(D)) and its
    effective rank. Dashed lines are the thresholds of the collapse warning; rows_per_step
    ({'cls': targets per step, ...}) places the prototypes-used threshold."""
    from plaml_lab import collapse as C  # torch: the other figure builders do not need it

    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("prototypes used by the targets (per step)",
                                        "target entropy / log K (1 = uniform)",
                                        "student class token: std x sqrt(D) (0 = one point)",
                                        "student class token: effective rank"))
    steps = [r.get("step") for r in rows]
    colours = {"cls": "#1f77b4", "patch": "#ff7f0e"}
    log_k = float(np.log(num_prototypes))
    for which in ("cls", "patch"):
        if not any(f"pl_used_{which}" in r for r in rows):
            continue
        name = "class token" if which == "cls" else "patches"
        fig.add_trace(go.Scatter(x=steps, y=[r.get(f"pl_used_{which}", np.nan) for r in rows],
                                 name=f"{name}: prototypes used", mode="lines",
                                 line={"color": colours[which]}), 1, 1)
        if rows_per_step and which in rows_per_step and steps:
            floor = C.MIN_USED_FRACTION * min(num_prototypes, rows_per_step[which])
            fig.add_trace(go.Scatter(x=[steps[0], steps[-1]], y=[floor, floor], mode="lines",
                                     name=f"{name}: collapse below",
                                     line={"color": colours[which], "dash": "dash", "width": 1}),
                          1, 1)
        fig.add_trace(go.Scatter(x=steps, y=[r.get(f"pl_entropy_{which}", np.nan) / log_k
                                             for r in rows],
                                 name=f"{name}: entropy / log K", mode="lines",
                                 line={"color": colours[which]}), 2, 1)
    if steps:
        fig.add_trace(go.Scatter(x=[steps[0], steps[-1]], y=[C.MAX_ENTROPY_FRACTION] * 2,
                                 mode="lines", name="collapse above (uniform)",
                                 line={"color": "#555", "dash": "dash", "width": 1}), 2, 1)
    fig.add_trace(go.Scatter(x=steps, y=[r.get("cls_std", np.nan) for r in rows],
                             name="class-token std x sqrt(D)", mode="lines",
                             line={"color": "#2ca02c"}), 3, 1)
    fig.add_trace(go.Scatter(x=steps, y=[r.get("cls_erank", np.nan) for r in rows],
                             name="class-token effective rank", mode="lines",
                             line={"color": "#9467bd"}), 4, 1)
    fig.update_xaxes(title_text="step", row=4, col=1)
    fig.update_layout(template=TEMPLATE, height=680, margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.12})
    return fig
