"""Pure schedule functions of the optimiser step (MAE / DINO): their values are computed by the
caller at each step and passed in (PLAML.forward's temperatures, PLAML.update_teachers'
momenta); nothing here holds state.
"""

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


def window_momentum(window: float, total_steps: int) -> float:
    """The EMA momentum whose window 1/(1-m) is `window` x total_steps optimiser steps (at
    least one step: m = 0 copies the student)."""
    return 1.0 - 1.0 / max(1.0, window * total_steps)


def final_teacher_temp(teacher_temp: float, patch_teacher_temp: float = 0.0,
                       which: str = "cls") -> float:
    """The teacher temperature of `which` ('cls' | 'patch') pseudo labels after any warm-up:
    teacher_temp, or for patches patch_teacher_temp when it is set (> 0; iBOT's own knob)."""
    if which == "patch" and patch_teacher_temp > 0:
        return patch_teacher_temp
    return teacher_temp
