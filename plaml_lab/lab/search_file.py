"""Search files: what `plaml-lab search` explores, read and checked before any trial runs.

    config: ../configs/quick.yaml        # base preset, relative to this file's folder
    overrides: [run.knn_every=10]        # fixed for every trial, before the searched keys
    params:                              # dotted config keys and where to look
      optim.blr: {low: 1.0e-4, high: 1.0e-2, log: true}   # float range (log scale)
      mask.ratio: {low: 0.5, high: 0.9}                   # float range
      pl.num_prototypes: {low: 16, high: 64, step: 16}    # int range (both bounds integers)
      method.teachers: [single, dual]                     # choices (or {choices: [...]})
    objective: {metric: knn_top1, direction: maximize}    # a metrics.jsonl / summary.json key
    trials: 20                           # finished trials the study ends with
    seeds: [0, 1, 2]                     # the seeds of the best-points grid it writes
    best: 3                              # how many best trials that grid holds
    pruner: {startup_trials: 2, warmup_steps: 0}   # median pruner; `pruner: none` turns it off
    sampler: {seed: 0}                   # TPE sampler seed
    timeout: 1800                        # seconds per trial before it is stopped (failed)

Every searched key is checked against the config tree at its bounds and choices (an unknown
key, or a range the key does not allow, is a ConfigError naming the file and `params.KEY`), so
a typo fails before the first trial rather than in every one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from plaml_lab.config import load_config, load_yaml
from plaml_lab.errors import ConfigError
from plaml_lab.lab.grids import override_list, yaml_scalar

SEARCH_KEYS = ("config", "overrides", "params", "objective", "trials", "seeds", "best",
               "pruner", "sampler", "timeout")
DIRECTIONS = ("maximize", "minimize")
RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class Param:
    """One searched key: a float or int range (low, high, log, step) or a list of choices."""

    key: str
    kind: str  # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial):
        """The trial's value of this key (optuna's suggest_* under the key's name)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1,
                                     log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def corners(self) -> list:
        """The values that must be valid config values: the bounds, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def spec(self) -> dict:
        """Plain data that identifies the search space (stored in the study)."""
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log,
                "step": self.step}


@dataclass
class Search:
    path: Path
    config: Path
    overrides: list[str]
    params: list[Param]
    metric: str = "knn_top1"
    direction: str = "maximize"
    trials: int = 20
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    best: int = 3
    pruner: dict | None = field(default_factory=dict)  # None: no pruning
    sampler_seed: int = 0
    timeout: float | None = None

    def identity(self) -> dict:
        """What a resumed study must share with this file (trials, seeds, best may change)."""
        return {"config": str(self.config), "overrides": self.overrides,
                "params": {p.key: p.spec() for p in self.params}, "metric": self.metric,
                "direction": self.direction}

    def trial_overrides(self, values: dict) -> list[str]:
        """The fixed overrides, then the trial's values of the searched keys."""
        return [*self.overrides, *(f"{p.key}={yaml_scalar(values[p.key])}" for p in self.params)]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _param(where: str, key: str, spec) -> Param:
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected {{low, high}} (a range) or a list of choices")
    if "choices" in spec:
        extra = [k for k in spec if k != "choices"]
        choices = spec["choices"]
        if extra:
            raise ConfigError(f"{where}.{extra[0]}: choices take no {extra[0]}")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: expected a non-empty list of values")
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise ConfigError(f"{where}.choices: values must be numbers, strings or booleans")
        return Param(key, "choice", choices=tuple(choices))
    unknown = [k for k in spec if k not in (*RANGE_KEYS, "type")]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown (a range has low, high, log, step, "
                          "type; choices are a list)")
    for bound in ("low", "high"):
        if not _number(spec.get(bound)):
            raise ConfigError(f"{where}.{bound}: expected a number, got {spec.get(bound)!r} "
                              "(YAML reads 1e-4 as text: write 1.0e-4)")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    kind = spec.get("type") or ("int" if all(isinstance(v, int) for v in (low, high, step or 1))
                                else "float")
    if kind not in ("int", "float"):
        raise ConfigError(f"{where}.type: '{kind}': choose int or float")
    if not low < high:
        raise ConfigError(f"{where}: low={low} must be below high={high}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true or false")
    if log and low <= 0:
        raise ConfigError(f"{where}.low: a log range needs low > 0, got {low}")
    if step is not None and (not _number(step) or step <= 0):
        raise ConfigError(f"{where}.step: expected a positive number")
    if log and step is not None and kind == "float":
        raise ConfigError(f"{where}.step: a float range is either log or stepped, not both")
    if kind == "int":
        if not all(float(v).is_integer() for v in (low, high, step or 1)):
            raise ConfigError(f"{where}: an int range needs integer low, high and step")
        low, high, step = int(low), int(high), int(step) if step is not None else None
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _int(path: Path, data: dict, key: str, default: int, lo: int) -> int:
    value = data.get(key, default)
    if type(value) is not int or value < lo:
        raise ConfigError(f"{path}: {key}: expected an integer >= {lo}, got {value!r}")
    return value


