"""`finetune`: fine-tune a run's encoder (or a random-init one, the baseline) with a
classification head on the run's dataset, in a resumable run folder of its own.

    RUN/finetune/<tag>/   config.yaml (the run's config with its finetune section),
                          source.json (what was fine-tuned), metrics.jsonl, summary.json,
                          checkpoints/last.pt

<tag> is `<encoder | random>-<all | lastK>-f<fraction>`, so different recipes of one run never
share a folder. Re-running the same command resumes from checkpoints/last.pt; everything random
in a step (data order, crops) is drawn from generators seeded by (finetune.seed, step), and the
global RNGs (mixup / cutmix draws, drop path) are saved in checkpoints, so a resumed run repeats
what an uninterrupted one would have done.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from plaml_lab import probes as probes_lib
from plaml_lab.config import diff, from_dict, load_yaml, save_yaml, to_dict
from plaml_lab.data import epoch_batches, steps_per_epoch, stratified_order
from plaml_lab.errors import CheckpointError, ConfigError, RunError
from plaml_lab.evaluate import eval_splits
from plaml_lab.export import encoder_state_dict, timm_kwargs
from plaml_lab.finetune import recipe as R
from plaml_lab.hardware import autocast, resolve_device, resolve_precision, warn_if_emulated
from plaml_lab.method import schedules
from plaml_lab.method.rules import variant_name
from plaml_lab.method.vit import set_attention
from plaml_lab.runs import load_run, random_init_run, read_metrics
from plaml_lab.runs.checkpoint import (FORMAT, VERSION, load_checkpoint, rng_state, save_atomic,
                                       set_rng_state)

ENCODERS = ("student", "labelling", "reconstruction")


def run_tag(encoder: str, random_init: bool, blocks: int, fraction: float) -> str:
    """Folder name of one recipe of a run, e.g. 'student-all-f1', 'random-last2-f0.1'."""
    which = "random" if random_init else encoder
    return f"{which}-{'all' if blocks < 0 else f'last{blocks}'}-f{fraction:g}"


def _default_out(run, checkpoint, tag: str) -> Path:
    base = run.path if run.path is not None else Path(checkpoint).parent
    return Path(base) / "finetune" / tag


def _check_out(out: Path, cfg, source: dict) -> bool:
    """True when `out` holds this same fine-tuning run (resume); RunError naming the
    differences when it holds another one; False when empty or missing."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    cfg_path, src_path = out / "config.yaml", out / "source.json"
    if not cfg_path.exists():
        if out.exists() and any(out.iterdir()):
            raise RunError(f"--out {out}: a non-empty folder without a fine-tuning run; choose "
                           "another --out")
        return False
    try:
        old = to_dict(from_dict(load_yaml(cfg_path)))
        old_src = json.loads(src_path.read_text())
    except (ConfigError, OSError, ValueError) as e:
        raise RunError(f"{out}: unreadable fine-tuning run ({e}); choose another --out") from None
    changed = [k for k in diff(old, to_dict(cfg)) if k.startswith(("finetune.", "model.", "data."))
               and k not in ("data.root", "data.num_workers", "data.download")]
    changed += [f"source.{k}" for k in ("checkpoint", "encoder", "random_init", "pretrain_step")
                if old_src.get(k) != source.get(k)]
    if changed:
        raise RunError(f"--out {out}: holds a fine-tuning run that differs in "
                       f"{', '.join(changed[:6])}; choose another --out")
    return True


