"""Figures of results tables: a sweep's rows (plaml_lab.lab.sweep / OUT/results.csv), metrics and
loss curves per point; probe results of encoders side by side (04_evaluate). Pure builders:
rows in, matplotlib Figures out (no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from plaml_lab.runs import read_metrics
from plaml_lab.viz.figures import new_figure

LOSS_TERMS = ("loss_rec", "loss_cls", "loss_patch")


def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _done(rows: Sequence[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "done"]


def metric_bars(rows: Sequence[dict], metrics: Sequence[str] = ("knn_top1", "knn_top1_mean"),
                title: str = "", baseline: dict | None = None):
    """Grouped bars: one group per completed point, one bar per metric; `baseline` (a dict of
    the same metrics, e.g. a random-init encoder's) is drawn as dashed lines."""
    done = _done(rows)
    fig = new_figure(max(4.0, 0.9 * len(done) + 1.5), 2.8)
    ax = fig.subplots()
    if not done:
        ax.text(0.5, 0.5, "no completed points", ha="center", transform=ax.transAxes)
        return fig
    xs = np.arange(len(done))
    width = 0.8 / len(metrics)
    for j, m in enumerate(metrics):
        vals = [_number(r.get(m)) for r in done]
        ax.bar(xs + j * width, vals, width, label=m, color=f"C{j}")
        if baseline and m in baseline:
            ax.axhline(_number(baseline[m]), color=f"C{j}", ls="--", lw=1,
                       label=f"{m} (random init)")
    ax.set_xticks(xs + width * (len(metrics) - 1) / 2, [r["point"] for r in done], fontsize=8,
                  rotation=20 if len(done) > 6 else 0)
    ax.set_title(title or ", ".join(metrics), fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def loss_term_bars(rows: Sequence[dict], terms: Sequence[str] = LOSS_TERMS):
    """Final value of each loss term per completed point (a term a variant does not use is 0)."""
    fig = metric_bars(rows, terms, title="final loss terms (last logged step)")
    return fig


def loss_curves_by_point(sweep_dir: str | Path, rows: Sequence[dict], key: str = "loss"):
    """`key` against the step for every completed point, read from
    sweep_dir/<point>/run/metrics.jsonl."""
    fig = new_figure(6.0, 3.0)
    ax = fig.subplots()
    drawn = 0
    for r in _done(rows):
        metrics = read_metrics(Path(sweep_dir) / r["point"] / "run")
        pts = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), label=r["point"], lw=1.4)
            drawn += 1
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no metrics", ha="center", transform=ax.transAxes)
    ax.set_title(f"{key} per point (each variant's loss has different terms: compare shapes, "
                 "not levels)", fontsize=8)
    fig.tight_layout()
    return fig


def comparison_bars(results: dict[str, dict], metrics: Sequence[str], title: str = ""):
    """One group per metric, one bar per result (e.g. {'pretrained': {...}, 'random init':
    {...}}); metrics none of the results has are left out."""
    metrics = [m for m in metrics if any(np.isfinite(_number(r.get(m))) for r in results.values())]
    fig = new_figure(max(4.0, 0.8 * len(metrics) + 1.5), 2.8)
    ax = fig.subplots()
    if not metrics:
        ax.text(0.5, 0.5, "no metrics", ha="center", transform=ax.transAxes)
        return fig
    xs = np.arange(len(metrics))
    width = 0.8 / len(results)
    for j, (name, r) in enumerate(results.items()):
        vals = [_number(r.get(m)) for m in metrics]
        ax.bar(xs + j * width, vals, width, label=name, color=f"C{j}" if j else "C0",
               alpha=1.0 if j == 0 else 0.6)
    ax.set_xticks(xs + width * (len(results) - 1) / 2, list(metrics), fontsize=7, rotation=25,
                  ha="right")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
