"""Grid files: the one parser behind `plaml-lab sweep`, `plaml-lab ablation` and any other
runner (a cluster executor calls `load_grid(path).points`).

    notebook: notebooks/01_pretrain.ipynb   # sweep: the notebook run per point (default 01)
    config: experiments/configs/quick.yaml  # the preset every point starts from
    overrides: [run.device=cpu]             # applied to every point, before the point's own
    timeout: 900                            # sweep: seconds per point (wall clock)
    parameters: {}                          # sweep: further notebook parameters
    points:                                 # named points, each a list of overrides ...
      mae: [method.target=pixels, method.pseudo_labels=none]
      dual: [method.teachers=dual]
    axes:                                   # ... and/or a product of axes
      mask.ratio: [0.6, 0.75]
    seeds: [0, 1]                           # every point once per seed (run.seed)
    baseline: dual                          # ablation: the point whose config builds the
                                            # random-init model (default the last point)
    split: test                             # ablation: the held-out split the table scores
                                            # (default val: for grids that choose settings)
    cluster: {partition: gpu, gpus_per_node: 8}  # submitit executors: each job's resources
                                            # (plaml_lab.lab.cluster, docs/cluster.md)

With both `points` and `axes`, every named point is crossed with every combination of axis
values (`mae__mask.ratio=0.6`). With `seeds`, every such variant runs once per seed, seed-major
(the whole first seed first), named `<variant>-s<seed>`. A relative `config` or `notebook` is
looked up in the grid file's own folder, then in the checkout holding it (the folder with
pyproject.toml above it: `experiments/configs/quick.yaml`), then among the files the package
ships (a preset name such as `quick`; plaml_lab.paths). Unknown keys, malformed
overrides and unsafe point names are a ConfigError naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from plaml_lab.config import PretrainConfig, apply_overrides, load_yaml
from plaml_lab.paths import checkout_of, find_file
from plaml_lab.errors import ConfigError
from plaml_lab.lab.cluster import cluster_settings

GRID_KEYS = ("notebook", "config", "overrides", "timeout", "parameters", "points", "axes",
             "seeds", "baseline", "cluster", "split")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")  # point names are folder names


@dataclass(frozen=True)
class Point:
    """One run of a grid: `name` is its folder name; `overrides` its own (named point, then
    axes; the grid-wide ones are Grid.overrides); `seed` its run.seed (None: the preset's,
    when the grid lists no seeds); `variant` the name without the seed."""

    name: str
    overrides: list[str]
    seed: int | None = None
    variant: str = ""

    def run_overrides(self, grid_overrides: list[str] = ()) -> list[str]:
        """Everything the run gets: grid-wide, the point's own, then its seed."""
        seed = [] if self.seed is None else [f"run.seed={self.seed}"]
        return [*grid_overrides, *self.overrides, *seed]


