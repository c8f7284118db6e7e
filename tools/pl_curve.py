"""Pseudo labels against training time: probe every periodic checkpoint of some runs.

    python tools/pl_curve.py --runs experiments/runs/pl_curve --out experiments/results/pl_curve

For each run folder under --runs and each of its checkpoints/step_*.pt, `plaml_lab.evaluate`
scores the labelling teacher's class-token pseudo labels (clusters: prototypes in use, NMI,
AMI, the nuisance NMIs) and kNN on the held-out split (the student's class token, or the
labelling teacher's for runs without a reconstruction target: the DINO control). Each result
is cached as OUT/<run>_step<N>.json, so the command can run while the runs train, and again.
A random-init encoder of the first run's shape is the step-0 row. Writes OUT/curve.md (one row
per run and checkpoint), OUT/curve_mean.md (per grid point, mean +- sample std over its seeds:
runs P-s0, P-s1, ... are seeds of point P) and OUT/curve.png (NMI, AMI and kNN against epochs,
the seed mean with a +-std band). Made for
experiments/grids/pl_curve.yaml (docs/results_history.md, "Where the pseudo labels start to form").
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from plaml_lab.config import load_yaml  # noqa: E402
from plaml_lab.evaluate import evaluate  # noqa: E402
from plaml_lab.lab.ablation_table import mean_std  # noqa: E402
from plaml_lab.runs import read_metrics  # noqa: E402
from plaml_lab.runs.checkpoint import write_atomic  # noqa: E402

PROBES = ("knn", "clusters")
COLUMNS = ("prototypes_used", "nmi", "ami", "knn_top1", "knn_top1_mean")
NUISANCE = ("bg_grey", "fg_grey", "area")


def _cached(path: Path, compute) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    write_atomic(path, json.dumps(result, indent=1, default=float))
    return result


def _encoder(run: Path) -> str:
    """kNN readout: the student, except where nothing trains its features besides the pseudo
    labels' cross-view task seen through a mask (the DINO control): its labelling teacher."""
    return "labelling" if load_yaml(run / "config.yaml")["method"]["target"] == "none" else "student"


def curve(runs_root: Path, out: Path, log=print) -> dict[str, list[dict]]:
    """{run name: rows (epoch, step, metrics...) in step order}, probing what is not cached."""
    out.mkdir(parents=True, exist_ok=True)
    runs = sorted(p for p in runs_root.iterdir() if (p / "checkpoints").is_dir())
    if not runs:
        raise SystemExit(f"error: --runs {runs_root}: no run folder with checkpoints/ in it")
    table = {}
    first = runs[0]
    base = _cached(out / "random_init.json", lambda: evaluate(
        first, PROBES, random_init=True, encoder="labelling"))
    table["random_init"] = [{"epoch": 0.0, "step": 0, **base}]
    for run in runs:
        # seed 0 keeps the bare point name (the cache files of the first curves); other seeds
        # keep their suffix, so two seeds of a point neither share a cache file nor a row
        name = re.sub(r"-s0$", "", run.name)
        logged = [r for r in read_metrics(run) if r.get("step") and "epoch" in r]
        per_step = logged[-1]["epoch"] / logged[-1]["step"] if logged else float("nan")
        encoder = _encoder(run)
        rows = []
        for ckpt in sorted((run / "checkpoints").glob("step_*.pt")):
            step = int(ckpt.stem.split("_")[1])
            result = _cached(out / f"{name}_step{step}.json", lambda: (
                log(f"{name} step {step}: probing ({encoder})"),
                evaluate(ckpt, PROBES, encoder=encoder))[1])
            rows.append({"epoch": step * per_step, "step": step, **result})
        table[name] = rows
    return table


