"""A run's schedules: `Schedule` gathers the learning rate, teacher temperatures and teacher
momenta of a PretrainConfig as functions of the optimiser step, from the method's pure schedule
functions (plaml_lab.method.schedules)."""

from __future__ import annotations

from plaml_lab.method.schedules import (final_teacher_temp, linear_warmup, momentum,
                                        warmup_cosine, window_momentum)


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
        return warmup_cosine(step, self.warmup, self.total, self.base_lr, self.cfg.optim.min_lr)

    def teacher_temp(self, step: int) -> float:
        pl = self.cfg.pl
        return linear_warmup(step, self.temp_warmup, pl.warmup_teacher_temp, pl.teacher_temp)

    def patch_teacher_temp(self, step: int) -> float:
        """iBOT's separate patch temperature, on the same warm-up."""
        pl = self.cfg.pl
        return linear_warmup(step, self.temp_warmup, pl.warmup_teacher_temp,
                             final_teacher_temp(pl.teacher_temp, pl.patch_teacher_temp, "patch"))

    def momenta(self, step: int) -> dict[str, float]:
        return teacher_momenta(self.cfg, step, self.total)


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
