"""Run files and exports are readable by others as the user's umask allows: 0644 under umask
022 (a plain open()'s mode), not the 0600 of a temporary file."""

from __future__ import annotations

import os
import stat

import pytest

from plaml_lab.export import export_timm
from plaml_lab.train import pretrain


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring the previous one after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_and_exports_take_their_mode_from_the_umask(tmp_path, quick_yaml, umask,
                                                              mask, mode):
    umask(mask)
    run = tmp_path / "run"
    pretrain(quick_yaml, run, ["run.max_steps=2", "run.ckpt_every=1", "run.eval_knn=false",
                               "run.num_threads=1"])
    out = export_timm(run, tmp_path / "encoder.safetensors")
    files = [run / "config.yaml", run / "metrics.jsonl", run / "summary.json",
             run / "checkpoints" / "last.pt", *sorted((run / "checkpoints").glob("step_*.pt")),
             out]
    modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {oct(mode)}, modes
