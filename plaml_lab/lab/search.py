"""`plaml-lab search SEARCH.yaml`: an Optuna study over the dotted key=value space of a search
file (plaml_lab.lab.search_file), each trial one `plaml-lab pretrain` process.

A trial is a run folder OUT/trials/tNNNN (its log beside it, tNNNN.log), started as a sweep
point is (its own session, cores / workers torch threads, stopped as a group on Ctrl-C; see
plaml_lab.lab.sweep). While it trains, the objective metric of each new metrics.jsonl row (the
kNN the run logs every run.knn_every steps, on the held-out split its probes use) is reported
to a median pruner; a trial the pruner stops is killed at once. A finished trial's value is the
metric in its summary.json (the end-of-run kNN), else its last logged row.

The study lives in OUT/study.db (SQLite): a killed search resumes with the same command, the
finished trials kept and a trial that was running when it died run again from the start (its
parameters re-queued). `trials` counts finished trials (complete, pruned or failed), so
`--trials 12` after a 6-trial search runs 6 more. After every trial OUT/trials.csv (one row per
trial) and OUT/best_grid.yaml (the best trials as named points, with the search's seeds: a grid
`plaml-lab sweep` re-runs) are rewritten.
"""

from __future__ import annotations

import csv
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import yaml

from plaml_lab.config import repo_root
from plaml_lab.errors import ConfigError
from plaml_lab.lab.grids import threads_per_worker
from plaml_lab.lab.search_file import Search, identity_json, load_search
from plaml_lab.lab.running import Running, kill_point
from plaml_lab.lab.sweep import read_results
from plaml_lab.runs.checkpoint import atomic_path, write_atomic
from plaml_lab.runs.folder import read_json
from plaml_lab.runs.lock import run_lock

POLL_S = 0.5  # how often a running trial's metrics.jsonl is read


class TrialFailed(Exception):
    """A trial's run exited with an error or ran past the timeout (the trial is FAIL)."""


def default_out(search_path: str | Path) -> Path:
    return repo_root() / "experiments" / "runs" / "searches" / Path(search_path).stem


def _die_with_parent() -> None:
    """In the trial process (Linux): be killed when the search that started it dies, however it
    dies (a kill -9 of the search must not leave trials training)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    os.setsid()  # its own session, as a sweep point: stopped as a group


class _Rows:
    """New complete lines of a growing metrics.jsonl, as dicts."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def new(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        rows = []
        for line in data[:end].splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows


