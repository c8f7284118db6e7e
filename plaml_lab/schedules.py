"""Pure schedule functions of the step number; values are computed at call time. Schedule
gathers a run's (lr, teacher temperature, teacher momenta) from its PretrainConfig."""

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


class Schedule:
    """Every per-step value of a run, as pure functions of the optimiser step."""

    def __init__(self, cfg, steps_per_epoch: int, global_batch: int):
        o, pl = cfg.optim, cfg.pl
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.total = max(1, int(round(o.epochs * steps_per_epoch)))
        self.end = min(self.total, cfg.run.max_steps) if cfg.run.max_steps else self.total
        self.warmup = int(round(o.warmup_epochs * steps_per_epoch))
        self.base_lr = o.lr if o.lr > 0 else o.blr * global_batch / 256
        self.temp_warmup = int(round(pl.warmup_teacher_temp_epochs * steps_per_epoch))
        # the longer of an absolute number of epochs and a share of the run (docs/method.md)
        self.freeze_protos = max(int(round(pl.freeze_prototypes_epochs * steps_per_epoch)),
                                 int(round(pl.freeze_prototypes_frac * self.total)))

    def lr(self, step: int) -> float:
        return warmup_cosine(step, self.warmup, self.total, self.base_lr,
                                       self.cfg.optim.min_lr)

    def teacher_temp(self, step: int) -> float:
        pl = self.cfg.pl
        return linear_warmup(step, self.temp_warmup, pl.warmup_teacher_temp,
                                       pl.teacher_temp)

    def patch_teacher_temp(self, step: int) -> float:
        """iBOT's separate patch temperature, on the same warm-up."""
        pl = self.cfg.pl
        return linear_warmup(step, self.temp_warmup, pl.warmup_teacher_temp,
                             final_teacher_temp(pl, "patch"))

    def momenta(self, step: int) -> dict[str, float]:
        return teacher_momenta(self.cfg, step, self.total)


def final_teacher_temp(pl, which: str = "cls") -> float:
    """The teacher temperature of `which` ('cls' | 'patch') pseudo labels after any warm-up:
    pl.teacher_temp, or pl.patch_teacher_temp for patches when it is set (> 0; iBOT)."""
    if which == "patch" and pl.patch_teacher_temp > 0:
        return pl.patch_teacher_temp
    return pl.teacher_temp


def window_momentum(window: float, total_steps: int) -> float:
    """The EMA momentum whose window 1/(1-m) is `window` x total_steps optimiser steps (at
    least one step: m = 0 copies the student)."""
    return 1.0 - 1.0 / max(1.0, window * total_steps)


def teacher_momenta(cfg, step: int, total: int) -> dict[str, float]:
    """{teacher name: EMA momentum at `step` of `total`}, each teacher on the schedule of the
    role it serves (cfg.teacher_roles): what training uses and the dashboards draw."""
    out = {}
    for name, sched in cfg.teacher_roles.items():
        t = getattr(cfg.teachers, sched)
        start = window_momentum(t.window, total) if t.window > 0 else t.momentum
        end = window_momentum(t.window_end, total) if t.window_end > 0 else t.momentum_end
        out[name] = momentum(step, total, start, end)
    return out
