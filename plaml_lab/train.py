"""The training loop: single device or torchrun DDP, exact resume, checkpoints, metrics.

Everything random in a step (data order, augmentation, masking) is drawn from generators seeded
by (run.seed, epoch / step, rank), so a resumed run replays exactly what an uninterrupted run
would have done; the global RNGs (drop-path) are saved in checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from itertools import islice
from pathlib import Path
from typing import Iterator

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from plaml_lab import schedules
from plaml_lab.collapse import CollapseMonitor, rows_per_step
from plaml_lab.config import PretrainConfig, apply_overrides, from_dict, load_config, to_dict
from plaml_lab.data import FolderDataset, build_dataset, epoch_batches, steps_per_epoch
from plaml_lab.data.datasets import not_images
from plaml_lab.errors import CheckpointError, ConfigError, DatasetError, RunError
from plaml_lab.evaluate import knn_eval
from plaml_lab.hardware import resolve_device, resolve_precision, try_compile, warn_if_emulated
from plaml_lab.method import LOSS_KEYS, PLAML
from plaml_lab.method.rules import variant_name
from plaml_lab.nonfinite import FiniteGuard
from plaml_lab.optim import make_optimizer
from plaml_lab.pretrained import init_from, init_teacher_from
from plaml_lab.runs import distributed as du, read_metrics
from plaml_lab.runs.checkpoint import copy_atomic, load_model_state, set_rng_state, write_atomic
from plaml_lab.runs.folder import RUN_FILES, check_run_dir, prune_periodic
from plaml_lab.runs.lock import run_lock
from plaml_lab.runs.resume import (find_resume_checkpoint, prepare_folder, save_checkpoint,
                                   storage_error)
from plaml_lab.runs.tensorboard import TensorBoardSink
from plaml_lab.train_step import StepResult, TrainState, train_step

# --- the loop ----------------------------------------------------------------------------------

def pretrain(cfg: PretrainConfig | str | Path | None = None, out_dir: str | Path | None = None,
             overrides: list[str] | None = None, *, force_new: bool = False,
             callback=None) -> dict:
    """Pretrain one configuration into `out_dir`; returns the summary dict.

    cfg: a PretrainConfig, or a YAML path; overrides: dotted `key=value` strings applied on top.
    Re-running with the same out_dir resumes from out_dir/checkpoints/last.pt. callback(row) is
    called on rank 0 with every metrics row (notebooks use it for live plots)."""
    if cfg is None or isinstance(cfg, (str, Path)):
        cfg = load_config(cfg, overrides)
    elif overrides:
        cfg = from_dict(apply_overrides(to_dict(cfg), overrides))
    out = Path(out_dir or f"experiments/runs/{cfg.run.name}")

    device = resolve_device(cfg.run.device)
    created = du.setup(device.type)
    try:
        # rank 0 alone writes the folder, so it alone holds the lock
        with run_lock(out) if du.rank() == 0 else contextlib.nullcontext():
            return _pretrain(cfg, out, device, force_new, callback)
    finally:
        du.cleanup(created)


def _pretrain(cfg: PretrainConfig, out: Path, device: torch.device, force_new: bool,
              callback) -> dict:
    rank, world = du.rank(), du.world_size()
    main = rank == 0
    if cfg.run.num_threads:
        torch.set_num_threads(cfg.run.num_threads)
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    decision = check_run_dir(out, cfg, force_new) if main else None
    decision = du.broadcast_object(decision)

    # Build everything before touching the folder: a bad dataset root or model shape must not
    # leave a half-written run behind.
    torch.manual_seed(cfg.run.seed)
    train_set = build_dataset(cfg.data, cfg.model.img_size, "train")
    if isinstance(train_set, FolderDataset):
        train_set.check_readable()
    accum = cfg.optim.accum_steps
    global_batch = cfg.optim.batch_size * world * accum
    try:
        spe = steps_per_epoch(len(train_set), cfg.optim.batch_size * accum, world)
    except ValueError:
        raise ConfigError(
            f"optim.batch_size={cfg.optim.batch_size}: the {cfg.data.dataset} training split has "
            f"only {len(train_set)} images, fewer than one batch (x {accum} accumulation steps x "
            f"{world} processes)"
            + (not_images(Path(cfg.data.root)) if cfg.data.dataset == "folder" else "")) from None
    sched = schedules.Schedule(cfg, spe, global_batch)

    precision = resolve_precision(cfg.run.precision, device)
    if main:
        print(f"precision: {precision.name} on {device.type} ({precision.reason})")
        warn_if_emulated(precision, device)

    ckpt_dir = out / "checkpoints"
    resume_path, ckpt = (find_resume_checkpoint(ckpt_dir, verbose=main) if decision == "resume"
                         else (None, None))
    model = PLAML.from_config(cfg)
    if ckpt is None:
        # before the folder is touched: a bad file leaves nothing behind
        if cfg.model.init_from:
            init_from(model, cfg.model.init_from)
        for role in model.teachers:
            if getattr(cfg.teachers, role).init_from:
                init_teacher_from(model, role, getattr(cfg.teachers, role).init_from)
    model = model.to(device)
    model.set_attention(device, precision.name)
    optimizer = make_optimizer(model, cfg, sched.base_lr, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.uses_scaler)

    start_step = 0
    counters = {"skipped_steps": 0, "bad_images": 0}
    if ckpt is not None:
        load_model_state(model, ckpt["model"], resume_path)
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt["scaler"]:  # empty when the run was not in fp16 (e.g. resumed elsewhere)
                scaler.load_state_dict(ckpt["scaler"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{resume_path}: optimiser state does not fit ({e})") from None
        old = ckpt["config"]["optim"]
        old_global = old["batch_size"] * old["accum_steps"] * int(ckpt.get("world_size", 1))
        if old_global != global_batch:
            raise RunError(
                f"{resume_path}: written with a global batch of {old_global} (optim.batch_size x "
                f"processes x optim.accum_steps), this run has {global_batch}; keep it equal to "
                "resume, or use another --out")
        start_step = int(ckpt["step"])
        counters.update(ckpt.get("counters", {}))
        set_rng_state(ckpt["rng"])
        del ckpt

    if main:
        try:
            prepare_folder(cfg, out, decision, start_step)
        except OSError as e:
            raise RunError(storage_error(e, out)) from None
    du.barrier()

    step_module: torch.nn.Module = model
    if world > 1:
        step_module = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                          broadcast_buffers=False)
    if cfg.run.compile:
        step_module = try_compile(step_module)

    last = ckpt_dir / "last.pt"
    state = TrainState(
        cfg, model, optimizer, sched, device=device, precision=precision, scaler=scaler,
        step_module=step_module, step=start_step, counters=counters, rank=rank, world=world,
        # under a GradScaler (fp16) an overflowing gradient is routine: the scaler skips it
        guard=FiniteGuard(cfg.run.on_nonfinite, not precision.uses_scaler, device, last,
                          start_step if last.exists() else None))
    try:
        try:
            return _loop(state, train_set, out, callback)
        except OSError as e:  # a full disk, a folder made read-only, a quota: one line
            if isinstance(e, FileNotFoundError):
                raise
            raise RunError(storage_error(e, out)) from None
    except (ConfigError, CheckpointError, DatasetError, RunError):
        # A bad input found once training started (e.g. a corrupt image with
        # data.on_bad_image=error): a new run that never reached a checkpoint leaves nothing.
        if main and decision != "resume" and not (ckpt_dir / "last.pt").exists():
            for name in RUN_FILES:
                path = out / name
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink()
            if out.exists() and not any(out.iterdir()):
                out.rmdir()
        raise


# --- the loop: train_step and the books around it --------------------------------------------

def _micro_batches(state: TrainState, train_set) -> Iterator[dict]:
    """This rank's loader batches from state.step on, epoch after epoch: accum_steps of them a
    step, each epoch in the order (run.seed, epoch) gives (its leftover batches dropped)."""
    cfg, spe, accum = state.cfg, state.sched.steps_per_epoch, state.cfg.optim.accum_steps
    epoch, start = divmod(state.step, spe)
    while True:
        yield from islice(epoch_batches(train_set, cfg.optim.batch_size, seed=cfg.run.seed,
                                        epoch=epoch, rank=state.rank, world_size=state.world,
                                        start_step=start * accum,
                                        num_workers=cfg.data.num_workers, device=state.device),
                          (spe - start) * accum)
        epoch, start = epoch + 1, 0


class _Interval:
    """One log interval: the sums of its applied steps' loss parts (on the device, so no host
    sync until its row is written), its step count and start time."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = {k: torch.zeros((), device=self.device) for k in LOSS_KEYS}
        self.applied = self.steps = 0
        self.stats: dict = {}
        self.t0 = time.perf_counter()

    def add(self, result: StepResult) -> None:
        if result.applied:
            for k, v in result.losses.items():
                self.sums[k] += v
            self.applied += 1
        self.steps += 1
        self.stats = result.stats

    def row(self, state: TrainState) -> dict:
        """The metrics.jsonl row of the interval ending at state.step."""
        cfg, sched, step = state.cfg, state.sched, state.step
        dt = time.perf_counter() - self.t0
        row = {"step": step, "epoch": round(step / sched.steps_per_epoch, 4)}
        for k in LOSS_KEYS:  # None when every step of the interval was skipped
            row[k] = float(self.sums[k] / self.applied) if self.applied else None
        row.update({k: float(v) for k, v in self.stats.items()})
        row.update(lr=sched.lr(step - 1), teacher_temp=sched.teacher_temp(step - 1),
                   imgs_per_s=round(self.steps * cfg.optim.batch_size * cfg.optim.accum_steps
                                    * state.world / max(dt, 1e-9), 2),
                   precision=state.precision.name)
        for name, m in sched.momenta(step - 1).items():
            row[f"momentum_{name}"] = m
        row.update(state.counters)
        return row