def run_trial(search: Search, trial, out: Path, *, threads: int | None,
              running: Running) -> float:
    """Train one trial in its own process, reporting the metric to the pruner as it is logged;
    returns the objective value (optuna.TrialPruned / TrialFailed otherwise)."""
    values = {p.key: p.suggest(trial) for p in search.params}
    name = f"t{trial.number:04d}"
    run_dir = out / "trials" / name
    trial.set_user_attr("run", str(run_dir.relative_to(out)))
    cmd = [sys.executable, "-m", "plaml_lab", "pretrain", "--config", str(search.config),
           "--out", str(run_dir), *search.trial_overrides(values), "run.progress=false"]
    env = os.environ.copy()
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = out / "trials" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    rows = _Rows(run_dir / "metrics.jsonl")
    last = None
    t0 = time.perf_counter()
    with open(log, "w") as log_f:
        proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent)
        running.add(proc)
        try:
            while True:
                rc = proc.poll()
                for row in rows.new():
                    value = row.get(search.metric)
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        continue
                    last = float(value)
                    trial.report(last, int(row["step"]))
                    if search.pruner is not None and trial.should_prune():
                        kill_point(proc)
                        proc.wait()
                        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
                        raise optuna.TrialPruned(f"{search.metric}={last:.4g} at step "
                                                 f"{row['step']}")
                if rc is not None:
                    break
                if search.timeout and time.perf_counter() - t0 > search.timeout:
                    kill_point(proc)
                    proc.wait()
                    raise TrialFailed(f"timeout: stopped after {search.timeout:g} s")
                time.sleep(POLL_S)
        except (optuna.TrialPruned, TrialFailed):
            raise
        except BaseException:  # Ctrl-C in this thread: stop the run, run the trial again later
            kill_point(proc)
            proc.wait()
            _interrupted(trial)
            raise
        finally:
            running.discard(proc)
    trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
    if rc != 0 and running.stopping:  # another thread's Ctrl-C stopped this run
        _interrupted(trial)
        raise TrialFailed("interrupted")
    if rc != 0:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        raise TrialFailed(tail[-1] if tail else f"pretrain exited with {rc}")
    summary = read_json(run_dir / "summary.json")
    value = summary.get(search.metric) if isinstance(summary, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if last is None:
        raise TrialFailed(f"objective.metric {search.metric}: in neither summary.json nor "
                          "metrics.jsonl of the run")
    return last


def _interrupted(trial) -> None:
    """A trial stopped by Ctrl-C: not a finished trial; its parameters queued to run again."""
    trial.set_user_attr("interrupted", True)
    trial.study.enqueue_trial(trial.params)


# --- the study ----------------------------------------------------------------------------------

STUDY_NAME = "search"  # one study per search folder, so one fixed name


def study_storage(out: Path) -> str:
    """The SQLite URL of a search folder's study (out/study.db)."""
    return f"sqlite:///{Path(out).resolve() / 'study.db'}"


def open_study(search: Search, out: Path):
    """The search's study in out/study.db, created or resumed; a study of another search (other
    config, overrides, params or objective) is refused, so no trial of it is mixed in."""
    storage = study_storage(out)
    sampler = optuna.samplers.TPESampler(seed=search.sampler_seed)
    p = search.pruner or {}
    pruner = optuna.pruners.MedianPruner(n_startup_trials=p.get("startup_trials", 2),
                                         n_warmup_steps=p.get("warmup_steps", 0),
                                         interval_steps=p.get("interval_steps", 1))
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, sampler=sampler,
                                pruner=pruner, direction=search.direction, load_if_exists=True)
    ident = identity_json(search)
    held = study.user_attrs.get("search")
    if held is None:
        study.set_user_attr("search", ident)
    elif held != ident:
        old, new = json.loads(held), json.loads(ident)
        key = next(k for k in new if old.get(k) != new.get(k))
        raise ConfigError(f"--out {out}: holds a study of another search ({key} differs from "
                          f"{search.path}); use another --out")
    return study


def requeue_interrupted(study) -> list[int]:
    """Trials left RUNNING by a killed search: marked failed (interrupted) and their parameters
    queued again, so the resumed search runs them anew. Returns their numbers."""
    storage = study._storage  # optuna's public API cannot finish another process's trial
    numbers = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params)
        numbers.append(t.number)
    return numbers


def finished(study) -> list:
    """Trials that count toward `trials`: complete, pruned, or failed other than by a kill."""
    s = optuna.trial.TrialState
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (s.COMPLETE, s.PRUNED)
            or (t.state == s.FAIL and not t.user_attrs.get("interrupted"))]


def ranked(search: Search, study) -> list:
    """Complete trials, best first."""
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE]
    return sorted(done, key=lambda t: t.value, reverse=search.direction == "maximize")


