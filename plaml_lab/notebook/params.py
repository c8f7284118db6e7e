"""Notebook parameters -> plaml_lab calls: paths, the SMOKE preset, the run a notebook trains,
opens or evaluates.

Notebooks run with cwd = notebooks/ under JupyterLab, papermill and nbval, but their parameters
name files the way the CLI does (`experiments/configs/lab.yaml`, `experiments/runs/demo`): a
path that exists is found as every loader finds it (the current directory, then the repo root,
then the package's own copy of a preset, grid or notebook: plaml_lab.paths); a folder to write
(out_dir) is relative to the repo root (the folder holding pyproject.toml).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import yaml

from plaml_lab.config import load_config
from plaml_lab.paths import find_file, repo_root, shipped_file, user_path
from plaml_lab.evaluate import evaluate
from plaml_lab.runs import load_run, random_init_run
from plaml_lab.runs.checkpoint import CheckpointError
from plaml_lab.train import pretrain

QUICK = "experiments/configs/quick.yaml"
PRETRAIN_OUT = "experiments/runs/nb_pretrain"  # 01_pretrain's default run folder (04 reads it)

# SMOKE (CI): the quick preset cut to a few optimiser steps and small evaluation sets, so a
# notebook runs in seconds; applied before the notebook's own overrides (those still win).
# One thread: the checked outputs then do not depend on the machine's core count.
SMOKE_OVERRIDES = [
    "run.device=cpu", "run.max_steps=6", "run.log_every=1", "run.ckpt_every=0",
    "run.progress=false", "run.num_threads=1",
    "data.num_train=256", "data.num_val=128", "eval.max_train=256", "eval.max_val=128",
]


def smoke_overrides() -> list[str]:
    """SMOKE_OVERRIDES, plus run.precision=<PLAML_SMOKE_PRECISION> when that is set: CI runs
    the notebooks once more in bf16 on a CPU without native bf16, where auto means fp32
    (tools/test_other_class.sh)."""
    forced = os.environ.get("PLAML_SMOKE_PRECISION", "")
    return SMOKE_OVERRIDES + ([f"run.precision={forced}"] if forced else [])


def repo_path(path: str | Path | None) -> Path | None:
    """An absolute path: an existing file or folder where plaml_lab.paths finds it (current
    directory, repo root, for a file name the package's copy), else relative to the repo
    root (a folder to be written)."""
    if path is None or str(path) == "":
        return None
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    found = user_path(path)
    if found.is_absolute():
        return found
    return (shipped_file(path) if path.suffix else None) or repo_root() / path


def shown_path(path: str | Path) -> str:
    """`path` relative to the repo root when inside it (what a notebook prints)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(repo_root()))
    except ValueError:
        return str(p)


