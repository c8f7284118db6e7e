"""One optimiser step of pretraining, `train_step(state, micro_batches)`, and the state it runs on.

Read top to bottom, `train_step` is the method's step as the trainer runs it: for each
micro-batch draw its views and masks, forward under autocast, backward of loss / accum_steps;
then check the step is finite (nonfinite.FiniteGuard), clip, keep the prototypes fixed in the
first epochs, step the optimiser and move every teacher one EMA step towards the student.
Everything it reads or changes is in one `TrainState`. The loop around it (plaml_lab.train) keeps
the books: data order, logs, checkpoints, TensorBoard, callbacks. Your own loop can call it too:

    state = TrainState(cfg, model, optimizer, Schedule(cfg, steps_per_epoch, global_batch))
    for batch in loader:                       # dicts with "image" (B, 3, H, W) in [0, 1]
        result = train_step(state, [batch])    # accum_steps batches per step
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from plaml_lab.config import PretrainConfig
from plaml_lab.data import make_views
from plaml_lab.errors import DatasetError
from plaml_lab.hardware import Precision, autocast, resolve_precision
from plaml_lab.method import LOSS_KEYS, MONITOR_KEYS, PLAML
from plaml_lab.method.masking import sample_noise
from plaml_lab.nonfinite import FiniteGuard
from plaml_lab.optim import clip_gradients
from plaml_lab.runs import distributed as du
from plaml_lab.schedules import Schedule

# --- the step's randomness ------------------------------------------------------------------


def _step_generator(device: torch.device, seed: int, step: int) -> torch.Generator:
    """The same stream on every rank and micro-batch of a step: each draws the randomness of
    the whole global batch and keeps its own rows (see step_randomness)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1))
    return g


def global_rows(batch: int, micro: int, rank: int, world: int) -> torch.Tensor:
    """Positions, within the step's global batch, of this (micro-batch, rank)'s samples:
    rank r reads every world-th sample of the epoch order (DistributedSampler), micro-batches
    are consecutive in its share."""
    return world * (micro * batch + torch.arange(batch)) + rank


