"""Pure schedule functions of the step number; values are computed at call time."""

from __future__ import annotations

import math


def cosine_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """Cosine from `start` at step 0 to `end` at `total_steps` (held after)."""
    if total_steps <= 0:
        return end
    t = min(max(step, 0), total_steps) / total_steps
    return end - (end - start) * (math.cos(math.pi * t) + 1) / 2


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, base: float,
                  final: float = 0.0) -> float:
    """Linear warm-up from 0 to `base` over `warmup_steps`, then cosine decay to `final`
    (MAE / DINO learning-rate schedule)."""
    if step < warmup_steps:
        return base * step / max(1, warmup_steps)
    return cosine_schedule(step - warmup_steps, total_steps - warmup_steps, base, final)


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear from `start` to `end` over `warmup_steps`, then constant (DINO teacher temperature)."""
    if step >= warmup_steps or warmup_steps <= 0:
        return end
    return start + (end - start) * step / warmup_steps


def momentum(step: int, total_steps: int, start: float, end: float) -> float:
    """EMA teacher momentum: cosine from `start` to `end` over training (BYOL/DINO)."""
    return cosine_schedule(step, total_steps, start, end)
