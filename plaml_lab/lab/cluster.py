"""Cluster settings and submitit executors: the `cluster` section of a grid file, or
`cluster.<key>=value` on the command line, checked and mapped onto submitit's LocalExecutor
(`submitit-local`) or its SLURM executor (`slurm`). plaml_lab.lab.submit runs jobs with them.

    cluster:
      partition: gpu          # sbatch --partition (default: the cluster's default)
      account: my-project     # sbatch --account
      nodes: 1                # nodes per job (multi-node DDP when > 1)
      gpus_per_node: 1        # GPUs per node (default 1 on slurm, 0 with submitit-local)
      tasks_per_node: 1       # processes per node (default: one per GPU, at least 1)
      cpus_per_task: 8        # CPU cores per process (also its torch threads)
      mem_gb: 64              # memory per node (default: the cluster's default)
      time_min: 1440          # time limit of one job in minutes; a timed-out job requeues
      constraint: a100        # sbatch --constraint
      sbatch: ["--qos=high"]  # further sbatch lines, as --key=value (or --flag)
      setup: ["module load cuda"]  # shell lines run in the job before python
      max_requeues: 3         # time-limit requeues per job (preemptions are not counted)
      signal_delay_s: 120     # USR2 this many seconds before the time limit
      array_parallelism: 256  # array tasks running at once
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field, fields
from pathlib import Path

import submitit
import yaml

from plaml_lab.errors import ConfigError

EXECUTORS = ("local", "submitit-local", "slurm")


@dataclass
class ClusterSettings:
    """Resources of one job (see the module docstring); None = the executor's default."""
    partition: str | None = None
    account: str | None = None
    nodes: int = 1
    gpus_per_node: int | None = None
    tasks_per_node: int | None = None
    cpus_per_task: int = 8
    mem_gb: float | None = None
    time_min: int = 1440
    constraint: str | None = None
    sbatch: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    max_requeues: int = 3
    signal_delay_s: int = 120
    array_parallelism: int = 256

    def gpus(self, kind: str) -> int:
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        return 1 if kind == "slurm" else 0

    def tasks(self, kind: str) -> int:
        """Processes per node: one per GPU (DDP), at least one."""
        if self.tasks_per_node is not None:
            return self.tasks_per_node
        return max(1, self.gpus(kind))


_INTS = {"nodes": 1, "gpus_per_node": 0, "tasks_per_node": 1, "cpus_per_task": 1, "time_min": 1,
         "max_requeues": 0, "signal_delay_s": 0, "array_parallelism": 1}  # key -> minimum
_STRINGS = ("partition", "account", "constraint")
_LISTS = ("sbatch", "setup")


def _check(key: str, value):
    """One cluster value, type-checked; ConfigError naming `cluster.<key>`."""
    where = f"cluster.{key}"
    if key in _INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if value < _INTS[key]:
            raise ConfigError(f"{where}: must be at least {_INTS[key]}, got {value}")
        return value
    if key == "mem_gb":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{where}: expected a positive number of GB, got {value!r}")
        return value
    if key in _STRINGS:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
        return value
    if key in _LISTS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        if key == "sbatch":
            bad = [v for v in value if not v.startswith("--") or len(v) < 3]
            if bad:
                raise ConfigError(f"{where}: '{bad[0]}' is not an sbatch option (--key=value)")
        return list(value)
    known = ", ".join(f.name for f in fields(ClusterSettings))
    raise ConfigError(f"{where}: unknown cluster setting (known: {known})")


def cluster_settings(section=None, overrides: list[str] | None = None) -> ClusterSettings:
    """A grid file's `cluster` mapping, then `cluster.key=value` overrides (values read as YAML
    scalars, like config overrides) -> checked ClusterSettings."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"cluster: expected a mapping of settings, got {type(section).__name__}")
    values = dict(section)
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key.startswith("cluster.") or key == "cluster.":
            raise ConfigError(f"{item}: expected cluster.<key>=value")
        try:
            values[key[len("cluster."):]] = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            values[key[len("cluster."):]] = text
    checked = {k: _check(str(k), v) for k, v in values.items()}
    return ClusterSettings(**checked)


def split_cluster_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(config overrides, cluster.* overrides) from one command line's key=value list."""
    cluster = [o for o in overrides if o.startswith("cluster.")]
    return [o for o in overrides if not o.startswith("cluster.")], cluster


def check_kind(kind: str, detach: bool = False) -> str:
    if kind not in EXECUTORS:
        raise ConfigError(f"--executor {kind}: expected one of {', '.join(EXECUTORS)}")
    if detach and kind == "local":
        raise ConfigError("--detach: only with --executor submitit-local or slurm")
    return kind


def make_executor(kind: str, folder: str | Path, settings: ClusterSettings, name: str):
    """A submitit executor for `kind` (submitit-local or slurm) writing its scripts, pickles and
    logs under `folder`. ConfigError when SLURM is not reachable from here."""
    folder = Path(folder)
    common = dict(name=name, timeout_min=settings.time_min, nodes=settings.nodes,
                  tasks_per_node=settings.tasks(kind), gpus_per_node=settings.gpus(kind),
                  cpus_per_task=settings.cpus_per_task)
    if kind == "submitit-local":
        if settings.nodes != 1:
            raise ConfigError(f"cluster.nodes={settings.nodes}: submitit-local runs on this "
                              "machine only (nodes: 1)")
        ex = submitit.LocalExecutor(folder, max_num_timeout=settings.max_requeues)
        ex.update_parameters(timeout_min=settings.time_min, tasks_per_node=settings.tasks(kind),
                             gpus_per_node=settings.gpus(kind),
                             signal_delay_s=settings.signal_delay_s)
        return ex
    if kind != "slurm":
        raise ConfigError(f"--executor {kind}: not a submitit executor")
    try:
        ex = submitit.AutoExecutor(folder, cluster="slurm",
                                   slurm_max_num_timeout=settings.max_requeues)
    except RuntimeError as e:  # submitit looks for srun on PATH
        raise ConfigError(f"--executor slurm: no SLURM here ({e})") from None
    extra = {}
    for line in settings.sbatch:
        key, sep, value = line[2:].partition("=")
        extra[key] = value if sep else True
    specific = dict(slurm_partition=settings.partition, slurm_account=settings.account,
                    slurm_constraint=settings.constraint,
                    slurm_signal_delay_s=settings.signal_delay_s,
                    slurm_array_parallelism=settings.array_parallelism,
                    slurm_additional_parameters=extra or None,
                    slurm_setup=settings.setup or None)
    if settings.mem_gb is not None:
        common["mem_gb"] = settings.mem_gb
    ex.update_parameters(**common, **{k: v for k, v in specific.items() if v is not None})
    return ex


def local_gpus() -> list[int]:
    """This machine's GPU ids for submitit-local jobs: CUDA_VISIBLE_DEVICES when it lists
    integer ids, else one per line of `nvidia-smi -L`; none without either."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [g.strip() for g in env.split(",") if g.strip()]
        return [int(g) for g in ids] if all(g.isdigit() for g in ids) else []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(range(sum(line.startswith("GPU ") for line in listing.splitlines())))
