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
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from plaml_lab import schedules
from plaml_lab.collapse import CollapseMonitor, rows_per_step
from plaml_lab.config import (PretrainConfig, apply_overrides, from_dict, load_config, save_yaml,
                              to_dict)
from plaml_lab.data import build_dataset, epoch_batches, make_views, steps_per_epoch
from plaml_lab.errors import (CheckpointError, ConfigError, DatasetError, NonFiniteLossError,
                              RunError)
from plaml_lab.evaluate import knn_eval
from plaml_lab.hardware import (Precision, autocast, resolve_device, resolve_precision, try_compile,
                                warn_if_emulated)
from plaml_lab.method import LOSS_KEYS, MONITOR_KEYS, PLAML
from plaml_lab.optim import clip_gradients, make_optimizer
from plaml_lab.model.masking import sample_noise
from plaml_lab.model.pretrained import init_from, init_teacher_from
from plaml_lab.runs import distributed as du, read_metrics
from plaml_lab.runs.checkpoint import (FORMAT, VERSION, load_checkpoint, load_model_state,
                                       rng_state, save_atomic, set_rng_state, write_atomic)
from plaml_lab.runs.lock import run_lock
from plaml_lab.runs.tensorboard import TensorBoardSink
from plaml_lab.runs.folder import (RUN_FILES, check_run_dir, dated_aside, prune_periodic,
                                   truncate_metrics)
from plaml_lab.variants import variant_name

# --- the run folder ---------------------------------------------------------------------------


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
    accum = cfg.optim.accum_steps
    global_batch = cfg.optim.batch_size * world * accum
    try:
        spe = steps_per_epoch(len(train_set), cfg.optim.batch_size * accum, world)
    except ValueError:
        raise ConfigError(
            f"optim.batch_size={cfg.optim.batch_size}: the {cfg.data.dataset} training split has "
            f"only {len(train_set)} images, fewer than one batch (x {accum} accumulation steps x "
            f"{world} processes)") from None
    sched = schedules.Schedule(cfg, spe, global_batch)

    precision = resolve_precision(cfg.run.precision, device)
    if main:
        print(f"precision: {precision.name} on {device.type} ({precision.reason})")
        warn_if_emulated(precision, device)

    model = PLAML(cfg)
    if not (decision == "resume" and (out / "checkpoints" / "last.pt").exists()):
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

    ckpt_dir = out / "checkpoints"
    start_step = 0
    counters = {"skipped_steps": 0, "bad_images": 0}
    resume_path = ckpt_dir / "last.pt"
    if decision == "resume" and resume_path.exists():
        ckpt = load_checkpoint(resume_path, map_location="cpu")
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
        if decision == "aside":
            aside = dated_aside(out)
            shutil.move(str(out), str(aside))
            print(f"moved the previous run aside to {aside}")
        out.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(exist_ok=True)
        save_yaml(cfg, out / "config.yaml")
        metrics_path = out / "metrics.jsonl"
        if start_step:
            truncate_metrics(metrics_path, start_step)
        elif metrics_path.exists():
            metrics_path.unlink()
    du.barrier()

    step_module: torch.nn.Module = model
    if world > 1:
        step_module = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                          broadcast_buffers=False)
    if cfg.run.compile:
        step_module = try_compile(step_module)

    try:
        return _loop(cfg, out, device, precision, model, step_module, optimizer, scaler, sched,
                     train_set, start_step, counters, callback)
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


def save_checkpoint(path: Path, cfg, model, optimizer, scaler, step, epoch, counters) -> None:
    save_atomic({
        "format": FORMAT, "version": VERSION, "config": to_dict(cfg), "step": step,
        "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(), "rng": rng_state(), "counters": dict(counters),
        "world_size": du.world_size(),
    }, path)