def write_trials(search: Search, study, path: Path) -> None:
    """trials.csv: number, state, value, seconds, one column per searched key, run, note."""
    keys = [p.key for p in search.params]
    header = ["trial", "state", search.metric, "seconds", *keys, "run", "note"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for t in study.get_trials(deepcopy=False):
            note = t.user_attrs.get("error", "")
            if t.user_attrs.get("interrupted"):
                note = "interrupted (run again)"
            w.writerow({"trial": t.number, "state": t.state.name.lower(),
                        search.metric: "" if t.value is None else t.value,
                        "seconds": t.user_attrs.get("seconds", ""), **t.params,
                        "run": t.user_attrs.get("run", ""), "note": note})


def _grid_path(config: Path, grid_dir: Path) -> str:
    """The preset as the grid file names it: relative to the repo root the grid reader uses when
    the preset lies under it, else absolute."""
    root = repo_root(grid_dir)
    try:
        return str(config.resolve().relative_to(root))
    except ValueError:
        return str(config.resolve())


def write_best_grid(search: Search, study, path: Path) -> list:
    """The best `search.best` complete trials as a grid (named points tNNNN with the searched
    keys' values, the search's fixed overrides and seeds) that `plaml-lab sweep` re-runs."""
    best = ranked(search, study)[:search.best]
    if not best:
        return []
    lines = [f"# plaml-lab search {search.path.name}: the {len(best)} best of "
             f"{len(finished(study))} finished trials by {search.metric} ({search.direction})"]
    lines += [f"#   t{t.number:04d}: {search.metric}={t.value:.4g}" for t in best]
    grid = {"config": _grid_path(search.config, path.parent), "overrides": search.overrides,
            "points": {f"t{t.number:04d}": search.trial_overrides(t.params)[len(search.overrides):]
                       for t in best},
            "seeds": search.seeds}
    write_atomic(path, "\n".join(lines) + "\n" + yaml.safe_dump(grid, sort_keys=False))
    return best


def _shown(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items())


def _outcome(search: Search, trial) -> str:
    state = trial.state.name
    if state == "COMPLETE":
        return f"{search.metric}={trial.value:.4g}"
    if state == "PRUNED":
        steps = sorted(trial.intermediate_values)
        return f"pruned at step {steps[-1]}" if steps else "pruned"
    if state == "FAIL":
        return f"FAILED ({trial.user_attrs.get('error', '')})"
    return state.lower()


def run_search(search_path: str | Path, out: str | Path | None = None,
               trials: int | None = None, workers: int = 1, log=print) -> dict:
    """Run (or resume) the search until `trials` (default: the file's) trials have finished;
    returns {"out", "finished", "ran", "best": [(name, value, params)], "grid"}."""
    search = load_search(search_path)
    if trials is not None:
        if trials < 1:
            raise ConfigError(f"--trials {trials}: must be at least 1")
        search.trials = trials
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    out = Path(out).expanduser().resolve() if out else default_out(search_path)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the search prints its own lines
    with run_lock(out):  # one search per folder: two would share trial numbers' folders
        study = open_study(search, out)
        again = requeue_interrupted(study)
        before = len(finished(study))
        todo = max(0, search.trials - before)
        threads = threads_per_worker(workers) if workers > 1 else None
        if log:
            log(f"search {Path(search_path).name}: {search.trials} trials, {before} finished, "
                f"{todo} to run ({workers} in parallel)"
                + (f"; trials {', '.join(map(str, again))} were interrupted: run again"
                   if again else "") + f" -> {out}")
        lock = threading.Lock()
        running = Running()

        def objective(trial):
            try:
                return run_trial(search, trial, out, threads=threads, running=running)
            except TrialFailed as e:
                trial.set_user_attr("error", str(e))
                raise

        def after(study, trial) -> None:
            with lock:
                write_trials(search, study, out / "trials.csv")
                write_best_grid(search, study, out / "best_grid.yaml")
                if log:
                    log(f"[{len(finished(study))}/{search.trials}] t{trial.number:04d} "
                        f"{_shown(trial.params)}: {_outcome(search, trial)}")

        if todo:
            try:
                study.optimize(objective, n_trials=todo, n_jobs=workers,
                               catch=(TrialFailed,), callbacks=[after])
            except BaseException:  # Ctrl-C (or a bug): stop every trial in flight, re-raise
                running.kill_all()
                raise
        write_trials(search, study, out / "trials.csv")
        best = write_best_grid(search, study, out / "best_grid.yaml")
        return {"out": out, "finished": len(finished(study)),
                "ran": len(finished(study)) - before,
                "best": [(f"t{t.number:04d}", t.value, t.params) for t in best],
                "grid": out / "best_grid.yaml" if best else None}


# --- CLI ----------------------------------------------------------------------------------------

def cmd_search(args) -> int:
    result = run_search(args.search, args.out, args.trials, args.workers)
    states = {}
    for row in read_results(result["out"] / "trials.csv"):
        states[row["state"]] = states.get(row["state"], 0) + 1
    print(f"{result['finished']} trials finished ({result['ran']} now; "
          + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + f"); table: "
          f"{result['out'] / 'trials.csv'}")
    if not result["best"]:
        print("no trial completed: no grid written", file=sys.stderr)
        return 1
    name, value, params = result["best"][0]
    print(f"best: {name} {value:.4g} {_shown(params)}")
    print(f"grid of the best: {result['grid']} (plaml-lab sweep {result['grid']})")
    return 0