class _RunLog:
    """Rank 0's outputs while a run trains: metrics.jsonl, the collapse warnings, the progress
    bar, the caller's callback(row) and the TensorBoard sink."""

    def __init__(self, state: TrainState, out: Path, callback):
        cfg, end = state.cfg, state.sched.end
        self.metrics, self.callback = out / "metrics.jsonl", callback
        self.monitor = CollapseMonitor(cfg.pl.num_prototypes, rows_per_step(cfg))
        self.bar = tqdm(total=end, initial=state.step, desc=f"pretrain {cfg.run.name}",
                        unit="step", dynamic_ncols=True) if (
            cfg.run.progress and end > state.step) else None
        self.sink = TensorBoardSink(out / "tensorboard", cfg, state.step) if (
            cfg.run.tensorboard and end > state.step) else None

    def write(self, row: dict, state: TrainState) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.monitor.warn(row)
        if self.bar and row["loss"] is not None:
            self.bar.set_postfix(loss=f"{row['loss']:.4f}")
        if self.callback:
            self.callback(row)
        if self.sink:
            self.sink.log(row, state.model, state.cfg)


def _save(state: TrainState, ckpt_dir: Path) -> None:
    """Rank 0, at a checkpoint step: last.pt (never with a non-finite weight) and, every
    run.ckpt_every steps, a kept copy (run.keep_ckpts of them)."""
    cfg, step = state.cfg, state.step
    state.guard.check_weights(state.model, step)
    save_checkpoint(ckpt_dir / "last.pt", cfg, state.model, state.optimizer, state.scaler, step,
                    step / state.sched.steps_per_epoch, state.counters)
    state.guard.saved_step = step
    if cfg.run.keep_ckpts and cfg.run.ckpt_every and step % cfg.run.ckpt_every == 0:
        copy_atomic(ckpt_dir / "last.pt", ckpt_dir / f"step_{step:07d}.pt")
        prune_periodic(ckpt_dir, cfg.run.keep_ckpts)


