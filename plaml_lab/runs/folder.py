"""Loading a run (folder or checkpoint) back into a model, with its config and metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from plaml_lab.runs.checkpoint import CheckpointError, load_checkpoint, load_model_state
from plaml_lab.config import PretrainConfig, apply_overrides, from_dict, load_config, to_dict
from plaml_lab.method import PLAML


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


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Rows of run_dir/metrics.jsonl, up to the first unreadable line (one cut by a kill:
    everything after it is logged again on resume)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def resolve_checkpoint(path: str | Path) -> Path:
    path = Path(path)
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
    model = PLAML(cfg)
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
    model = PLAML(cfg)
    model.eval()
    return Run(cfg=cfg, model=model)