def _loop(cfg, out, device, precision: Precision, model, step_module, optimizer, scaler, sched,
          train_set, start_step, counters, callback) -> dict:
    rank, world = du.rank(), du.world_size()
    main = rank == 0
    accum = cfg.optim.accum_steps
    spe = sched.steps_per_epoch
    end = sched.end
    metrics_path = out / "metrics.jsonl"
    ckpt_dir = out / "checkpoints"

    bar = None
    if main and cfg.run.progress and end > start_step:
        bar = tqdm(total=end, initial=start_step, desc=f"pretrain {cfg.run.name}", unit="step",
                   dynamic_ncols=True)

    sink = TensorBoardSink(out / "tensorboard", cfg, start_step) if (
        main and cfg.run.tensorboard and end > start_step) else None

    protos = [p for n, p in model.student.named_parameters() if n.endswith("prototypes.weight")]
    params = [p for p in model.student.parameters() if p.requires_grad]
    monitor = CollapseMonitor(cfg.pl.num_prototypes, rows_per_step(cfg))
    model.train()
    sums = {k: torch.zeros((), device=device) for k in LOSS_KEYS}
    n_logged = 0
    # first non-finite step and which parts were bad, kept on the device: no sync per step
    bad_step = torch.full((), -1, dtype=torch.long, device=device)
    bad_parts = torch.zeros(len(LOSS_KEYS), dtype=torch.bool, device=device)
    last_row: dict = {}
    t_log = time.perf_counter()
    steps_since_log = 0
    batches = None
    batches_epoch = -1

    step = start_step
    while step < end:
        epoch = step // spe
        if epoch != batches_epoch:
            batches = epoch_batches(train_set, cfg.optim.batch_size, seed=cfg.run.seed,
                                    epoch=epoch, rank=rank, world_size=world,
                                    start_step=(step % spe) * accum,
                                    num_workers=cfg.data.num_workers, device=device)
            batches = iter(batches)
            batches_epoch = epoch
        lr = sched.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        temp = sched.teacher_temp(step)
        patch_temp = sched.patch_teacher_temp(step)
        # the collapse statistics are taken on the step that ends a log interval only
        watch = (step + 1) % cfg.run.log_every == 0 or step + 1 == end

        out_parts = None
        for micro in range(accum):
            batch = next(batches)
            counters["bad_images"] += int(batch.get("num_bad", 0))
            views, noise = step_randomness(batch["image"], cfg, step, micro, rank, world,
                                           model.student.num_patches)
            sync = contextlib.nullcontext()
            if isinstance(step_module, DDP) and micro < accum - 1:
                sync = step_module.no_sync()
            with sync:
                with autocast(device, precision.name):
                    out_parts = step_module(views, temp, patch_teacher_temp=patch_temp,
                                            noise=noise, monitor=watch)
                scaler.scale(out_parts["loss"] / accum).backward()

        parts = torch.stack([out_parts[k].detach().float() for k in LOSS_KEYS])
        finite = torch.isfinite(parts)
        skipped = False
        if cfg.run.on_nonfinite == "skip":
            # dropping a step needs the answer now: one host sync per step in this mode only;
            # every rank must agree, or their weights would diverge
            ok = finite.all().to(torch.int32)
            if du.is_initialized():
                torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
            skipped = not bool(ok)
        else:
            newly_bad = (~finite.all()) & (bad_step < 0)
            bad_step = torch.where(newly_bad, torch.full_like(bad_step, step), bad_step)
            bad_parts = torch.where(newly_bad, ~finite, bad_parts)

        if skipped:
            optimizer.zero_grad(set_to_none=True)
            counters["skipped_steps"] += 1
        else:
            if cfg.optim.clip_grad > 0:
                scaler.unscale_(optimizer)
                clip_gradients(params, cfg.optim.clip_grad, cfg.optim.clip_mode)
            if step < sched.freeze_protos:
                for p in protos:
                    p.grad = None  # DINO: prototypes stay fixed while the heads settle
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            model.update_teachers(sched.momenta(step))
            for k, v in zip(LOSS_KEYS, parts):
                sums[k] += v
            n_logged += 1
        steps_since_log += 1
        step += 1
        if bar:
            bar.update(1)

        is_log = step % cfg.run.log_every == 0 or step == end
        is_ckpt = (cfg.run.ckpt_every and step % cfg.run.ckpt_every == 0) or step == end
        if is_log or is_ckpt:
            _raise_if_nonfinite(bad_step, bad_parts)
        if is_log:
            dt = time.perf_counter() - t_log
            row = {"step": step, "epoch": round(step / spe, 4)}
            for k in LOSS_KEYS:  # None when every step of the interval was skipped
                row[k] = float(sums[k] / n_logged) if n_logged else None
            row.update({k: float(v) for k, v in out_parts.items() if k in MONITOR_KEYS})
            row.update(lr=lr, teacher_temp=temp,
                       imgs_per_s=round(steps_since_log * cfg.optim.batch_size * accum * world
                                        / max(dt, 1e-9), 2),
                       precision=precision.name)
            for name, m in sched.momenta(step - 1).items():
                row[f"momentum_{name}"] = m
            row.update(counters)
            if main:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                monitor.warn(row)
                if bar and row["loss"] is not None:
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                if callback:
                    callback(row)
                if sink:
                    sink.log(row, model, cfg)
            last_row = row
            sums = {k: torch.zeros((), device=device) for k in LOSS_KEYS}
            n_logged = 0
            t_log = time.perf_counter()
            steps_since_log = 0
        if is_ckpt and main:
            save_checkpoint(ckpt_dir / "last.pt", cfg, model, optimizer, scaler, step,
                            step / spe, counters)
            if cfg.run.keep_ckpts and cfg.run.ckpt_every and step % cfg.run.ckpt_every == 0:
                shutil.copyfile(ckpt_dir / "last.pt", ckpt_dir / f"step_{step:07d}.pt")
                prune_periodic(ckpt_dir, cfg.run.keep_ckpts)
    if bar:
        bar.close()
    if sink:
        sink.close()
    du.barrier()

    summary_path = out / "summary.json"
    if not last_row:  # nothing ran (already complete): keep what the finished run wrote
        rows = read_metrics(out) if main else []
        if summary_path.exists() and main:
            return json.loads(summary_path.read_text())
        last_row = rows[-1] if rows else {}
    summary = {"run": str(out), "steps": step, "total_steps": sched.total,
               "epochs": round(step / spe, 4), "complete": step >= sched.total,
               "variant": variant_name(cfg), "precision": precision.name,
               "precision_reason": precision.reason}
    summary.update({k: last_row.get(k) for k in LOSS_KEYS})
    summary.update(counters)
    if cfg.run.eval_knn and main:
        model.eval()
        # val: training-time scores choose settings; test is for a table (plaml-lab eval)
        summary.update(knn_eval(model.student.encoder, cfg, device=device, split="val"),
                       knn_split="val")
    if main:
        write_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
    return summary


def _raise_if_nonfinite(bad_step: torch.Tensor, bad_parts: torch.Tensor) -> None:
    step = int(bad_step)  # host sync, only at log / checkpoint steps
    if step >= 0:
        parts = [k for k, bad in zip(LOSS_KEYS, bad_parts.tolist()) if bad and k != "loss"]
        raise NonFiniteLossError(
            f"non-finite loss at step {step + 1} ({', '.join(parts) or 'loss'} not finite); the "
            "last good checkpoint is kept (lower optim.blr, set optim.clip_grad, or "
            "run.on_nonfinite=skip)")