def _loop(state: TrainState, train_set, out: Path, callback) -> dict:
    """train_step until sched.end, and the books: a metrics row every run.log_every steps, a
    checkpoint every run.ckpt_every, the summary at the end."""
    cfg, end = state.cfg, state.sched.end
    accum, log_every, ckpt_every = cfg.optim.accum_steps, cfg.run.log_every, cfg.run.ckpt_every
    log = _RunLog(state, out, callback) if state.rank == 0 else None
    interval = _Interval(state.device)
    batches = _micro_batches(state, train_set)
    last_row: dict = {}
    state.model.train()
    while state.step < end:
        # the collapse statistics are taken on the step that ends a log interval only
        monitor = (state.step + 1) % log_every == 0 or state.step + 1 == end
        interval.add(train_step(state, islice(batches, accum), monitor=monitor))
        step = state.step
        if log and log.bar:
            log.bar.update(1)

        is_log = step % log_every == 0 or step == end
        is_ckpt = (ckpt_every and step % ckpt_every == 0) or step == end
        if is_log or is_ckpt:
            state.guard.raise_if_bad()
        if is_log:
            last_row = interval.row(state)
            # per-log-step extras join last_row here, before it is written
            if state.rank == 0 and cfg.run.knn_every and step % cfg.run.knn_every == 0:
                last_row.update(_knn_during_training(state.model, cfg, state.device))
            if log:
                log.write(last_row, state)
            interval.reset()
        if is_ckpt and state.rank == 0:
            _save(state, out / "checkpoints")
    if log and log.bar:
        log.bar.close()
    du.barrier()
    summary = _summary(state, out, last_row)
    if log and log.sink:  # the run's config against its final numbers, for the HParams tab
        log.sink.hparams(cfg, summary)
        log.sink.close()
    return summary


