"""plaml_lab.lab.grids: the one grid parser of sweep and ablation, on every committed grid and on
malformed ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from plaml_lab.config import ConfigError, load_config
from plaml_lab.lab import ablation as A
from plaml_lab.lab import sweep as S
from plaml_lab.lab.grids import Grid, load_grid
from plaml_lab.method.rules import variant_name

ROOT = Path(__file__).resolve().parents[1]
GRIDS = sorted((ROOT / "experiments" / "grids").glob("*.yaml"))
QUICK = "experiments/configs/quick.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_every_committed_grid_is_found():
    assert len(GRIDS) >= 6, GRIDS


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_every_committed_grid_parses_and_each_point_builds_a_valid_config(path):
    """A typo in a committed grid (a key, a value out of range) fails here, not an hour into a
    run: every point's config is built and validated as the sweep and the ablation runner
    would build it (quick_failing.yaml's `broken` point fails on purpose)."""
    grid = load_grid(path)
    assert grid.points and len({p.name for p in grid.points}) == len(grid.points)
    for p in grid.points:
        overrides = p.run_overrides(grid.overrides)
        if path.name == "quick_failing.yaml" and p.name == "broken":
            with pytest.raises(ConfigError, match="method.target"):
                load_config(grid.config, overrides)
            continue
        load_config(grid.config, overrides)
        load_config(grid.config, A.run_overrides(grid, p.variant, p.seed or 0, []))


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_sweep_and_ablation_give_a_point_the_same_overrides_and_folder_name(path):
    """The two runners read a grid the same way: the ablation's run of (variant, seed) gets the
    sweep point's overrides in the same order (plus its own bookkeeping keys), in a folder of
    the same name."""
    grid = load_grid(path)
    grid.seeds = grid.seeds or [0]
    for p in grid.points:
        ablation = A.run_overrides(grid, p.variant, p.seed, [])
        bookkeeping = {"run.eval_knn=false", f"run.name=ablation-{p.name}"}
        assert [o for o in ablation if o not in bookkeeping] == p.run_overrides(grid.overrides)
        assert A.run_dir("runs", p.variant, p.seed).name == p.name


def test_paper_grid_has_methods_five_variants_three_seeds_and_the_lab_preset():
    grid = load_grid(ROOT / A.DEFAULT_GRID)
    assert grid.seeds == [0, 1, 2] and grid.config == ROOT / A.DEFAULT_PRESET
    assert grid.baseline == "dual"
    names = {n: variant_name(load_config(QUICK, A.run_overrides(grid, n, 0, [])))
             for n in grid.variants}
    assert names == {"mae": "mae", "token": "token", "single": "single", "dual": "dual",
                     "plonly": "plonly"}
    assert [p.name for p in grid.points[:2]] == ["mae-s0", "token-s0"]  # seed-major


def test_points_cross_named_points_with_axes_then_seeds_keeping_override_order(tmp_path):
    grid = load_grid(write(tmp_path, """
overrides: [run.device=cpu]
points:
  mae: [method.target=pixels]
  dual: {method.teachers: dual}
axes:
  mask.ratio: [0.6, 0.75]
seeds: [0, 1]
"""))
    assert [p.name for p in grid.points] == [
        f"{v}__mask.ratio=0.{r}-s{s}" for s in (0, 1) for v in ("mae", "dual") for r in ("6", "75")]
    first = grid.points[0]
    assert (first.variant, first.seed) == ("mae__mask.ratio=0.6", 0)
    assert first.overrides == ["method.target=pixels", "mask.ratio=0.6"]
    assert first.run_overrides(grid.overrides) == ["run.device=cpu", "method.target=pixels",
                                                   "mask.ratio=0.6", "run.seed=0"]


def test_grid_without_seeds_leaves_the_seed_to_the_preset_and_sweep_defaults_the_notebook(tmp_path):
    grid = load_grid(write(tmp_path, "axes:\n  mask.ratio: [0.5, 0.9]\n"))
    assert [(p.name, p.overrides, p.seed) for p in grid.points] == [
        ("mask.ratio=0.5", ["mask.ratio=0.5"], None), ("mask.ratio=0.9", ["mask.ratio=0.9"], None)]
    assert grid.notebook is None and grid.config is None
    assert S.notebook_of(grid) == ROOT / S.DEFAULT_NOTEBOOK


def test_axis_values_are_made_safe_for_folder_names(tmp_path):
    grid = load_grid(write(tmp_path, "axes:\n  data.root: [a/b]\n"))
    assert grid.points[0].name == "data.root=a-b" and grid.points[0].overrides == ["data.root=a/b"]


def test_run_overrides_put_seed_and_name_last():
    grid = Grid(path=Path("g.yaml"), config=None, overrides=["mask.ratio=0.5"],
                variants={"mae": ["method.target=pixels"]})
    ovr = A.run_overrides(grid, "mae", 2, ["run.max_steps=3"])
    assert ovr[-2:] == ["run.seed=2", "run.name=ablation-mae-s2"]
    assert ovr.index("mask.ratio=0.5") < ovr.index("method.target=pixels") < ovr.index(
        "run.max_steps=3")


@pytest.mark.parametrize("text, needle", [
    ("pionts: {a: [x=1]}\n", "unknown grid key 'pionts'"),
    ("points: [a, b]\n", "points: expected a mapping"),
    ("points: {a: x}\n", "points.a: 'x' is not a key=value override"),
    ("points: {a: 3}\n", "points.a: expected a list"),
    ("points: {a: [novalue]}\n", "points.a: 'novalue' is not a key=value override"),
    ("points: {'a/b': [x=1]}\n", "points.a/b: a point name may use"),
    ("axes: {mask.ratio: []}\n", "axes.mask.ratio: expected a non-empty list"),
    ("config: experiments/configs/missing.yaml\npoints: {a: [x=1]}\n", "config: file not found"),
    ("timeout: -1\npoints: {a: [x=1]}\n", "timeout: expected a positive number"),
    ("overrides: [a=1]\n", "no points and no axes"),
    ("points: {}\n", "nothing to run"),
    ("points: {a: [x=1]}\nseeds: [0, zero]\n", "seeds: expected a list of integers"),
    ("points: {a: [x=1]}\nbaseline: b\n", "baseline: 'b' is not a point"),
    ("points: {a: [x=1]}\nparameters: {out_dir: x}\n", "parameters.out_dir: set by the sweep"),
    ("points: {a: [x=1]\n", "invalid YAML"),
])
def test_bad_grid_raises_one_line_config_error_naming_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        load_grid(write(tmp_path, text))
    assert needle in str(err.value) and "grid.yaml" in str(err.value)
    assert "\n" not in str(err.value)


def test_ablation_refuses_a_point_named_like_its_baseline_row(tmp_path):
    with pytest.raises(ConfigError, match="points.random_init: the name is reserved"):
        A.run_ablation(write(tmp_path, "points: {random_init: [x=1]}\n"), runs_root=tmp_path)