def _pruner(path: Path, value) -> dict | None:
    if value in ("none", False):
        return None
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: pruner: expected {{startup_trials, warmup_steps}} or none")
    known = ("startup_trials", "warmup_steps", "interval_steps")
    for k, v in value.items():
        if k not in known:
            raise ConfigError(f"{path}: pruner.{k}: unknown (known: {', '.join(known)})")
        if type(v) is not int or v < (1 if k == "interval_steps" else 0):
            raise ConfigError(f"{path}: pruner.{k}: expected a non-negative integer")
    return dict(value)


def load_search(path: str | Path) -> Search:
    """Read and check a search file; ConfigError (one line naming the file and the key)."""
    path = Path(path)
    data = load_yaml(path, "search file")
    unknown = [k for k in data if k not in SEARCH_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown search key '{unknown[0]}' (known: "
                          f"{', '.join(SEARCH_KEYS)})")
    config = data.get("config")
    if not isinstance(config, str) or not config:
        raise ConfigError(f"{path}: config: expected the path of a preset (relative to the "
                          "search file's folder)")
    config_path = Path(config).expanduser()
    config_path = (config_path if config_path.is_absolute()
                   else path.resolve().parent / config_path).resolve()
    if not config_path.is_file():
        raise ConfigError(f"{path}: config: file not found: {config}")
    overrides = override_list(data.get("overrides"), f"{path}: overrides")

    params_data = data.get("params")
    if not isinstance(params_data, dict) or not params_data:
        raise ConfigError(f"{path}: params: expected a mapping of config key -> range or choices")
    params = [_param(f"{path}: params.{k}", str(k), v) for k, v in params_data.items()]
    clash = [p.key for p in params if any(o.split("=", 1)[0] == p.key for o in overrides)]
    if clash:
        raise ConfigError(f"{path}: params.{clash[0]}: also fixed in overrides")
    for p in params:  # every corner of the space must be a valid config
        for value in p.corners():
            try:
                load_config(config_path, [*overrides, f"{p.key}={yaml_scalar(value)}"])
            except ConfigError as e:
                raise ConfigError(f"{path}: params.{p.key}: {e}") from None

    objective = data.get("objective") or {}
    if not isinstance(objective, dict):
        raise ConfigError(f"{path}: objective: expected {{metric, direction}}")
    bad = [k for k in objective if k not in ("metric", "direction")]
    if bad:
        raise ConfigError(f"{path}: objective.{bad[0]}: unknown (known: metric, direction)")
    metric = objective.get("metric", "knn_top1")
    if not isinstance(metric, str) or not metric or metric == "step":
        raise ConfigError(f"{path}: objective.metric: expected a metrics.jsonl / summary.json "
                          "key, e.g. knn_top1")
    direction = objective.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise ConfigError(f"{path}: objective.direction: '{direction}': choose maximize or "
                          "minimize")

    seeds = data.get("seeds", [0, 1, 2])
    seeds = [seeds] if type(seeds) is int else seeds
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise ConfigError(f"{path}: seeds: expected a list of integers")
    sampler = data.get("sampler") or {}
    if not isinstance(sampler, dict) or any(k != "seed" for k in sampler) or \
            type(sampler.get("seed", 0)) is not int:
        raise ConfigError(f"{path}: sampler: expected {{seed: INTEGER}}")
    timeout = data.get("timeout")
    if timeout is not None and (not _number(timeout) or timeout <= 0):
        raise ConfigError(f"{path}: timeout: expected a positive number of seconds")
    search = Search(path=path, config=config_path, overrides=overrides, params=params,
                    metric=metric, direction=direction, trials=_int(path, data, "trials", 20, 1),
                    seeds=list(dict.fromkeys(seeds)), best=_int(path, data, "best", 3, 1),
                    pruner=_pruner(path, data.get("pruner")),
                    sampler_seed=sampler.get("seed", 0),
                    timeout=float(timeout) if timeout else None)
    _check_intermediate(search)
    return search


def _check_intermediate(search: Search) -> None:
    """A pruned knn_* objective needs the kNN the run logs while it trains (run.knn_every)."""
    if search.pruner is None or not search.metric.startswith("knn"):
        return
    cfg = load_config(search.config, search.overrides)
    if not cfg.run.knn_every:
        raise ConfigError(f"{search.path}: objective.metric={search.metric}: pruning needs the "
                          "kNN logged during training; add run.knn_every=N to overrides (a "
                          "multiple of run.log_every) or set pruner: none")


def identity_json(search: Search) -> str:
    return json.dumps(search.identity(), sort_keys=True)
