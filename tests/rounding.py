"""How far float rounding alone moves a short training run: the tolerance of tests that compare
runs whose arithmetic is equal up to summation order (DDP vs one process, accumulation vs one
big batch).

The bound is measured, not copied from one machine: the same run once more with every weight
moved by one ulp. AdamW divides each update by the gradient's own scale, so coordinates whose
gradient is mostly rounding noise (e.g. the key bias, which softmax ignores) move by up to ~lr
per step whatever the CPU; how far depends on the CPU class's kernels, and the perturbed run
shows it on this one."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from plaml_lab.runs.checkpoint import load_checkpoint

# A reordered sum perturbs the gradients by a few ulp at every step, not the weights once:
# allow this many times the one-ulp drift.
REORDER_FACTOR = 8


def max_difference(a: dict, b: dict) -> tuple[float, str]:
    """The largest elementwise difference between two model state dicts, and its key."""
    return max((float((a[k].double() - b[k].double()).abs().max()), k) for k in a)


def one_ulp_drift(monkeypatch, train, reference: Path, out: Path) -> float:
    """Re-run `train(out)` with every parameter of the freshly built model nudged up by one
    ulp; returns its largest weight difference from the finished `reference` run."""
    from plaml_lab.method import PLAML
    build = PLAML.from_config  # bound before the patch: the real constructor

    def nudged(cfg):
        model = build(cfg)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.nextafter(p, torch.full_like(p, math.inf)))
        return model

    with monkeypatch.context() as m:
        m.setattr(PLAML, "from_config", staticmethod(nudged))
        train(out)
    drift, _ = max_difference(_weights(reference), _weights(out))
    assert drift > 0, "the one-ulp nudge changed nothing: the bound would be zero"
    return drift


def _weights(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]