def as_list(value) -> list[str]:
    """A list parameter as papermill may deliver it: a list, or a string (`-p overrides '[..]'`
    passes the text): YAML/JSON list text, or whitespace-separated items; None/"" -> []."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    try:
        parsed = yaml.safe_load(str(value))
    except yaml.YAMLError:
        parsed = None
    if isinstance(parsed, list):
        return [str(v) for v in parsed]
    return str(value).replace(",", " ").split()


def settings(config: str | None, overrides: list[str] | str | None, smoke: bool
             ) -> tuple[str | None, list[str]]:
    """(config path, overrides) a notebook hands to plaml_lab: with smoke, the quick preset and
    SMOKE_OVERRIDES come first and the notebook's own overrides are applied after them, and
    torch is pinned to one thread."""
    overrides = as_list(overrides)
    if smoke:
        torch.set_num_threads(1)  # as run.num_threads=1: checked outputs match on any CPU count
        return str(find_file(QUICK, "config file")), smoke_overrides() + overrides
    return (str(find_file(config, "config file")) if config else None), overrides


def run_dir(out_dir: str | Path, smoke: bool) -> Path:
    """Where a notebook writes its run. Under SMOKE a relative out_dir (a notebook default) goes
    to a fresh temporary folder: CI runs always train from scratch and never collide with (or
    resume) the lab run of the same name. Absolute paths (sweeps, tests) are kept."""
    path = Path(out_dir).expanduser()
    if smoke and not path.is_absolute():
        return Path(tempfile.mkdtemp(prefix="plaml_smoke_")) / path.name
    return repo_path(path)


def search_file(search: str, smoke: bool) -> Path:
    """The search file a notebook runs (plaml-lab search): the file itself, or under SMOKE a copy
    in a fresh temporary folder with the same keys and ranges cut to 3 trials of the SMOKE run
    (the quick preset), scored on the final loss with the pruner off: 6 steps log no kNN."""
    path = find_file(search, "search file", kind="searches")
    if not smoke:
        return path
    data = yaml.safe_load(path.read_text())
    data.update(config=str(find_file(QUICK, "config file")), overrides=smoke_overrides(),
                objective={"metric": "loss", "direction": "minimize"}, pruner="none",
                trials=3, seeds=[0], best=2)
    copy = Path(tempfile.mkdtemp(prefix="plaml_smoke_")) / path.name
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def smoke_run(overrides: list[str] | None = None) -> Path:
    """A few-step quick run (checkpoints every 2 steps, for the teacher comparison) in a fresh
    temporary folder: what 03_dashboards and 04_evaluate open under SMOKE."""

    out = Path(tempfile.mkdtemp(prefix="plaml_smoke_")) / "run"
    pretrain(find_file(QUICK, "config file"), out,
             smoke_overrides() + ["run.ckpt_every=2", "run.keep_ckpts=3"] + list(overrides or []))
    return out


def eval_target(run: str, smoke: bool) -> Path | None:
    """04_evaluate's `run` parameter -> the run to evaluate: under SMOKE a relative (default) or
    empty one becomes a fresh smoke_run(); otherwise the repo-relative path, which must exist,
    except 01_pretrain's default run folder: while that one has not been trained, and for an
    empty `run`, None (only the random-init baseline is evaluated; a note says so)."""
    if smoke and (not run or not Path(run).is_absolute()):
        return smoke_run()
    if not run:
        return None
    path = repo_path(run)
    if path.exists():
        return path
    if path == repo_path(PRETRAIN_OUT):
        print(f"note: {PRETRAIN_OUT} does not exist yet (01_pretrain writes it): evaluating the "
              "random-init baseline only")
        return None
    raise CheckpointError(f"run={run!r}: no such run folder or checkpoint (train one with "
                          "01_pretrain or `plaml-lab pretrain`)")


def evaluate_against_baseline(run: Path | None, probes: list[str] | str,
                              encoder: str = "student", overrides: list[str] | str | None = None,
                              config: str | None = None
                              ) -> dict[str, dict]:
    """{'pretrained': evaluate(run), 'random init': the same probes on a random-init encoder of
    the same config} (only the latter, from `config`, when run is None)."""
    probes, overrides = as_list(probes), as_list(overrides)
    out = {}
    if run is not None:
        out["pretrained"] = evaluate(run, probes, encoder=encoder, overrides=overrides)
        out["random init"] = evaluate(run, probes, encoder=encoder, random_init=True,
                                      overrides=overrides)
    else:
        out["random init"] = evaluate(None, probes, encoder=encoder, random_init=True,
                                      config=config, overrides=overrides)
    return out


def load(config: str | None, overrides: list[str] | None):
    """A validated PretrainConfig from notebook parameters (paths resolved as above)."""
    return load_config(config or None, overrides)


def open_run(run: str | None, config: str | None, overrides: list[str] | None):
    """A notebook's `run` parameter -> Run: the run folder / checkpoint when given, else a
    random-init model of `config` + `overrides` (seeded by run.seed)."""
    if run:
        return load_run(run)
    return random_init_run(load(config, overrides))
