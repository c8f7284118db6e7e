"""A run's folder when pretraining starts and writes: which checkpoint a resume starts from,
setting the folder up, writing a checkpoint, and a failed write as one line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from plaml_lab.config import PretrainConfig, to_dict
from plaml_lab.errors import CheckpointError
from plaml_lab.runs import distributed as du
from plaml_lab.runs.checkpoint import (FORMAT, VERSION, load_checkpoint, nonfinite_tensors,
                                       remove_stale_temporaries, rng_state, save_atomic,
                                       write_atomic)
from plaml_lab.runs.folder import dated_aside, truncate_metrics


def find_resume_checkpoint(ckpt_dir: Path, verbose: bool = True) -> tuple[Path | None, dict | None]:
    """The newest checkpoint of a run that loads with finite weights: last.pt, else the newest
    step_*.pt (saying on stderr which, and why not last.pt). (None, None) when the run never
    wrote one; the first problem as a CheckpointError when none of them loads."""
    candidates = [ckpt_dir / "last.pt", *sorted(ckpt_dir.glob("step_*.pt"), reverse=True)]
    problems: list[str] = []
    first_error = None
    for path in candidates:
        if not path.exists():
            if path.name == "last.pt" and len(candidates) > 1:
                problems.append("last.pt is missing")
            continue
        try:
            ckpt = load_checkpoint(path, map_location="cpu")
            bad = nonfinite_tensors(ckpt["model"])
            if bad:
                raise CheckpointError(f"{path}: holds non-finite weights ({len(bad)} tensors)")
        except CheckpointError as e:
            first_error = first_error or e
            problems.append(str(e))
            continue
        if problems and verbose:
            print(f"resuming from {path} (step {int(ckpt['step'])}): {'; '.join(problems)}",
                  file=sys.stderr)
        return path, ckpt
    if first_error is not None:
        raise first_error
    return None, None


def prepare_folder(cfg: PretrainConfig, out: Path, decision: str, start_step: int) -> None:
    """Rank 0, after everything is built: set a run aside, (re)write config.yaml, keep the
    metrics up to the resumed step, remove what killed writes left behind."""
    if decision == "aside":
        aside = dated_aside(out)
        shutil.move(str(out), str(aside))
        print(f"moved the previous run aside to {aside}")
    ckpt_dir = out / "checkpoints"
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir.mkdir(exist_ok=True)
    # this process holds the run lock: any temporary here is from a killed writer
    remove_stale_temporaries(out)
    remove_stale_temporaries(ckpt_dir)
    # atomic: a full disk must not truncate the config a resume compares against
    write_atomic(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    metrics_path = out / "metrics.jsonl"
    if start_step:
        truncate_metrics(metrics_path, start_step)
    elif metrics_path.exists():
        metrics_path.unlink()


def storage_error(e: OSError, out: Path) -> str:
    """One line for a failed write (full disk, read-only folder): the path, the reason, and the
    checkpoint a re-run resumes from."""
    where = e.filename or out
    last = out / "checkpoints" / "last.pt"
    try:
        kept = f"the last good checkpoint is {last} (step {int(load_checkpoint(last)['step'])})"
    except (CheckpointError, OSError):
        kept = "no checkpoint was written yet"
    return f"{where}: cannot write ({e.strerror or e}); {kept}"


def save_checkpoint(path: Path, cfg, model, optimizer, scaler, step, epoch, counters) -> None:
    save_atomic({
        "format": FORMAT, "version": VERSION, "config": to_dict(cfg), "step": step,
        "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(), "rng": rng_state(), "counters": dict(counters),
        "world_size": du.world_size(),
    }, path)
