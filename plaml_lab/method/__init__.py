"""PL-MAE, the method (docs/method.md): a package that imports only torch, timm and the standard
library, so it can train inside someone else's loop (tests/test_layout.py checks).

    vit.py        ViT encoder with timm's names; attention kernel choice
    student.py    the MAE student: encoder, decoder with mask tokens, token predictor, heads
    heads.py      pseudo-label heads (MLP -> L2-normalised bottleneck -> K prototypes)
    masking.py    per-sample random / block masking from a noise tensor
    teachers.py   frozen EMA teachers and their foreach update
    losses.py     pixel, token and pseudo-label losses as pure functions
    schedules.py  pure schedule functions of the step (lr, temperature, momentum)
    monitor.py    the step's collapse statistics
    rules.py      the variants: which teachers and parts each has, which config keys it reads
    plaml.py      PLAML: all of the above as one nn.Module, built from explicit arguments
"""

from __future__ import annotations

import importlib

# The names below load on first use (PEP 562): importing `.rules`, whose variant names
# `plaml-lab --help` lists and whose rules config.py applies, must not import torch.
_EXPORTS = {
    "PLAML": "plaml", "LOSS_KEYS": "plaml", "MONITOR_KEYS": "plaml", "config_kwargs": "plaml",
    "Student": "student", "ViTEncoder": "vit", "PLHead": "heads", "Teacher": "teachers",
    "ema_update": "teachers", "random_masking": "masking", "mask_from_noise": "masking",
    "Variant": "rules", "VARIANTS": "rules", "variant_name": "rules",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
