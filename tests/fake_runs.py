"""Synthetic run folders (config.yaml, metrics.jsonl, eval.json; no checkpoints) for the
compare-runs dashboard's tests and its benchmark over hundreds of runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from plaml_lab.config import load_config, save_yaml


def write_fake_run(out: Path, preset: str | None, overrides: list[str], *, rows: int = 50,
                   knn: float | None = None, finished: bool = True, seed: int = 0) -> Path:
    """A run folder whose loss decays like exp(-step / 40) (+ a seed-dependent offset), with
    `rows` metrics rows every 10 steps and, when knn is given, eval.json {knn_top1: knn}."""
    cfg = load_config(preset, [*overrides, f"run.seed={seed}"])
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    lines = []
    for i in range(1, rows + 1):
        step = 10 * i
        loss = 2.0 * math.exp(-step / 400) + 0.01 * seed + 0.1 * cfg.mask.ratio
        lines.append(json.dumps({"step": step, "epoch": round(step / 100, 4), "loss": loss,
                                 "loss_rec": loss / 2, "lr": 1e-3, "imgs_per_s": 100.0}))
    (out / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if finished:
        (out / "summary.json").write_text(json.dumps({"steps": 10 * rows, "complete": True}))
    if knn is not None:
        (out / "eval.json").write_text(json.dumps({"knn_top1": knn, "step": 10 * rows}))
    return out


def write_compare_folder(root: Path, preset: str, *, still_training: bool = True) -> Path:
    """The compare-runs tests' folder: a (mask 0.75) at seeds 0 and 1, a-s0 with a fine-tuning
    (finetune_top1 0.9) that is not a run of its own; b (mask 0.6) at seed 0; with
    still_training, c (one teacher) without summary.json; random_init-s0 with kNN 0.2."""
    write_fake_run(root / "a-s0", preset, [], knn=0.50, seed=0)
    write_fake_run(root / "a-s1", preset, [], knn=0.54, seed=1)
    write_fake_run(root / "b-s0", preset, ["mask.ratio=0.6"], knn=0.40, seed=0, rows=30)
    if still_training:
        write_fake_run(root / "c-s0", preset, ["method.teachers=single"], finished=False,
                       rows=10)
    (root / "random_init-s0").mkdir(parents=True)
    (root / "random_init-s0" / "eval.json").write_text(json.dumps({"knn_top1": 0.2}))
    ft = root / "a-s0" / "finetune" / "student-all-f1"
    write_fake_run(ft, preset, [])
    (ft / "source.json").write_text("{}")
    (ft / "summary.json").write_text(json.dumps({"finetune_top1": 0.9}))
    return root
