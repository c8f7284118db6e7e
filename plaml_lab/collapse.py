"""Collapse diagnostics of the pseudo labels and the features: what the logged statistics mean
and when they warn.

DINO-style self-distillation fails in two known ways (DINO, Sec. 5.3): one prototype dominates
every target (the center is too weak), or every target flattens to uniform (the center wins
over sharpening). Either way the pseudo labels stop telling images apart, and the features
that produce them follow. Training records, at each log step (metrics.jsonl):

- ``pl_entropy_cls`` / ``pl_entropy_patch``: mean entropy (nats) of the labelling teacher's
  target distributions, after centering or Sinkhorn; log K = uniform, 0 = one-hot;
- ``pl_used_cls`` / ``pl_used_patch``: how many prototypes are the argmax of at least one target
  in the step's batch (the pseudo labels as training forms them);
- ``cls_std``: std over the batch of the L2-normalised student class-token features, times
  sqrt(D): ~1 when they spread over the sphere, 0 when every image maps to one point
  (SimSiam's collapse measure, rescaled so that the healthy value does not depend on D);
- ``cls_erank``: effective rank of the student class-token features (RankMe: exp of the entropy
  of the normalised singular values), between 1 and min(batch, D).

The statistics themselves are computed in the training step (plaml_lab.method.monitor); this
module reads them back: `CollapseMonitor` turns log rows into a one-line warning when the pseudo
labels have collapsed.
"""

from __future__ import annotations

import math
import warnings

from plaml_lab.method.masking import num_visible

# Thresholds of `is_collapsed` (docs/method.md, "Collapse"): the targets use fewer than
# MIN_USED_FRACTION of the prototypes a batch could use (min(K, rows)), or their mean entropy
# is above MAX_ENTROPY_FRACTION of log K. Both must hold at PERSIST consecutive log steps, so a
# single noisy batch does not warn.
MIN_USED_FRACTION = 0.1
MAX_ENTROPY_FRACTION = 0.95
PERSIST = 2


class CollapseWarning(UserWarning):
    """The pseudo labels collapsed: one prototype takes every target, or every target is flat."""


def is_collapsed(used: float, entropy: float, num_prototypes: int, rows: int) -> str | None:
    """Why targets with these statistics have collapsed, or None when they have not."""
    room = min(num_prototypes, rows)
    if used < MIN_USED_FRACTION * room:
        return f"{used:.0f} of {num_prototypes} prototypes used by {rows} targets"
    if entropy > MAX_ENTROPY_FRACTION * math.log(num_prototypes):
        return (f"targets near uniform (entropy {entropy:.2f} nats, log K = "
                f"{math.log(num_prototypes):.2f})")
    return None


def rows_per_step(cfg) -> dict[str, int]:
    """{'cls': class-token targets per step and process, 'patch': patch targets} of a
    PretrainConfig's pseudo labels: batch x views, and x hidden patches for 'patch'."""
    batch = cfg.optim.batch_size * cfg.data.views
    patches = (cfg.model.img_size // cfg.model.patch_size) ** 2
    hidden = patches - num_visible(patches, cfg.mask.ratio)
    out = {}
    if cfg.pl_cls:
        out["cls"] = batch
    if cfg.pl_patch:
        out["patch"] = batch * hidden
    return out


class CollapseMonitor:
    """Reads the log rows of one run and warns once, in one line, when the class-token (or
    patch) pseudo labels have been collapsed for PERSIST consecutive log steps."""

    def __init__(self, num_prototypes: int, rows: dict[str, int]):
        self.num_prototypes = num_prototypes
        self.rows = rows  # {'cls': targets per step, 'patch': ...}
        self.streak = {which: 0 for which in rows}
        self.warned = False

    def check(self, row: dict) -> str | None:
        """The warning's text the first time collapse has persisted, else None."""
        for which, n in self.rows.items():
            used, entropy = row.get(f"pl_used_{which}"), row.get(f"pl_entropy_{which}")
            if used is None or entropy is None:
                continue
            why = is_collapsed(used, entropy, self.num_prototypes, n)
            self.streak[which] = self.streak[which] + 1 if why else 0
            if why and self.streak[which] >= PERSIST and not self.warned:
                self.warned = True
                return (f"step {row['step']}: {'class-token' if which == 'cls' else 'patch'} "
                        f"pseudo labels collapsed ({why}); see docs/method.md, 'Collapse'")
        return None

    def warn(self, row: dict) -> None:
        msg = self.check(row)
        if msg:
            warnings.warn(msg, CollapseWarning, stacklevel=2)