def seed_means(table: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """{grid point: rows (epoch, step, seeds, metric: (mean, std))} over the point's seeds, at
    the steps every seed has reached (a run still training does not pull the mean down)."""
    groups: dict[str, list[dict[int, dict]]] = {}
    for name, rows in table.items():
        if name != "random_init":
            groups.setdefault(re.sub(r"-s\d+$", "", name), []).append({r["step"]: r for r in rows})
    means = {}
    for point, runs in groups.items():
        steps = sorted(set.intersection(*(set(r) for r in runs)))
        means[point] = [{"epoch": runs[0][step]["epoch"], "step": step, "seeds": len(runs),
                         **{k: mean_std([r[step].get(k) for r in runs]) for k in COLUMNS}}
                        for step in steps]
    return means


def _nuisance(row: dict) -> str:
    nmi = row.get("nmi_nuisance") or {}
    return " / ".join(f"{nmi[k]:.2f}" if k in nmi else "-" for k in NUISANCE)


def write_markdown(table: dict[str, list[dict]], path: Path) -> None:
    lines = ["| run | epoch | step | prototypes used | NMI | AMI | kNN cls / mean | "
             "NMI vs background grey / object grey / area |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in table.items():
        for r in rows:
            lines.append(
                f"| {name} | {r['epoch']:.2f} | {r['step']} | {r.get('prototypes_used', float('nan')):.0f} | "
                f"{r.get('nmi', float('nan')):.3f} | {r.get('ami', float('nan')):.3f} | "
                f"{r.get('knn_top1', float('nan')):.3f} / {r.get('knn_top1_mean', float('nan')):.3f} | "
                f"{_nuisance(r)} |")
    path.write_text("\n".join(lines) + "\n")


def write_mean_markdown(means: dict[str, list[dict]], path: Path) -> None:
    def cell(pair, digits=3):
        m, sd = pair
        return "-" if math.isnan(m) else f"{m:.{digits}f} ± {sd:.{digits}f}"

    lines = ["| point | seeds | epoch | prototypes used | NMI | AMI | kNN cls | kNN mean |",
             "|---|---|---|---|---|---|---|---|"]
    for point, rows in means.items():
        for r in rows:
            lines.append(f"| {point} | {r['seeds']} | {r['epoch']:.2f} | "
                         f"{cell(r['prototypes_used'], 0)} | {cell(r['nmi'])} | {cell(r['ami'])} | "
                         f"{cell(r['knn_top1'])} | {cell(r['knn_top1_mean'])} |")
    path.write_text("\n".join(lines) + "\n")


def plot(random_init: dict, means: dict[str, list[dict]], path: Path) -> None:
    """NMI, AMI and kNN against epochs: each point's seed mean (`seed_means`) with a +-std band,
    the random-init encoder as a dotted line."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, title in zip(axes, ("nmi", "ami", "knn_top1"),
                              ("NMI of the pseudo labels", "AMI (chance-corrected)", "kNN top-1 (class token)")):
        ax.axhline(random_init.get(key, float("nan")), color="grey", ls=":",
                   label="random init")
        for point, rows in means.items():
            x = [r["epoch"] for r in rows]
            m, sd = zip(*(r[key] for r in rows)) if rows else ((), ())
            seeds = rows[0]["seeds"] if rows else 1
            line, = ax.plot(x, m, "o-", label=point if seeds == 1 else f"{point} ({seeds} seeds)")
            ax.fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)],
                            color=line.get_color(), alpha=0.2)
        if key == "nmi":
            ax.axhline(0.20, color="red", lw=0.8, ls="--", label="target 0.20")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="experiments/runs/pl_curve", help="folder of run folders")
    ap.add_argument("--out", default="experiments/results/pl_curve", help="results folder")
    args = ap.parse_args(argv)
    runs_root = Path(args.runs)
    if not runs_root.is_dir():
        print(f"error: --runs {runs_root}: not a folder", file=sys.stderr)
        return 2
    table = curve(runs_root, Path(args.out))
    write_markdown(table, Path(args.out) / "curve.md")
    means = seed_means(table)  # once, for the mean table and the plot
    write_mean_markdown(means, Path(args.out) / "curve_mean.md")
    plot(table["random_init"][0], means, Path(args.out) / "curve.png")
    print((Path(args.out) / "curve_mean.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
