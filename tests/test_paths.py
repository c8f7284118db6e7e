"""Paths as users type them (plaml_lab.paths): a relative run path means the current folder,
then the repo root, for every loader and dashboard; presets by name; a grid's relative preset
next to the grid, then among the shipped presets."""

from __future__ import annotations

import shutil

import pytest

from plaml_lab import paths
from plaml_lab.cli import main
from plaml_lab.config import load_config, to_dict
from plaml_lab.lab.grids import load_grid
from plaml_lab.runs import load_run
from plaml_lab.viz import compare_runs, mask_explorer, teacher_compare, training_monitor


@pytest.fixture
def project(tmp_path, quick_run, monkeypatch):
    """A checkout-like folder (pyproject.toml) holding a run at experiments/runs/r, with the
    current directory in its notebooks/ (where a notebook's kernel runs)."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = \"x\"\n")
    shutil.copytree(quick_run, root / "experiments" / "runs" / "r")
    monkeypatch.chdir(root / "notebooks")
    return root


def test_every_dashboard_and_loader_finds_a_repo_relative_run_from_a_subfolder(project):
    rel = "experiments/runs/r"
    assert paths.user_path(rel) == project / rel
    assert load_run(rel).path == project / rel
    assert load_run(f"{rel}/checkpoints/last.pt").step == load_run(rel).step
    for app in (training_monitor(rel, auto_refresh=False), teacher_compare(rel),
                mask_explorer(rel), compare_runs("experiments/runs", auto_refresh=False)):
        assert not app.state.get("unavailable"), (type(app).__name__, app.state["unavailable"])
        assert not app.state.get("error"), (type(app).__name__, app.state["error"])


def test_the_current_folder_comes_before_the_repo_root(project):
    here = project / "notebooks" / "experiments" / "runs" / "r"
    shutil.copytree(project / "experiments" / "runs" / "r", here)
    assert paths.user_path("experiments/runs/r") == here
    assert training_monitor("experiments/runs/r", auto_refresh=False).dir == here


def test_a_missing_run_path_is_named_as_typed(project):
    assert str(paths.user_path("experiments/runs/none")) == "experiments/runs/none"
    assert "no run folder" in training_monitor("experiments/runs/none").state["unavailable"]


def test_config_takes_a_preset_name_or_a_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # an empty folder: names resolve to the shipped presets
    assert to_dict(load_config("quick")) == to_dict(load_config(paths.shipped_file("quick.yaml")))
    assert to_dict(load_config("experiments/configs/quick.yaml")) == to_dict(load_config("quick"))
    assert main(["pretrain", "--config", "nope", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config file not found: nope") and "demo, lab, quick" in err
    assert not (tmp_path / "r").exists()


def test_a_grid_finds_its_preset_beside_it_then_among_the_shipped_ones(tmp_path, monkeypatch):
    grids, elsewhere = tmp_path / "grids", tmp_path / "elsewhere"
    grids.mkdir()
    (elsewhere / "grids").mkdir(parents=True)
    (grids / "mine.yaml").write_text("model: {depth: 1}\n")
    (elsewhere / "mine.yaml").write_text("model: {depth: 3}\n")  # the cwd's: not the grid's
    (grids / "a.yaml").write_text("config: mine.yaml\npoints: {p: [mask.ratio=0.5]}\n")
    (grids / "b.yaml").write_text("config: quick\npoints: {p: [mask.ratio=0.5]}\n")
    (grids / "c.yaml").write_text("config: experiments/configs/quick.yaml\n"
                                  "points: {p: [mask.ratio=0.5]}\n")
    monkeypatch.chdir(elsewhere)
    assert load_grid(grids / "a.yaml").config == grids / "mine.yaml"
    assert load_grid(grids / "b.yaml").config == paths.shipped_file("quick")
    assert load_grid(grids / "c.yaml").config == paths.shipped_file("quick")
    assert load_grid("experiments/grids/quick_variants.yaml").config == paths.shipped_file("quick")
