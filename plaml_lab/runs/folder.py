"""A run folder: loading a run (folder or checkpoint) back into a model with its config and
metrics, and what pretraining decides about a folder (new, resume, set aside; which keys may
change on resume) and keeps tidy in it (metrics after a resumed step, old periodic checkpoints)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
import yaml

from plaml_lab.config import (PretrainConfig, apply_overrides, diff, from_dict, load_config,
                              load_yaml, to_dict)
from plaml_lab.errors import ConfigError, RunError
from plaml_lab.method import PLAML
from plaml_lab.method.rules import unread_reasons
from plaml_lab.paths import user_path
from plaml_lab.runs.checkpoint import (CheckpointError, load_checkpoint, load_model_state,
                                       write_atomic)


@dataclass
class Run:
    """A pretrained (or random-init) PLAML with everything needed to inspect it."""

    cfg: PretrainConfig
    model: PLAML
    path: Path | None = None
    step: int = 0
    metrics: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def encoder(self, which: str = "student") -> torch.nn.Module:
        """The student's encoder, or a teacher's ('labelling' | 'reconstruction'); in single
        mode both names give the one teacher."""
        if which == "student":
            return self.model.student.encoder
        teacher = (self.model.labelling_teacher if which == "labelling"
                   else self.model.reconstruction_teacher)
        if teacher is None:
            teacher = next(iter(self.model.teachers.values()), None)
        if teacher is None:
            raise CheckpointError(f"--encoder {which}: this run ({self.cfg.method.target}, "
                                  f"pseudo labels {self.cfg.method.pseudo_labels}) has no teacher")
        return teacher.encoder


def read_json(path: str | Path):
    """A JSON file's content, or None when it is missing or unreadable (a file a killed run
    may have left half-written, or never wrote)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _metrics_lines(path: Path) -> list[tuple[str, dict | None]]:
    """Each line of a metrics.jsonl with its row, None for a line that does not parse."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        lines.append((line, row if isinstance(row, dict) else None))
    return lines


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Rows of run_dir/metrics.jsonl. An unreadable line is skipped with a warning naming it,
    never the rows after it; a cut last line (a kill mid-write) is logged again on resume."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    lines = _metrics_lines(path)
    bad = [i + 1 for i, (_, row) in enumerate(lines) if row is None]
    if bad and bad[-1] == len(lines) and not path.read_bytes().endswith(b"\n"):
        bad.pop()  # the line being written now, or cut by a kill: no news
    if bad:
        warnings.warn(f"{path}: skipped unreadable line{'s' if len(bad) > 1 else ''} "
                      f"{', '.join(map(str, bad[:5]))}{'...' if len(bad) > 5 else ''}",
                      stacklevel=2)
    return [row for _, row in lines if row is not None]


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder or checkpoint as typed (plaml_lab.paths.user_path: the current directory,
    then the repo root) -> the checkpoint file (a folder's checkpoints/last.pt)."""
    path = user_path(path)
    if path.is_dir():
        ckpt = path / "checkpoints" / "last.pt"
        if not ckpt.exists():
            raise CheckpointError(f"{path}: run folder without checkpoints/last.pt")
        return ckpt
    return path


def load_run(path: str | Path, overrides: list[str] | None = None,
             map_location: str | torch.device = "cpu") -> Run:
    """A run folder (its checkpoints/last.pt) or a checkpoint file -> Run (model in eval mode).
    overrides change non-model settings such as data.root or eval.* on the loaded config."""
    ckpt_path = resolve_checkpoint(path)
    ckpt = load_checkpoint(ckpt_path, map_location=map_location)
    try:
        cfg = from_dict(apply_overrides(ckpt["config"], overrides))
    except Exception as e:
        raise CheckpointError(f"{ckpt_path}: its config does not load ({e})") from None
    model = PLAML.from_config(cfg)
    load_model_state(model, ckpt["model"], ckpt_path)
    model.eval()
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else None
    summary = {}
    if run_dir and (run_dir / "summary.json").exists():
        summary = json.loads((run_dir / "summary.json").read_text())
    return Run(cfg=cfg, model=model, path=run_dir, step=int(ckpt["step"]),
               metrics=read_metrics(run_dir) if run_dir else [], summary=summary)


def random_init_run(cfg: PretrainConfig | str | Path | None = None,
                    overrides: list[str] | None = None, seed: int | None = None) -> Run:
    """An untrained PLAML of the given config (the baseline every table shows)."""
    if cfg is None or isinstance(cfg, (str, Path)):
        cfg = load_config(cfg, overrides)
    elif overrides:
        cfg = from_dict(apply_overrides(to_dict(cfg), overrides))
    torch.manual_seed(cfg.run.seed if seed is None else seed)
    model = PLAML.from_config(cfg)
    model.eval()
    return Run(cfg=cfg, model=model)


# --- what pretraining decides about a folder ------------------------------------------------

# Keys that may change between a run and its resumption without changing what is computed.
RESUMABLE_KEYS = ("run.max_steps", "run.ckpt_every", "run.keep_ckpts", "run.log_every",
                  "run.progress", "run.num_threads", "run.eval_knn", "run.name", "run.device",
                  "run.compile", "model.attn_impl", "run.tensorboard", "run.tensorboard_images",
                  # auto re-resolves on the machine that resumes (a bf16 run moved to a CPU
                  # without native bf16 goes on in fp32); the precision of every logged
                  # interval is in metrics.jsonl
                  "run.precision", "data.num_workers", "data.root",
                  "data.download",
                  # changes nothing while every loss is finite; the steps it skipped are
                  # counted (skipped_steps), so a run stopped on a NaN can go on from its
                  # last finite checkpoint
                  "run.on_nonfinite",
                  # per-rank batch and accumulation may change with the number of processes as
                  # long as the global batch stays the same (checked against the checkpoint)
                  "optim.batch_size", "optim.accum_steps")


RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints")


def dated_aside(out: Path) -> Path:
    """A free sibling name for moving a run aside: <name>.old-<date-time>[-n]."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = out.with_name(f"{out.name}.old-{stamp}")
    n = 1
    while target.exists():
        target = out.with_name(f"{out.name}.old-{stamp}-{n}")
        n += 1
    return target


def check_run_dir(out: Path, cfg: PretrainConfig, force_new: bool = False) -> str:
    """Decide what a run in `out` does: 'new', 'resume', or 'aside' (force_new moves an existing
    run to a dated folder). Raises RunError, naming the differing keys, when `out` holds a run of
    another config; nothing is written here."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    if not out.exists():
        return "new"
    ours = [name for name in RUN_FILES if (out / name).exists()]
    if not ours:
        return "new"
    if force_new:
        return "aside"
    cfg_path = out / "config.yaml"
    if not cfg_path.exists():
        raise RunError(f"--out {out}: holds {', '.join(ours)} but no config.yaml; refusing to "
                       "overwrite it (choose another --out, or --force-new to move it aside)")
    try:
        old = to_dict(from_dict(load_yaml(cfg_path)))
    except ConfigError as e:
        raise RunError(f"{cfg_path}: unreadable run config ({e}); use --force-new to move the run "
                       "aside") from None
    changed = run_config_changes(old, cfg)
    if changed:
        raise RunError(f"--out {out}: holds a run with a different config (differs in "
                       f"{shown_keys(changed)}); choose another --out, or --force-new to move the "
                       "old run aside")
    return "resume"


def run_config_changes(old: dict, cfg: PretrainConfig) -> list[str]:
    """The keys in which a run's config `old` (a full config dict) differs from `cfg` so that
    resuming it as `cfg` would train another run."""
    # finetune.* is read only by `plaml-lab finetune`, never by pretraining; a key the variant
    # never reads (teachers.labelling.* of a run without pseudo labels) trains the same run
    changed = [k for k in diff(old, to_dict(cfg))
               if k not in RESUMABLE_KEYS and not k.startswith("finetune.")]
    unread = unread_reasons(cfg, changed)
    return [k for k in changed if k not in unread]


def shown_keys(keys: list[str], most: int = 6) -> str:
    """Dotted keys for a one-line error: the first `most`, then '...'."""
    return ", ".join(keys[:most]) + (", ..." if len(keys) > most else "")


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint we resume from (they will be logged again).
    An unreadable line followed by readable ones is kept as it is, with a warning (the rows
    after it are not lost); unreadable lines at the end are a write cut by a kill: dropped."""
    if not path.exists():
        return
    lines = _metrics_lines(path)
    last_good = max((i for i, (_, row) in enumerate(lines) if row is not None), default=-1)
    # the first row logged after `step`: it and what follows is logged again
    cut = next((i for i, (_, row) in enumerate(lines)
                if row is not None and row.get("step", 0) > step), len(lines))
    kept, corrupt = [], []
    for i, (line, row) in enumerate(lines):
        if row is None and i < min(last_good, cut):
            kept.append(line)
            corrupt.append(i + 1)
        elif row is not None and row.get("step", 0) <= step:
            kept.append(line)
    if corrupt:
        warnings.warn(f"{path}: kept unreadable line{'s' if len(corrupt) > 1 else ''} "
                      f"{', '.join(map(str, corrupt[:5]))} as they are (loaders skip them)",
                      stacklevel=2)
    write_atomic(path, "".join(line + "\n" for line in kept))


def prune_periodic(ckpt_dir: Path, keep: int) -> None:
    """Keep the `keep` newest periodic step_*.pt checkpoints (last.pt is not among them)."""
    periodic = sorted(ckpt_dir.glob("step_*.pt"))
    for p in periodic[:max(0, len(periodic) - keep)]:
        p.unlink(missing_ok=True)


# A random-init baseline (the ablation's random_init rows) keeps its config beside its
# eval.json. What such an evaluation reads: the model it builds, the data it probes, the
# probes' settings and run.seed. The optimiser, the losses, the masks and augmentations of
# training and the teachers' momenta are never used, so a grid that differs only there reuses it.
EVAL_CONFIG = "eval_config.yaml"
_RANDOM_INIT_UNREAD = ("optim.", "loss.", "mask.", "data.aug.", "run.")
_RANDOM_INIT_EMA = (".momentum", ".momentum_end", ".window")


def random_init_changes(old: dict, cfg: PretrainConfig) -> list[str]:
    """The keys, read by a random-init evaluation, in which `old` (a config dict) differs from
    `cfg`."""
    return [k for k in diff(old, to_dict(cfg))
            if k == "run.seed" or not (k.startswith(_RANDOM_INIT_UNREAD)
                                       or (k.startswith("teachers.") and k.endswith(_RANDOM_INIT_EMA)))]


def check_random_init_dir(out: Path, cfg: PretrainConfig) -> bool:
    """True when `out`'s random-init evaluation was of a config that evaluates as `cfg` does;
    False when it kept no config (written before they were kept); RunError naming the keys when
    it was of another config."""
    saved = out / EVAL_CONFIG
    if not saved.exists():
        return False
    changed = random_init_changes(load_yaml(saved), cfg)
    if changed:
        raise RunError(f"{out}: evaluated with another config (differs in {shown_keys(changed)}); "
                       "move it aside or pass another --runs")
    return True


def save_eval_config(out: Path, cfg: PretrainConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / EVAL_CONFIG, yaml.safe_dump(to_dict(cfg), sort_keys=False))
