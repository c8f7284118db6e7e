"""TensorBoard as an optional sink of a run (`run.tensorboard: true`): every numeric column of
a metrics.jsonl row as a scalar at its step, under a group tag (loss/, schedule/, monitor/,
probe/, speed/, counters/: `loss_cls` -> `loss/loss_cls`), the demo's figures of the model
(masks, pseudo-label groups) as images at the same log steps, and at the end of the run its
hparams: the config keys that differ from the defaults (plus variant and seed) against the final
numbers (final/knn_top1, final/loss, ...), so TensorBoard's HParams tab compares runs by their
configuration. metrics.jsonl stays the source of truth; the event files in RUN/tensorboard/ are
a view of it for people who look there.

    tensorboard --logdir experiments/runs
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from plaml_lab.config import PretrainConfig, diff, to_dict
from plaml_lab.data import build_dataset
from plaml_lab.errors import ConfigError
from plaml_lab.method.rules import variant_name
from plaml_lab.method import MONITOR_KEYS

FIGURE_TAG = "figures/"
FINAL_TAG = "final/"  # the hparams metrics: a tag of their own, not a training curve's
# metrics.jsonl column -> its TensorBoard group (columns not listed go to their prefix's group)
GROUPS = {"loss": "loss", "loss_rec": "loss", "loss_cls": "loss", "loss_patch": "loss",
          "lr": "schedule", "teacher_temp": "schedule", "epoch": "schedule",
          "imgs_per_s": "speed", "skipped_steps": "counters", "bad_images": "counters",
          **{k: "monitor" for k in MONITOR_KEYS}}
PREFIX_GROUPS = (("momentum_", "schedule"), ("knn_", "probe"), ("linear_", "probe"))
# bookkeeping keys that do not change what a run learns: not hparams
NOT_HPARAMS = ("run.name", "run.progress", "run.tensorboard", "run.tensorboard_images",
               "run.ckpt_every", "run.keep_ckpts", "run.log_every", "run.num_threads",
               "data.num_workers", "data.root")
FINAL_KEYS = ("knn_top1", "knn_top1_mean", "loss", "loss_rec", "loss_cls", "loss_patch")


def tag(key: str) -> str:
    """The grouped TensorBoard tag of a metrics.jsonl column: 'loss_cls' -> 'loss/loss_cls'."""
    group = GROUPS.get(key) or next((g for p, g in PREFIX_GROUPS if key.startswith(p)), "other")
    return f"{group}/{key}"


def run_hparams(cfg) -> dict:
    """The run's hparams: every config key that differs from the defaults (bookkeeping keys left
    out), with the variant and the seed always present. Values are TensorBoard's types
    (bool, int, float, str); lists become their text."""
    tree = to_dict(cfg)
    keys = [k for k in diff(cfg, PretrainConfig()) if k not in NOT_HPARAMS]
    out = {"variant": variant_name(cfg), "run.seed": cfg.run.seed}
    for k in keys:
        v = tree
        for part in k.split("."):
            v = v[part]
        out[k] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


class TensorBoardSink:
    """Writes RUN/tensorboard/events.*. On resume from step S, `purge_step=S + 1` makes
    TensorBoard drop what an interrupted run had logged after S (metrics.jsonl is truncated the
    same way).
    Figures show the first run.tensorboard_images held-out images of cfg's dataset (0: none)."""

    def __init__(self, log_dir: str | Path, cfg, start_step: int = 0):
        try:  # tensorboard loads only for runs that ask for it
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("run.tensorboard=true: the tensorboard package is not installed "
                              "(pip install tensorboard)") from None
        self.writer = SummaryWriter(str(log_dir),
                                    purge_step=start_step + 1 if start_step else None)
        self.figure_images = None
        n = cfg.run.tensorboard_images
        if n:
            val = build_dataset(cfg.data, cfg.model.img_size, "val")
            self.figure_images = val.get_batch(torch.arange(min(n, len(val))))["image"]

    def scalars(self, row: dict) -> None:
        """Every int / float column of a metrics row except `step`, at row['step']."""
        step = int(row["step"])
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag(key), value, step)

    def figures(self, model, cfg, step: int) -> None:
        """The demo's figures of `model` on the held-out images, as images at `step`."""
        if self.figure_images is None:
            return
        from plaml_lab.viz.figures import figure_png  # matplotlib: only for runs with figures
        from plaml_lab.viz.snapshots import model_figures  # (the same reason)

        for name, fig in model_figures(model, cfg, self.figure_images).items():
            image = np.asarray(Image.open(io.BytesIO(figure_png(fig, dpi=72))).convert("RGB"))
            self.writer.add_image(FIGURE_TAG + name, image, step, dataformats="HWC")

    def log(self, row: dict, model, cfg) -> None:
        """One metrics row: its scalars, the figures at its step, flushed to disk."""
        self.scalars(row)
        self.figures(model, cfg, int(row["step"]))
        self.writer.flush()

    def hparams(self, cfg, summary: dict) -> None:
        """The run's hparams (run_hparams) against its final numbers from `summary`, written into
        this run's own event file (SummaryWriter.add_hparams would open a sub-run per call), the
        metrics as final/<key> scalars at the last step."""
        from torch.utils.tensorboard.summary import hparams  # noqa: PLC0415

        metrics = {FINAL_TAG + k: float(summary[k]) for k in FINAL_KEYS
                   if isinstance(summary.get(k), (int, float))}
        step = int(summary.get("steps", 0))
        for summary_pb in hparams(run_hparams(cfg), metrics):
            self.writer.file_writer.add_summary(summary_pb, step)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
