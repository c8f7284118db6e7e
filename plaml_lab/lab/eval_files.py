"""A run folder's evaluation files, one per held-out split: eval.json (val, as before splits
were named) and eval_test.json, so a table reported on test never overwrites the val scores
that settings were chosen from. The ablation runner reuses a file with the same probes, step
and split."""

from __future__ import annotations

import json
from pathlib import Path

from plaml_lab.runs.checkpoint import write_atomic
from plaml_lab.runs.folder import read_json


def eval_file(out: Path, split: str) -> Path:
    """A run's evaluation on `split`: eval.json on val (as before splits were named), else
    eval_<split>.json, so a table on test never overwrites the val scores settings came from."""
    return out / ("eval.json" if split == "val" else f"eval_{split}.json")


def cached_eval(out: Path, probes: list[str], step: int | None = None,
                 split: str = "val") -> dict | None:
    """The evaluation file of `split` if it holds the same probes (and, for a pretrained run,
    the same step); one written before evaluations named their split counts as val."""
    result = read_json(eval_file(out, split))
    if not isinstance(result, dict):
        return None
    if result.get("probes") != list(probes) or (step is not None and result.get("step") != step):
        return None
    if result.get("split", "val") != split:
        return None
    return result


def save_eval(out: Path, result: dict, split: str = "val") -> None:
    write_atomic(eval_file(out, split), json.dumps(result, indent=2) + "\n")
