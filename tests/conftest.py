"""Shared fixtures: the quick preset and small runs made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "experiments" / "configs" / "quick.yaml")
LAB = str(ROOT / "experiments" / "configs" / "lab.yaml")

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def quick_yaml() -> str:
    return QUICK


@pytest.fixture
def quick_cfg():
    from plaml_lab.config import load_config
    return load_config(QUICK)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> Path:
    """A short dual-teacher run on the quick preset (shared, read-only for tests)."""
    from plaml_lab.train import pretrain
    out = tmp_path_factory.mktemp("runs") / "quick_dual"
    pretrain(QUICK, out, ["run.max_steps=12", "run.ckpt_every=4", "run.keep_ckpts=3"])
    return out
