"""The miniature paper table (`make ablation`): pretrain every variant of a grid for every seed,
evaluate each run's frozen student encoder with every probe, add a random-init baseline per seed,
and write mean +- std over seeds as CSV (one row per run), markdown and a bar plot.

    plaml-lab ablation [--grid experiments/grids/paper_ablation.yaml]
        [--preset experiments/configs/lab.yaml] [--seeds 0,1,2] [--variants mae,dual]
        [--runs experiments/runs/ablation] [--out experiments/results] [key=value ...]

Runs go to RUNS/<variant>-s<seed>/ (RUNS/random_init-s<seed>/ for the baseline), each with its
evaluation in eval.json. Re-running resumes: a run whose summary.json says it finished is not
pretrained again (an unfinished one resumes from its last checkpoint), and an eval.json with the
same probes is reused. A point that fails is reported and does not stop the others (exit 1).

Grid keys read (lab/grids.py): `seeds` ([0]), `baseline` (the point, default the last, whose
config builds the random-init model whatever --variants selects) and `split` (the held-out
split every probe scores: val, the default, for grids that choose settings; test for a table
that reports them, once). Out: OUT/ablation_<dataset>.* (OUT/ablation_<dataset>_test.* on test)
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import torch
import yaml

from plaml_lab.config import (PROBES, ConfigError, from_dict, load_config, load_yaml, repo_root,
                              to_dict)
from plaml_lab.errors import RunError
from plaml_lab.evaluate import evaluate
from plaml_lab.finetune import finetune
from plaml_lab.lab import submit
from plaml_lab.lab.ablation_table import BASELINE, METRICS, aggregate, write_tables
from plaml_lab.lab.cluster import (ClusterSettings, check_kind, cluster_settings,
                                   split_cluster_overrides)
from plaml_lab.lab.eval_files import cached_eval, eval_file, save_eval
from plaml_lab.lab.grids import Grid, load_grid, threads_per_worker
from plaml_lab.lab.paired import CONFIDENCE
from plaml_lab.runs.folder import (EVAL_CONFIG, check_random_init_dir,
                                   run_config_changes, save_eval_config, shown_keys)
from plaml_lab.train import pretrain

DEFAULT_GRID = "experiments/grids/paper_ablation.yaml"
DEFAULT_PRESET = "experiments/configs/lab.yaml"
DEFAULT_RUNS = "experiments/runs/ablation"
DEFAULT_OUT = "experiments/results"
# The `finetune` probe: `plaml-lab finetune` on 10% of the labels (2,000 images of the lab
# preset, the few-label regime where pretraining shows) for 3 epochs: 45 steps, 1.5 to 4 min per
# run on the 2-core CPU depending on its load, so the 18-run table grows by a third to a half.
# Mixup / cutmix are off: over a few epochs they only slow learning (45 steps from random init
# at blr 4e-3, 1,000 held-out images: top-1 0.136 with them, 0.160 without; 75 steps without:
# 0.163 on 2,000; MAE mixes over 100 epochs). Layer decay, drop path, label smoothing and
# warm-up + cosine stay on. At this budget a random encoder fine-tuned stays below its frozen
# linear probe (0.400 on 10,000 labels, L-BFGS to convergence): read the column across variants.
FINETUNE = "finetune"
FINETUNE_BUDGET = ("finetune.fraction=0.1", "finetune.epochs=3", "finetune.warmup_epochs=0.5",
                   "finetune.blr=4e-3", "finetune.mixup=0", "finetune.cutmix=0")


# --- one run ----------------------------------------------------------------------------------

def run_dir(runs_root: str | Path, variant: str, seed: int) -> Path:
    return Path(runs_root) / f"{variant}-s{seed}"


def run_overrides(grid: Grid, variant: str, seed: int, extra: list[str]) -> list[str]:
    """Grid-wide overrides, then the point's, then the caller's, then the seed and run name.
    run.eval_knn=false: the runner probes every run itself (kNN included) right after."""
    return ["run.eval_knn=false", *grid.overrides, *grid.variants[variant], *extra,
            f"run.seed={seed}", f"run.name=ablation-{variant}-s{seed}"]


def is_finished(out: Path) -> bool:
    """summary.json exists and its run reached the end of its schedule (or run.max_steps)."""
    path = out / "summary.json"
    if not path.is_file():
        return False
    try:
        summary = json.loads(path.read_text())
        max_steps = int(yaml.safe_load((out / "config.yaml").read_text())["run"]["max_steps"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return False
    return bool(summary.get("complete")) or (max_steps > 0 and summary.get("steps", 0) >= max_steps)


def pretrain_and_evaluate(preset: str, overrides: list[str], out: Path, probes: list[str],
                          device: str = "cpu", log=print, split: str = "val") -> dict:
    """Pretrain (resuming) into `out` unless finished, then evaluate (unless eval.json has the
    same probes). Returns the evaluation dict."""

    if is_finished(out):
        # a finished run of another config (an edited preset or grid) is not this point's
        old = to_dict(from_dict(load_yaml(out / "config.yaml")))
        changed = run_config_changes(old, load_config(preset, overrides))
        if changed:
            raise RunError(f"{out}: finished with another config (differs in "
                           f"{shown_keys(changed)}); move it aside or pass another --runs")
        log(f"  pretrain: finished before, skipped ({out})")
        summary = json.loads((out / "summary.json").read_text())
    else:
        summary = pretrain(preset, out, overrides)
    cached = cached_eval(out, probes, summary.get("steps"), split)
    if cached is not None:
        log(f"  eval: reused {eval_file(out, split).name}")
        return cached
    result = evaluate(out, [p for p in probes if p != FINETUNE], device=device, split=split)
    if FINETUNE in probes:
        result["finetune_top1"] = finetune(out, overrides=list(FINETUNE_BUDGET), device=device,
                                           progress=False)["finetune_top1"]
    result["probes"] = list(probes)
    save_eval(out, result, split)
    return result


def random_init_evaluate(preset: str, overrides: list[str], out: Path, probes: list[str],
                         device: str = "cpu", log=print, split: str = "val") -> dict:
    """Evaluate a random-init model of the baseline point's config (eval.json in `out`, its
    config beside it). An eval.json of another config is an error naming the keys, not reused."""
    cfg = load_config(preset, overrides)
    cached = cached_eval(out, probes, split=split)
    if cached is not None:
        checked = check_random_init_dir(out, cfg)  # RunError when of another config
        log(f"  eval: reused {eval_file(out, split).name}"
            + ("" if checked else f" (no {EVAL_CONFIG} to check)"))
        return cached
    result = evaluate(None, [p for p in probes if p != FINETUNE], random_init=True,
                      config=preset, overrides=overrides, device=device, split=split)
    if FINETUNE in probes:
        result["finetune_top1"] = finetune(
            None, config=preset, random_init=True, overrides=[*overrides, *FINETUNE_BUDGET],
            out=out / "finetune", device=device, progress=False)["finetune_top1"]
    result["probes"] = list(probes)
    save_eval_config(out, cfg)
    save_eval(out, result, split)
    return result


def _worker_init(threads: int, parent: int | None = None) -> None:
    """A pool worker's torch uses `threads` CPU threads, so N workers share the cores; with
    `parent` (a pid) the worker also exits once that process is gone."""

    torch.set_num_threads(threads)
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """End this process once `parent` has died (it is then re-parented). A pool worker outlives
    a parent killed by a signal it cannot catch (SIGKILL, or SIGTERM's default action): it would
    keep training its run folder, and a relaunched table would start a second trainer on it.
    Checkpoints are written atomically, so stopping mid-step loses only the steps since the
    last one."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(1)


def _attempt(fn, *args, **kwargs) -> tuple[dict | None, str | None]:
    """(fn(...), None), or (None, 'Type: first line of the message') when it raises: one failed
    point must not stop the table, in this process or in a pool worker."""
    try:
        return fn(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001 - reported with the table, not raised
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, f"{type(e).__name__}: {msg}"


def _pretrain_job(preset: str, overrides: list[str], out: Path, probes: list[str],
                  device: str, label: str, split: str = "val") -> tuple[dict | None, str | None]:
    """One grid point in a pool worker, its log lines prefixed with the point's label."""
    def log(msg):
        print(f"[{label}] {msg}", file=sys.stderr, flush=True)

    return _attempt(pretrain_and_evaluate, preset, overrides, out, probes, device, log, split)


def _submitted_point(preset: str, overrides: list[str], out: Path, probes: list[str],
                     device: str, threads: int | None, split: str = "val"
                     ) -> tuple[dict | None, str | None] | None:
    """One grid point in a submitit job: every task pretrains (one DDP group when the job has
    several, through submitit's distributed environment), then rank 0 evaluates."""
    if threads:
        _worker_init(threads)
    if submit.export_distributed() == 0:
        return _attempt(pretrain_and_evaluate, preset, overrides, out, probes, device,
                        print, split)
    if not is_finished(out):  # rank 0 skips a finished run too: nobody joins the group then
        pretrain(preset, out, overrides)
    return None


def _run_jobs(jobs: list[tuple[str, int]], grid: Grid, preset: str, extra: list[str],
              runs_root: Path, probes: list[str], device: str, kind: str,
              settings: ClusterSettings, detach: bool, log, split: str = "val"
              ) -> tuple[dict[tuple[str, int], tuple[dict | None, str | None]], list]:
    """Pretrain + evaluate `jobs` as submitit jobs (submit.run_jobs: one array on SLURM, each
    recorded in its run folder's job.json); finished runs with a cached evaluation are left to
    the caller. Returns (results, the jobs left running when detach)."""
    folders = {job: run_dir(runs_root, *job) for job in jobs}
    folders = {job: out for job, out in folders.items()
               if not (is_finished(out) and cached_eval(out, probes, split=split) is not None)}

    def make_calls(keys: list[tuple[str, int]]) -> dict:
        threads = settings.cpus_per_task if kind == "slurm" else threads_per_worker(len(keys))
        return {job: submit.CallJob(folders[job], _submitted_point, preset,
                                    run_overrides(grid, job[0], job[1], extra), folders[job],
                                    probes, device, threads, split) for job in keys}

    results = {}

    def on_done(job, value, error) -> str | None:
        results[job] = value if error is None else (None, error)
        error = results[job][1]
        log(f"  {job[0]} seed {job[1]}: {f'FAILED: {error}' if error else 'done'}")
        return error

    queued = submit.run_jobs(folders, make_calls, kind, settings, runs_root / ".submitit",
                             f"ablation-{grid.path.stem}", on_done=on_done, detach=detach,
                             log=log)
    return results, queued


# --- the whole table ------------------------------------------------------------------------------

def _row(variant: str, seed: int, result: dict) -> dict:
    return {"variant": variant, "seed": seed, "steps": result.get("step"),
            **{m: result.get(m) for m in METRICS}}


def _run_pool(jobs: list[tuple[str, int]], grid: Grid, preset: str, extra: list[str],
              runs_root, probes: list[str], device: str, workers: int, log, split: str = "val"
              ) -> dict[tuple[str, int], tuple[dict | None, str | None]]:
    """Pretrain + evaluate `jobs` on a pool of `workers` spawned processes (longest-first is
    the grid's order: seed-major, so the first seed's table is complete first)."""

    threads = threads_per_worker(workers)
    log(f"pool: {workers} workers x {threads} torch thread(s) for {len(jobs)} runs")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_worker_init, initargs=(threads, os.getpid()))
    try:
        futures = {job: pool.submit(_pretrain_job, preset, run_overrides(grid, job[0], job[1], extra),
                                    run_dir(runs_root, *job), probes, device,
                                    f"{job[0]}-s{job[1]}", split)
                   for job in jobs}
        results = {job: f.result() for job, f in futures.items()}
    except BaseException:
        # Ctrl-C or an error here: the executor's own shutdown would wait for the running
        # points to finish training; stop them instead (their last checkpoint resumes them).
        _terminate(pool)
        raise
    pool.shutdown()
    return results


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a process pool now, its running jobs included."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=10)


def _shown(path: str | Path) -> str:
    """A path as the table's header shows it: repo-relative when inside the repo."""
    p = Path(path).resolve()
    return str(p.relative_to(repo_root())) if p.is_relative_to(repo_root()) else str(path)


def run_ablation(grid_path: str | Path = DEFAULT_GRID, *, preset: str | None = None,
                 seeds: list[int] | None = None, variants: list[str] | None = None,
                 runs_root: str | Path = DEFAULT_RUNS, out_dir: str | Path = DEFAULT_OUT,
                 overrides: list[str] | None = None, probes: list[str] | None = None,
                 device: str = "cpu", command: str = "plaml-lab ablation",
                 workers: int = 1, executor: str = "local", detach: bool = False,
                 split: str | None = None, confidence: float = CONFIDENCE,
                 log=print) -> dict:
    """Run (or resume) the whole table; returns {rows, aggregate, failed, outputs}.
    `confidence`: the level of the paired intervals that give the claims' verdicts (0.95; a
    table that is a second look at a question reads a Bonferroni level, e.g. 0.975).

    workers > 1 pretrains that many grid points at once in spawned processes, each with
    max(1, cpu_count // workers) torch threads (small models use several cores poorly, so on a
    2-core CPU two one-thread runs finish a table sooner than one two-thread run at a time);
    the random-init baselines and the outputs follow in this process. Results are the same as
    with workers=1 up to the thread count's floating-point reduction order.

    executor submitit-local or slurm: one submitit job per pretrained point instead (a job array
    on SLURM, resources from the grid's `cluster` section and `cluster.*` overrides; several
    tasks per job train one point with DDP); detach returns once they are queued, with
    {"submitted": [...]}, and the same call later collects them.

    split: the held-out split every probe scores (default the grid's `split`, else val); the
    table's files and header name it."""

    if not 0 < confidence < 1:  # checked before any run starts, for the CLI and callers alike
        raise ConfigError(f"--confidence {confidence}: expected a level between 0 and 1, e.g. 0.95")
    grid = load_grid(grid_path)
    if BASELINE in grid.variants:
        raise ConfigError(f"{grid.path}: points.{BASELINE}: the name is reserved for the baseline")
    preset = str(preset or grid.config or DEFAULT_PRESET)
    split = split or grid.split or "val"
    if split not in ("val", "test"):
        raise ConfigError(f"--split {split}: choose val or test")
    grid.seeds = list(seeds or grid.seeds or [0])
    known = (*PROBES, FINETUNE)
    probes = list(probes) if probes else list(known)
    bad = [p for p in probes if p not in known]
    if bad:
        raise ConfigError(f"--probes: unknown probe '{bad[0]}'; available: {', '.join(known)}")
    check_kind(executor, detach)
    extra, cluster_overrides = split_cluster_overrides(list(overrides or []))
    settings = cluster_settings(grid.cluster, cluster_overrides)
    names = list(grid.variants)
    if variants:
        unknown = [v for v in variants if v not in grid.variants]
        if unknown:
            raise ConfigError(f"--variants: '{unknown[0]}' is not a point of {grid.path} "
                              f"({', '.join(names)})")
        names = [n for n in names if n in variants]
    baseline = grid.baseline or list(grid.variants)[-1]  # one random-init row for any --variants
    seeds = grid.seeds
    # Check every point's config before the first (long) run starts.
    cfgs = {n: load_config(preset, run_overrides(grid, n, seeds[0], extra))
            for n in dict.fromkeys([*names, baseline])}
    dataset = cfgs[names[0]].data.dataset

    rows, failed = [], {}
    jobs = ([(p.variant, p.seed) for p in grid.points if p.variant in names]
            + [(BASELINE, s) for s in seeds])
    t0 = time.perf_counter()
    pooled: dict[tuple[str, int], tuple[dict | None, str | None]] = {}
    if executor != "local":
        pooled, queued = _run_jobs([j for j in jobs if j[0] != BASELINE], grid, preset, extra,
                                   Path(runs_root).resolve(), probes, device, executor,
                                   settings, detach, log, split)
        if queued:
            return {"rows": [], "aggregate": {}, "failed": {}, "outputs": {},
                    "submitted": [f"{n}-s{s}" for n, s in queued],
                    "seconds": round(time.perf_counter() - t0, 1)}
    elif workers > 1:
        pooled = _run_pool([j for j in jobs if j[0] != BASELINE], grid, preset, extra, runs_root,
                           probes, device, workers, log, split)
    for i, (name, seed) in enumerate(jobs, 1):
        out = run_dir(runs_root, name, seed)
        log(f"[{i}/{len(jobs)}] {name} seed {seed} -> {out}  ({time.perf_counter() - t0:.0f} s)")
        if (name, seed) in pooled:
            result, error = pooled[(name, seed)]
        elif name == BASELINE:
            result, error = _attempt(random_init_evaluate, preset,
                                     run_overrides(grid, baseline, seed, extra), out, probes,
                                     device, log, split)
        else:
            result, error = _attempt(pretrain_and_evaluate, preset,
                                     run_overrides(grid, name, seed, extra), out, probes,
                                     device, log, split)
        if error is not None:
            failed[f"{name}-s{seed}"] = error
            log(f"  FAILED: {error}")
        else:
            rows.append(_row(name, seed, result))

    agg = aggregate(rows)
    header = {"dataset": dataset, "command": command, "preset": _shown(preset),
              "grid": _shown(grid.path),
              "seeds": seeds, "split": split, "date": datetime.now().strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, {platform.system()}, device {device}",
              "failed": failed}
    outputs = write_tables(rows, agg, Path(out_dir), header, confidence)
    return {"rows": rows, "aggregate": agg, "failed": failed, "outputs": outputs,
            "seconds": round(time.perf_counter() - t0, 1)}


def cmd_ablation(args) -> int:
    """`plaml-lab ablation` (cli.py defines the arguments)."""
    def split(text):
        return [t.strip() for t in text.split(",") if t.strip()] if text else None

    try:
        seeds = [int(s) for s in split(args.seeds)] if args.seeds else None
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds}: expected comma-separated integers") from None
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: expected an integer >= 1")
    command = " ".join(["plaml-lab ablation", *getattr(args, "argv", [])])
    result = run_ablation(args.grid, preset=args.preset, seeds=seeds,
                          variants=split(args.variants), runs_root=args.runs,
                          out_dir=args.out, overrides=args.overrides,
                          probes=split(args.probes), device=args.device, command=command,
                          workers=args.workers, executor=args.executor, detach=args.detach,
                          split=getattr(args, "split", None), confidence=args.confidence,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
    if result.get("submitted"):
        print(f"{len(result['submitted'])} run(s) queued (job.json in each run folder); the same "
              "command again waits for them and writes the table")
        return 0
    for kind, path in result["outputs"].items():
        print(f"{kind}: {path}")
    if result["failed"]:
        print(f"error: {len(result['failed'])} run(s) failed: {', '.join(result['failed'])}",
              file=sys.stderr)
        return 1
    return 0
