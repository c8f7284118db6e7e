"""`make demo`: pretrain the paper's variant (token targets + class/data-token pseudo labels,
labelling + reconstruction teachers) on the embedded dataset with the demo preset (the lab
preset's data and model on a budget of minutes, experiments/configs/demo.yaml), evaluate it
against a random-init encoder on the same held-out split, and save figures next to the run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from plaml_lab.config import load_config
from plaml_lab.data import build_dataset, normalize
from plaml_lab.evaluate import knn_eval
from plaml_lab.losses import unpatchify
from plaml_lab.runs import load_run, random_init_run
from plaml_lab.train import pretrain
from plaml_lab.viz import figures as F


def demo_figures(run, num_images: int = 256) -> dict:
    """What the trained model does on held-out images: masks (and pixel reconstructions in
    pixel mode), and images grouped by the labelling teacher's class-token pseudo label."""
    cfg = run.cfg
    val = build_dataset(cfg.data, cfg.model.img_size, "val")
    batch = val.get_batch(torch.arange(min(num_images, len(val))))
    images = batch["image"]
    model = run.model.eval()
    with torch.no_grad():
        out = model([normalize(images)], cfg.pl.teacher_temp, return_details=True,
                    generator=torch.Generator().manual_seed(0))
    recon = None
    if "pred_pixels" in out:
        # the decoder predicts per-patch normalised pixels: show them rescaled to [0, 1]
        pred = out["pred_pixels"].float()
        pred = (pred - pred.amin(-1, keepdim=True)) / (pred.amax(-1, keepdim=True)
                                                     - pred.amin(-1, keepdim=True) + 1e-6)
        recon = unpatchify(pred, cfg.model.patch_size)
    figs = {"masks": F.mask_grid(images, out["mask"], cfg.model.patch_size, recon=recon)}
    if "teacher_cls_scores" in out:
        figs["pseudo_labels"] = F.pseudo_label_grid(
            images, model.pseudo_labels(out["teacher_cls_scores"], "cls"))
    return figs


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
    print(f"kNN top-1 on the held-out split ({run.cfg.data.dataset}, "
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
