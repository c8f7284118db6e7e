"""A folder of runs as plain data, for the compare-runs dashboard: which runs there are, how
their configs differ, their metrics curves and probe results, grouped over seeds.

Pure functions of files and dicts; no widgets, no torch. Reading is cached by file size and
mtime, so a dashboard over hundreds of runs re-reads only what changed (a run still training).

A run here is a folder holding config.yaml (and usually metrics.jsonl), or only eval.json (the
ablation's random-init rows). Probe results merge summary.json's numbers, eval.json's and
finetune_top1 from RUN/finetune/*/summary.json (`plaml-lab finetune`'s folders, which are not
runs of their own here).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from plaml_lab.paths import user_path
from plaml_lab.viz.plots import smooth

try:  # the C loader reads a config.yaml ~10x faster: it matters at hundreds of runs
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _Loader

# Keys that name a run rather than configure it: left out when grouping runs over seeds.
SEED_KEYS = ("run.seed", "run.name")
# Columns of metrics.jsonl that are bookkeeping, not curves.
NOT_CURVES = ("step", "epoch", "precision")
MAX_DEPTH = 4  # run folders are looked for this many levels below the chosen folder


@dataclass
class RunRecord:
    """One run folder: name (relative to the scanned folder), its flattened config (dotted
    keys; {} when it has none), metrics rows, probe results and whether it finished."""

    name: str
    path: Path
    config: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    finished: bool = False
    trial: dict = field(default_factory=dict)  # its row of a search's trials.csv, if any


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def find_runs(folder: str | Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Run folders under `folder` (itself included), sorted by path; fine-tuning folders
    (they hold source.json) and checkpoint folders are not runs here."""
    root = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        names = set(filenames)
        if "source.json" in names:
            dirnames[:] = []
            continue
        if "config.yaml" in names or "eval.json" in names:
            found.append(Path(dirpath))
        dirnames[:] = sorted(d for d in dirnames if d not in ("checkpoints", "tensorboard",
                                                             "figures", "finetune")
                             and not d.startswith("."))
        if depth >= max_depth:
            dirnames[:] = []
    return sorted(found)