def step_randomness(images: torch.Tensor, cfg: PretrainConfig, step: int, micro: int, rank: int,
                    world: int, num_patches: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Augmented views and masking noise (V*B, L) for one micro-batch. Drawn per sample of the
    global batch, so 1 process x batch N, N/2 x 2 accumulation steps and 2 ranks x N/2 see the
    same views and masks: runs agree across world sizes and resume exactly."""
    batch = images.shape[0]
    total = batch * cfg.optim.accum_steps * world
    rows = global_rows(batch, micro, rank, world)
    g = _step_generator(images.device, cfg.run.seed, step)
    views = make_views(images, cfg.data.aug, cfg.data.views, cfg.model.img_size, generator=g,
                       rows=(rows, total))
    noise = sample_noise(cfg.data.views * total, num_patches, cfg.mask.strategy,
                         cfg.mask.block_size, device=images.device, generator=g)
    noise = noise.view(cfg.data.views, total, -1)[:, rows.to(images.device)]
    return views, noise.reshape(cfg.data.views * batch, -1)


# --- the state and the step -----------------------------------------------------------------

@dataclass
class TrainState:
    """What a training step reads and changes. Left out, device is the model's, precision
    cfg.run.precision's, the scaler a GradScaler for fp16 (off otherwise), step_module the model
    (the trainer passes its DDP / compiled wrapper), guard a FiniteGuard in cfg.run.on_nonfinite's
    mode (in `stop` mode it only records the first bad step: call guard.raise_if_bad() when you
    want to stop), rank and world the process group's."""

    cfg: PretrainConfig
    model: PLAML
    optimizer: torch.optim.Optimizer
    sched: Schedule
    device: torch.device | None = None
    precision: Precision | None = None
    scaler: torch.amp.GradScaler | None = None
    step_module: torch.nn.Module | None = None
    guard: FiniteGuard | None = None
    step: int = 0  # optimiser steps taken: the next step's index
    counters: dict[str, int] = field(
        default_factory=lambda: {"skipped_steps": 0, "bad_images": 0})
    rank: int = field(default_factory=du.rank)
    world: int = field(default_factory=du.world_size)
    params: list[torch.Tensor] = field(init=False)  # the student's trainable parameters
    protos: list[torch.Tensor] = field(init=False)  # its prototypes (frozen early on)

    def __post_init__(self):
        if self.device is None:
            self.device = next(self.model.parameters()).device
        if self.precision is None:
            self.precision = resolve_precision(self.cfg.run.precision, self.device)
        if self.scaler is None:
            self.scaler = torch.amp.GradScaler(self.device.type,
                                               enabled=self.precision.uses_scaler)
        if self.step_module is None:
            self.step_module = self.model
        if self.guard is None:
            # under a GradScaler (fp16) an overflowing gradient is routine: the scaler skips it
            self.guard = FiniteGuard(self.cfg.run.on_nonfinite, not self.precision.uses_scaler,
                                     self.device, Path("checkpoints/last.pt"), None)
        student = self.model.student
        self.params = [p for p in student.parameters() if p.requires_grad]
        self.protos = [p for n, p in student.named_parameters()
                       if n.endswith("prototypes.weight")]


@dataclass
class StepResult:
    """losses: LOSS_KEYS -> the step's mean over its micro-batches, 0-d float32 tensors on the
    device (no host sync; float() them to read), empty when no micro-batch had a readable image;
    applied: False when the update was dropped (no readable image, or non-finite under
    run.on_nonfinite=skip); stats: the last forward's collapse statistics (MONITOR_KEYS) when the
    step ran with monitor=True."""

    losses: dict[str, torch.Tensor]
    applied: bool
    stats: dict[str, torch.Tensor]


def train_step(state: TrainState, micro_batches: Iterable[dict], *,
               monitor: bool = False) -> StepResult:
    """One optimiser step, state.step, over cfg.optim.accum_steps micro-batches (loader batches:
    dicts with "image" (B, 3, H, W) in [0, 1], and "num_bad", images dropped as unreadable);
    advances state.step. The model is in train mode (the caller's job, as in any loop)."""
    cfg, model, sched, step = state.cfg, state.model, state.sched, state.step
    accum = cfg.optim.accum_steps
    lr = sched.lr(step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    temp, patch_temp = sched.teacher_temp(step), sched.patch_teacher_temp(step)

    micro_parts, stats, seen = [], {}, 0
    for micro, batch in enumerate(micro_batches):
        seen += 1
        if seen > accum:
            break  # refused below
        state.counters["bad_images"] += int(batch.get("num_bad", 0))
        if not len(batch["image"]):  # every image unreadable (warned and counted): no data
            if state.world > 1:  # the other ranks would wait for this one's gradients forever
                raise DatasetError(f"data.root={cfg.data.root}: a batch with no readable "
                                   "image; remove the unreadable files named above")
            continue
        views, noise = step_randomness(batch["image"], cfg, step, micro, state.rank, state.world,
                                       model.student.num_patches)
        sync = contextlib.nullcontext()
        if isinstance(state.step_module, DDP) and micro < accum - 1:
            sync = state.step_module.no_sync()  # DDP: all-reduce on the last backward only
        with sync:
            with autocast(state.device, state.precision.name):
                out = state.step_module(views, temp, patch_teacher_temp=patch_temp, noise=noise,
                                        monitor=monitor)
            state.scaler.scale(out["loss"] / accum).backward()
        micro_parts.append(torch.stack([out[k].detach().float() for k in LOSS_KEYS]))
        stats = {k: v.detach() for k, v in out.items() if k in MONITOR_KEYS}
    if seen != accum:  # the gradients are scaled by 1 / accum_steps: another count is wrong
        state.optimizer.zero_grad(set_to_none=True)
        raise ValueError(f"train_step takes optim.accum_steps={accum} micro-batches, got "
                         + ("more" if seen > accum else str(seen)))

    losses, applied = {}, False  # no readable image in the whole step: nothing to apply
    if micro_parts:
        # the step's loss parts: the mean over its micro-batches (a NaN in any one shows)
        parts = micro_parts[0] if len(micro_parts) == 1 else torch.stack(micro_parts).mean(0)
        losses = dict(zip(LOSS_KEYS, parts))
        applied = not state.guard.skip_step(step, parts, state.params)

    if applied:
        if cfg.optim.clip_grad > 0:
            state.scaler.unscale_(state.optimizer)
            clip_gradients(state.params, cfg.optim.clip_grad, cfg.optim.clip_mode)
        if step < sched.freeze_protos:
            for p in state.protos:
                p.grad = None  # DINO: prototypes stay fixed while the heads settle
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.optimizer.zero_grad(set_to_none=True)
        model.update_teachers(sched.momenta(step))
    else:
        state.optimizer.zero_grad(set_to_none=True)
        state.counters["skipped_steps"] += 1
    state.step += 1
    return StepResult(losses, applied, stats)
