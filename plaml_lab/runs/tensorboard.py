"""TensorBoard as an optional sink of a run (`run.tensorboard: true`): every numeric column of
a metrics.jsonl row as a scalar at its step, and the demo's figures of the model (masks,
pseudo-label groups) as images at the same log steps. metrics.jsonl stays the source of truth;
the event files in RUN/tensorboard/ are a view of it for people who look there.

    tensorboard --logdir experiments/runs
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from plaml_lab.data import build_dataset
from plaml_lab.errors import ConfigError

FIGURE_TAG = "figures/"


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
                self.writer.add_scalar(key, value, step)

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

    def close(self) -> None:
        self.writer.close()