def _signature(path: Path) -> tuple:
    out = []
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "eval.json"):
        try:
            st = (path / name).stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_rows(path: Path) -> list[dict]:
    """metrics.jsonl's rows (as runs.read_metrics, without importing torch): a corrupt line is
    skipped with a warning, never the rows after it; a last line being written right now comes
    with the next refresh."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    rows, bad = [], []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 1 or text.endswith("\n"):
                bad.append(i + 1)
    if bad:
        warnings.warn(f"{path}: skipped unreadable line(s) {', '.join(map(str, bad[:5]))}",
                      stacklevel=2)
    return rows


def _numbers(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_run(path: Path, name: str) -> RunRecord:
    """One run folder -> RunRecord (unreadable files read as empty: the run may be mid-write)."""
    config = {}
    if (path / "config.yaml").exists():
        try:
            config = flatten(yaml.load((path / "config.yaml").read_text(), Loader=_Loader) or {})
        except (OSError, yaml.YAMLError):
            config = {}
    summary = _read_json(path / "summary.json")
    results = _numbers({k: v for k, v in summary.items()
                        if k.endswith(("top1", "top1_mean", "nmi", "ari", "miou"))})
    results.update(_numbers(_read_json(path / "eval.json")))
    for ft in sorted((path / "finetune").glob("*/summary.json")):
        top1 = _read_json(ft).get("finetune_top1")
        if isinstance(top1, (int, float)):
            results.setdefault("finetune_top1", float(top1))  # the first recipe, by name
    for k in ("step", "num_train", "num_val", "num_train_dense"):
        results.pop(k, None)
    has_run = bool(config) or (path / "metrics.jsonl").exists()
    return RunRecord(name=name, path=path, config=config, rows=_read_rows(path / "metrics.jsonl"),
                     results=results, finished=bool(summary) or not has_run)


def read_trials(folder: Path) -> dict[str, dict]:
    """A search folder's trials.csv (`plaml-lab search`, docs/search.md) -> {run folder relative
    to `folder`: {"trial", "state", "objective", "value"}}; {} for a folder that is not a
    search's. A pruned or failed trial's run stopped for good: it has no summary.json, and
    without this the dashboard would wait for it to finish."""
    try:
        with open(folder / "trials.csv", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
        metric = reader.fieldnames[2]  # trial, state, the objective's metric, seconds, ...
    except (OSError, TypeError, IndexError, csv.Error):
        return {}
    out = {}
    for row in rows:
        if not row.get("run"):
            continue
        try:
            value = float(row.get(metric) or "nan")
        except ValueError:
            value = math.nan
        out[Path(row["run"]).as_posix()] = {"trial": row.get("trial"), "state": row.get("state"),
                                             "objective": metric, "value": value}
    return out


class RunSet:
    """The runs under a folder, re-read incrementally: `scan()` re-lists the folder and
    re-reads only runs whose files changed; returns whether anything changed. A search's
    folder (trials.csv beside trials/) also gives each trial run its state and objective."""

    def __init__(self, folder: str | Path):
        self.folder = user_path(folder)  # as every loader: cwd, then the repo root
        if not self.folder.is_dir():
            raise FileNotFoundError(f"runs folder not found: {self.folder}")
        self.runs: dict[str, RunRecord] = {}
        self._sigs: dict[str, tuple] = {}
        self.trials: dict[str, dict] = {}  # a search's trials by run name; {} otherwise
        self._trials_sig = None
        self.scan()

    def scan(self) -> bool:
        changed = False
        seen = set()
        for path in find_runs(self.folder):
            name = path.relative_to(self.folder).as_posix() or "."
            seen.add(name)
            sig = _signature(path)
            if self._sigs.get(name) != sig:
                self.runs[name] = read_run(path, name)
                self._sigs[name] = sig
                changed = True
        for gone in set(self.runs) - seen:
            del self.runs[gone], self._sigs[gone]
            changed = True
        changed |= self._scan_trials(changed)
        if changed:
            self.runs = dict(sorted(self.runs.items()))
        return changed

    def _scan_trials(self, runs_changed: bool) -> bool:
        try:
            st = (self.folder / "trials.csv").stat()
            sig = (st.st_size, st.st_mtime_ns)
        except OSError:
            sig = None
        if sig == self._trials_sig and not runs_changed:
            return False
        self._trials_sig = sig
        self.trials = read_trials(self.folder) if sig else {}
        for name, record in self.runs.items():
            record.trial = self.trials.get(name, {})
            if record.trial.get("state") in ("complete", "pruned", "fail"):
                record.finished = True
        return True

    @property
    def names(self) -> list[str]:
        return list(self.runs)

    def __getitem__(self, name: str) -> RunRecord:
        return self.runs[name]


# --- comparisons ------------------------------------------------------------------------------

def differing_keys(configs: list[dict]) -> list[str]:
    """Dotted keys whose value is not the same in every config (a key some lack differs)."""
    if len(configs) < 2:
        return []
    keys = set().union(*configs)
    return sorted(k for k in keys
                  if len({json.dumps(c[k], default=str) if k in c else "<absent>"
                          for c in configs}) > 1)


def curve_columns(records: list[RunRecord]) -> list[str]:
    """Numeric metrics.jsonl columns of any of the runs (the curves one can overlay)."""
    cols = set()
    for r in records:
        for row in r.rows[:1] + r.rows[-1:]:
            cols.update(k for k, v in row.items() if k not in NOT_CURVES
                        and isinstance(v, (int, float)) and not isinstance(v, bool))
    return sorted(cols)


def curve(record: RunRecord, column: str, x: str = "step", window: int = 1
          ) -> tuple[np.ndarray, np.ndarray]:
    """(x values, smoothed column values) of one run; rows without the column are skipped."""
    rows = [r for r in record.rows if isinstance(r.get(column), (int, float))]
    xs = np.array([r.get(x, np.nan) for r in rows], dtype=float)
    ys = smooth([r[column] for r in rows], window)
    return xs, ys


def seed_groups(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs sharing a config up to SEED_KEYS -> one group; named by the values of the keys
    that tell the groups apart (or the run name for a run without a config)."""
    def key_of(r):
        return tuple(sorted((k, json.dumps(v, default=str)) for k, v in r.config.items()
                            if k not in SEED_KEYS))

    groups: dict[tuple, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(key_of(r) if r.config else (("run", r.name),), []).append(r)
    with_cfg = [g[0].config for g in groups.values() if g[0].config]
    keys = [k for k in differing_keys(with_cfg) if k not in SEED_KEYS]
    named = {}
    for members in groups.values():
        first = members[0]
        if not first.config:
            label = first.name
        else:
            label = ", ".join(f"{k.split('.')[-1]}={first.config.get(k)}" for k in keys) \
                or "same config"
        while label in named:
            label += "'"
        named[label] = members
    return named


def grouped_results(records: list[RunRecord], metrics: list[str]
                    ) -> dict[str, dict[str, tuple[float, float, int]]]:
    """{group: {metric: (mean, sample std over the group's runs (0 for one run), n)}}."""
    out = {}
    for label, members in seed_groups(records).items():
        stats = {}
        for m in metrics:
            vals = [r.results[m] for r in members if m in r.results
                    and math.isfinite(r.results[m])]
            if vals:
                std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
                stats[m] = (float(np.mean(vals)), std, len(vals))
        out[label] = stats
    return out


PAIRED_METRICS = ("knn_top1", "linear_top1", "finetune_top1")
MAX_PAIRED_GROUPS = 8  # pairs grow as groups^2: the paired view stops there


def paired_results(records: list[RunRecord], metrics=PAIRED_METRICS) -> list[dict]:
    """For every two config groups (seed_groups) that share at least two run.seed values: per
    metric, the per-seed differences (first group - second) and their paired Student-t 95% CI
    and verdict (plaml_lab.lab.paired). [] when no two groups share seeds."""
    from plaml_lab.lab.paired import paired_interval  # scipy: only when runs share seeds

    groups = list(seed_groups(records).items())[:MAX_PAIRED_GROUPS]
    by_seed = {label: {r.config.get("run.seed"): r for r in members if r.config}
               for label, members in groups}
    out = []
    for i, (a, _) in enumerate(groups):
        for b, _ in groups[i + 1:]:
            seeds = sorted(set(by_seed[a]) & set(by_seed[b]) - {None})
            if len(seeds) < 2:
                continue
            for m in metrics:
                diffs = {s: by_seed[a][s].results[m] - by_seed[b][s].results[m] for s in seeds
                         if m in by_seed[a][s].results and m in by_seed[b][s].results}
                if len(diffs) >= 2:
                    out.append({"better": a, "worse": b, "metric": m, "diffs": diffs,
                                **paired_interval(list(diffs.values()))})
    return out


def result_columns(records: list[RunRecord]) -> list[str]:
    """Probe metrics present in any run, accuracies first."""
    cols = set().union(*(r.results for r in records)) if records else set()
    return sorted(cols, key=lambda k: (not k.endswith("top1"), k))