def finetune(checkpoint=None, *, config=None, fraction: float | None = None, blocks: int | None = None,
             random_init: bool = False, encoder: str = "student", overrides=None,
             out: str | Path | None = None, device: str | None = None, progress: bool = True,
             stop_after: int | None = None) -> dict:
    """Fine-tune `checkpoint`'s (a run folder or checkpoint file) encoder; returns the result
    dict `plaml-lab finetune` prints (finetune_top1 on the held-out split, ...).

    fraction / blocks set finetune.fraction / finetune.blocks; overrides: dotted key=value
    strings on the run's config (finetune.*, eval.*, run.device, data.root, ...). random_init:
    the same recipe from the untrained encoder of the same shape (seed run.seed: the weights
    pretraining started from); with no checkpoint, `config` (a preset) + overrides give the
    shape, and `out` is required. stop_after: stop (with a checkpoint) after that many optimiser
    steps of this call, as a kill would; used to test resumption."""
    if encoder not in ENCODERS:
        raise ConfigError(f"--encoder {encoder}: choose {', '.join(ENCODERS)}")
    extra = list(overrides or [])
    if fraction is not None:
        extra.append(f"finetune.fraction={fraction}")
    if blocks is not None:
        extra.append(f"finetune.blocks={blocks}")
    if checkpoint is None:
        if not (random_init and config and out):
            raise ConfigError("--checkpoint: required (or random_init with a config and out)")
        run = random_init_run(config, extra)
    else:
        run = load_run(checkpoint, extra)
    cfg, ft = run.cfg, run.cfg.finetune
    if random_init:
        enc_module = random_init_run(cfg).encoder("student")
    else:
        enc_module = run.encoder(encoder)
    where = Path(checkpoint).resolve() if checkpoint is not None else f"random init of {config}"
    source = {"checkpoint": str(where), "encoder": encoder,
              "random_init": bool(random_init), "pretrain_step": 0 if random_init else run.step,
              "variant": variant_name(cfg)}

    train_base, val_base = eval_splits(cfg)
    num_classes = int(getattr(train_base, "num_classes", 0) or 0)
    if num_classes < 2:
        raise ConfigError(f"data.dataset={cfg.data.dataset}: fine-tuning needs a labelled "
                          "dataset (class folders, shapes, digits or cifar10)")
    train_set = R.Subset(train_base, R.label_subset(R.dataset_labels(train_base), ft.fraction,
                                                    ft.seed))
    val_labels = R.dataset_labels(val_base)
    labelled = torch.nonzero(val_labels >= 0).flatten()  # a stratified sample, not the first N
    sample = stratified_order(val_labels[labelled])[:cfg.eval.max_val]
    val_set = R.Subset(val_base, labelled[sample])
    try:
        spe = steps_per_epoch(len(train_set), ft.batch_size)
    except ValueError:
        raise ConfigError(f"finetune.batch_size={ft.batch_size}: only {len(train_set)} labelled "
                          f"training images (finetune.fraction={ft.fraction:g}); lower the batch "
                          "or raise the fraction") from None

    out = Path(out) if out else _default_out(run, checkpoint, run_tag(
        encoder, random_init, ft.blocks, ft.fraction))
    resume = _check_out(out, cfg, source)
    dev = resolve_device(device or cfg.run.device)
    # run.precision as pretraining resolves it (auto: fp32 on a CPU without native bf16, where
    # a batch-128 step of the lab encoder takes 22 s in bf16 against 2 s in fp32); this loop has
    # no grad scaler, so fp16 runs as fp32
    resolved = resolve_precision(cfg.run.precision, dev)
    warn_if_emulated(resolved, dev)  # a run pretrained with a forced bf16: say it is slow here
    precision = "fp32" if resolved.name == "fp16" else resolved.name

    model = R.build_classifier(timm_kwargs(cfg.model), num_classes,
                               encoder_state_dict(enc_module), pool=ft.pool,
                               drop_path=ft.drop_path, seed=ft.seed)
    del run, enc_module
    R.freeze_for_blocks(model, ft.blocks)
    model.to(dev)
    set_attention(model.blocks, cfg.model.attn_impl, dev, precision)
    base_lr = ft.blr * ft.batch_size / 256
    optimizer = R.build_optimizer(model, base_lr, ft.weight_decay, ft.layer_decay)
    mixing = R.build_mixing(ft, num_classes)
    criterion = R.build_criterion(ft, mixing)

    step = 0
    ckpt_path = out / "checkpoints" / "last.pt"
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        try:
            model.load_state_dict(ckpt["model"], strict=True)
            optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{ckpt_path}: does not fit this fine-tuning run "
                                  f"({str(e).splitlines()[0]})") from None
        step = int(ckpt["step"])
        set_rng_state(ckpt["rng"])
    else:  # seed the global RNGs that mixup (numpy) and drop path (torch) draw from
        random.seed(ft.seed)
        np.random.seed(ft.seed)
        torch.manual_seed(ft.seed)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    (out / "source.json").write_text(json.dumps(source, indent=2) + "\n")
    metrics_path = out / "metrics.jsonl"
    rows = [r for r in read_metrics(out) if r.get("step", 0) <= step]
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    total = max(1, round(ft.epochs * spe))
    loop = Trainer(cfg, model, optimizer, mixing, criterion, dev, out, spe, total, base_lr,
                   num_classes, source, precision)
    t0 = time.perf_counter()
    with probes_lib.num_threads(cfg.run.num_threads):
        step = loop.train(train_set, step, progress=progress, stop_after=stop_after)
        if step < total:  # stopped early (stop_after): no evaluation yet
            return {"out": str(out), "steps": step, "total_steps": total, "complete": False}
        summary_path = out / "summary.json"
        if summary_path.exists() and loop.steps_run == 0:
            return json.loads(summary_path.read_text())
        acc = R.accuracy(model, val_set, device=dev, batch_size=cfg.eval.batch_size)
    result = {**source, "out": str(out), "dataset": cfg.data.dataset,
              "finetune_top1": acc["top1"], "finetune_val_loss": acc["loss"],
              "fraction": ft.fraction, "blocks": ft.blocks, "num_train": len(train_set),
              "num_val": acc["num"], "epochs": ft.epochs, "steps": step, "total_steps": total,
              "complete": True, "train_seconds": round(loop.seconds, 2),
              "seconds": round(time.perf_counter() - t0, 2)}
    tmp = summary_path.with_name("summary.json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, summary_path)
    return result


class Trainer:
    """The optimisation loop: warm-up + cosine lr (times each group's layer-decay scale),
    crops, mixup / cutmix, checkpoints and metrics rows."""

    def __init__(self, cfg, model, optimizer, mixing, criterion, device, out, spe, total,
                 base_lr, num_classes, source, precision: str = "fp32"):
        self.cfg, self.ft = cfg, cfg.finetune
        self.model, self.optimizer = model, optimizer
        self.mixing, self.criterion = mixing, criterion
        self.device, self.out, self.spe, self.total = device, out, spe, total
        self.base_lr, self.num_classes, self.source = base_lr, num_classes, source
        self.precision = precision
        self.warmup = round(self.ft.warmup_epochs * spe)
        self.steps_run, self.seconds = 0, 0.0

    def lr(self, step: int) -> float:
        return schedules.warmup_cosine(step, self.warmup, self.total, self.base_lr,
                                       self.ft.min_lr)

    def train(self, train_set, step: int, *, progress: bool, stop_after: int | None) -> int:
        ft, model = self.ft, self.model
        end = self.total if stop_after is None else min(self.total, step + stop_after)
        bar = None
        if progress and end > step:
            bar = tqdm(total=self.total, initial=step, desc="finetune", unit="step",
                       dynamic_ncols=True)
        model.train()
        loss_sum, n, t_log, since = torch.zeros(()), 0, time.perf_counter(), 0
        t_start = time.perf_counter()
        batches, batches_epoch = None, -1
        while step < end:
            epoch = step // self.spe
            if epoch != batches_epoch:
                batches = iter(epoch_batches(train_set, ft.batch_size, seed=ft.seed, epoch=epoch,
                                             start_step=step % self.spe, device=self.device))
                batches_epoch = epoch
            batch = next(batches)
            lr = self.lr(step)
            R.set_lr(self.optimizer, lr)
            g = torch.Generator(device=self.device)
            g.manual_seed((ft.seed * 1_000_003 + step * 7919 + 29) % (2**63 - 1))
            x = R.augment(batch["image"], self.cfg.model.img_size, ft.crop_scale_min, g)
            y = batch["label"]
            if self.mixing is not None:
                x, y = self.mixing(x, y)
            with autocast(self.device, self.precision):
                logits = model(x)
            loss = self.criterion(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach().cpu()
            n += 1
            since += 1
            step += 1
            self.steps_run += 1
            if bar:
                bar.update(1)
            if step % ft.log_every == 0 or step == end:
                if not torch.isfinite(loss_sum):
                    raise RunError(f"non-finite fine-tuning loss at step {step}; lower "
                                   "finetune.blr")
                dt = time.perf_counter() - t_log
                row = {"step": step, "epoch": round(step / self.spe, 4),
                       "loss": float(loss_sum / n), "lr": lr,
                       "imgs_per_s": round(since * ft.batch_size / max(dt, 1e-9), 2)}
                with open(self.out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
                if bar:
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                loss_sum, n, t_log, since = torch.zeros(()), 0, time.perf_counter(), 0
            if (ft.ckpt_every and step % ft.ckpt_every == 0) or step == end:
                self.save(step)
        if bar:
            bar.close()
        self.seconds = time.perf_counter() - t_start
        return step

    def save(self, step: int) -> None:
        save_atomic({"format": FORMAT, "version": VERSION, "kind": "finetune",
                     "config": to_dict(self.cfg), "source": self.source, "step": step,
                     "model": self.model.state_dict(),
                     "optimizer": self.optimizer.state_dict(), "rng": rng_state()},
                    self.out / "checkpoints" / "last.pt")
