"""`make demo`: pretrain the paper's variant (token targets + class/data-token pseudo labels,
labelling + reconstruction teachers) on the embedded dataset with the demo preset (the lab
preset's data and model on a budget of minutes, experiments/configs/demo.yaml), evaluate it
against a random-init encoder on the same val split, and save figures next to the run."""

from __future__ import annotations

import json
import time
from pathlib import Path

from plaml_lab.config import load_config
from plaml_lab.evaluate import knn_eval
from plaml_lab.runs import load_run, random_init_run
from plaml_lab.train import pretrain
from plaml_lab.viz import figures as F
from plaml_lab.viz.snapshots import demo_figures


def save_figures(run, out: Path) -> list[Path]:
    """Loss curves, masked views with pseudo labels; returns the written paths."""
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig = F.loss_curves(run.metrics)
    paths.append(fig_dir / "loss_curves.png")
    fig.savefig(paths[-1], dpi=90, bbox_inches="tight")
    for name, fig in demo_figures(run).items():
        paths.append(fig_dir / f"{name}.png")
        fig.savefig(paths[-1], dpi=90, bbox_inches="tight")
    return paths


def cmd_demo(args) -> int:
    """`plaml-lab demo` (cli.py defines the arguments)."""
    cfg = load_config(args.config, args.overrides)
    t0 = time.perf_counter()
    print(f"plaml-lab demo: pretraining the dual-teacher pseudo-labelling MAE ({args.config}) "
          f"into {args.out}; re-running resumes.", flush=True)
    summary = pretrain(cfg, args.out)
    t_train = time.perf_counter() - t0
    run = load_run(args.out)
    random = knn_eval(random_init_run(run.cfg).encoder(), run.cfg)
    rows = [("pretrained (student)", summary), ("random init", random)]
    print()
    print(f"kNN top-1 on the val split ({run.cfg.data.dataset}, "
          f"{run.cfg.data.shapes.num_classes} classes, k={run.cfg.eval.knn_k}):")
    print(f"  {'encoder':<22} {'class token':>12} {'mean data tokens':>18}")
    for name, r in rows:
        print(f"  {name:<22} {r.get('knn_top1', float('nan')):>12.3f} "
              f"{r.get('knn_top1_mean', float('nan')):>18.3f}")
    out = Path(args.out)
    figures = save_figures(run, out)
    result = {"pretrained": {k: summary.get(k) for k in ("knn_top1", "knn_top1_mean")},
              "random_init": random, "train_seconds": round(t_train, 1),
              "total_seconds": round(time.perf_counter() - t0, 1)}
    (out / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(f"run folder : {out}  (config.yaml, metrics.jsonl, checkpoints/, summary.json)")
    for path in figures:
        print(f"figure     : {path}")
    print(f"took {result['total_seconds']:.0f} s; next: `make lab` and open "
          "notebooks/03_dashboards.ipynb on this run")
    return 0