def _summary(state: TrainState, out: Path, last_row: dict) -> dict:
    """The run's summary.json (rank 0 writes it; every rank returns it): where it stopped, the
    last logged loss parts, the counters and the end-of-run evaluation."""
    cfg, sched, step, main = state.cfg, state.sched, state.step, state.rank == 0
    summary_path = out / "summary.json"
    if not last_row:  # nothing ran (already complete): keep what the finished run wrote
        rows = read_metrics(out) if main else []
        if summary_path.exists() and main:
            return json.loads(summary_path.read_text())
        last_row = rows[-1] if rows else {}
    summary = {"run": str(out), "steps": step, "total_steps": sched.total,
               "epochs": round(step / sched.steps_per_epoch, 4),
               "complete": step >= sched.total, "variant": variant_name(cfg),
               "precision": state.precision.name, "precision_reason": state.precision.reason}
    summary.update({k: last_row.get(k) for k in LOSS_KEYS})
    summary.update(state.counters)
    # end-of-run evaluation: rank 0 alone
    if cfg.run.eval_knn and main:
        state.model.eval()
        # val: training-time scores choose settings; test is for a table (plaml-lab eval)
        summary.update(knn_eval(state.model.student.encoder, cfg, device=state.device,
                                split="val"), knn_split="val")
    if main:
        write_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
    return summary


def _knn_during_training(model, cfg, device: torch.device) -> dict:
    """kNN top-1 of the student's encoder now (run.knn_every), as knn_eval scores the end of the
    run. The RNG streams are forked so that a run with the probe trains exactly as one without."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model.eval()
        try:
            return knn_eval(model.student.encoder, cfg, device=device)
        finally:
            model.train()