@dataclass
class Grid:
    path: Path
    config: Path | None
    overrides: list[str]
    variants: dict[str, list[str]]  # name -> the point's overrides, in file order
    seeds: list[int] = field(default_factory=list)
    notebook: Path | None = None
    timeout: float | None = None
    parameters: dict = field(default_factory=dict)
    baseline: str | None = None
    split: str | None = None  # ablation: val (choosing) or test (reporting); None = val
    cluster: dict = field(default_factory=dict)  # submit.cluster_settings reads it

    @property
    def points(self) -> list[Point]:
        """Every run, seed-major when the grid lists seeds."""
        if not self.seeds:
            return [Point(n, list(o), None, n) for n, o in self.variants.items()]
        return [Point(f"{n}-s{s}", list(o), s, n) for s in self.seeds
                for n, o in self.variants.items()]


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of `workers` runs sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def override_list(value, where: str) -> list[str]:
    """A list of 'key=value' strings (or one string, or a mapping {key: value}) -> overrides."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={yaml_scalar(v)}" for k, v in value.items()]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of key=value strings, got "
                          f"{type(value).__name__}")
    for item in value:
        if not isinstance(item, str) or "=" not in item or item.startswith("="):
            raise ConfigError(f"{where}: '{item}' is not a key=value override")
    return list(value)


def check_overrides(path: Path, where: str, overrides: list[str]) -> None:
    """An override into a config section (mask.ratoi=0.5) names a config key: checked when the
    grid is read, not when its point runs, maybe hours later. Keys outside every section are
    a custom notebook's own parameters. Values are checked when the point's config is built
    (with the preset; a bad value fails that point alone, as quick_failing.yaml's)."""
    sections = {f.name for f in dataclasses.fields(PretrainConfig)}
    try:
        apply_overrides({}, [o for o in overrides if o.split(".", 1)[0] in sections])
    except ConfigError as e:
        raise ConfigError(f"{path}: {where}: {e}") from None


def yaml_scalar(value) -> str:
    """A value as the override parser reads it back (YAML scalar text)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _variants(path: Path, data: dict) -> dict[str, list[str]]:
    named = data.get("points") or {}
    if not isinstance(named, dict):
        raise ConfigError(f"{path}: points: expected a mapping of name -> list of overrides")
    for name in named:
        if not isinstance(name, str) or not name or _UNSAFE.search(name) or name[0] == ".":
            raise ConfigError(f"{path}: points.{name}: a point name may use letters, digits "
                              "and ._=+- only")
    axes = data.get("axes") or {}
    if not isinstance(axes, dict):
        raise ConfigError(f"{path}: axes: expected a mapping of key -> list of values")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: axes.{key}: expected a non-empty list of values")
    if not named and not axes:
        raise ConfigError(f"{path}: no points and no axes: nothing to run")
    combos = itertools.product(*[[f"{k}={yaml_scalar(v)}" for v in vs] for k, vs in axes.items()])
    combos = [list(c) for c in combos]
    out: dict[str, list[str]] = {}
    for name, ovr in (named.items() if named else [("", [])]):
        own = override_list(ovr, f"{path}: points.{name}")
        for extra in combos:
            full = "__".join(([name] if name else []) + [_UNSAFE.sub("-", e) for e in extra])
            if full in out:
                raise ConfigError(f"{path}: point '{full}' appears twice")
            out[full] = own + extra
    return out


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; ConfigError (one line naming the file and key) when it is
    malformed or names a file that does not exist."""
    path = find_file(path, "grid file", kind="grids")
    data = load_yaml(path, "grid file")
    unknown = [k for k in data if k not in GRID_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown grid key '{unknown[0]}' (known: {', '.join(GRID_KEYS)})")
    # relative paths: the grid's own folder, then the checkout holding it (grids in
    # experiments/grids name experiments/configs/...), then the package's presets and notebooks
    here = path.resolve().parent
    bases = [here, *[c for c in [checkout_of(here)] if c is not None]]

    def file(key: str, kind: str) -> Path | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: {key}: expected a path")
        try:
            return find_file(value, "file", bases, kind)
        except ConfigError:
            raise ConfigError(f"{path}: {key}: file not found: {value}") from None

    variants = _variants(path, data)
    seeds = data.get("seeds", [])
    seeds = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    if not isinstance(seeds, list) or not all(type(s) is int for s in seeds):
        raise ConfigError(f"{path}: seeds: expected a list of integers")
    timeout = data.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(f"{path}: timeout: expected a positive number of seconds")
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ConfigError(f"{path}: parameters: expected a mapping of notebook parameters")
    clash = [k for k in parameters if k in ("config", "overrides", "out_dir")]
    if clash:
        raise ConfigError(f"{path}: parameters.{clash[0]}: set by the sweep itself")
    baseline = data.get("baseline")
    if baseline is not None and baseline not in variants:
        raise ConfigError(f"{path}: baseline: '{baseline}' is not a point of the grid")
    split = data.get("split")
    if split is not None and split not in ("val", "test"):
        raise ConfigError(f"{path}: split: '{split}': choose val or test")
    cluster = data.get("cluster") or {}
    try:
        cluster_settings(cluster)  # checked here, read when a submitit executor runs the grid
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    overrides = override_list(data.get("overrides"), f"{path}: overrides")
    check_overrides(path, "overrides", overrides)
    for name, own in variants.items():
        check_overrides(path, f"points.{name}", own)
    return Grid(path=path, config=file("config", "configs"),
                overrides=overrides,
                variants=variants, seeds=list(dict.fromkeys(seeds)),
                notebook=file("notebook", "notebooks"),
                timeout=float(timeout) if timeout else None, parameters=parameters,
                baseline=baseline, split=split, cluster=cluster)
