"""Batch runs of one notebook over a grid of overrides (papermill), with a results table.

The grid file format is lab/grids.py's (the one parser sweep and ablation share); each point
is one papermill execution of the notebook (the grid's `notebook`, default
notebooks/01_pretrain.ipynb) into OUT/<point>/, with the parameters `config`, `overrides`
(grid-wide, then the point's, then run.seed=<seed> when the grid lists seeds) and `out_dir`
(OUT/<point>/run).

A point that completed (OUT/<point>/done.json with the same notebook, config, overrides and
parameters) is skipped on a re-run; a failed point leaves OUT/<point>/error.txt (the failing
cell's error) and does not stop the others. Ctrl-C stops every point in flight.
OUT/results.csv has one row per point: point, status (done|failed), executed, seconds,
overrides, one column per overridden key, the run's summary.json metrics, error.

With a submitit executor (`executor="submitit-local"|"slurm"`, plaml_lab.lab.submit) each point
is one job (one job array on SLURM) that runs the same papermill execution; OUT/<point>/job.json
records it, the table is collected from the point folders the same way, and a point queued with
`detach` shows as status `pending` until a later call collects it. The grid's `cluster:` section
(docs/cluster.md) holds the jobs' resources.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from plaml_lab.paths import checkout_of, find_file, repo_root
from plaml_lab.errors import ConfigError
from plaml_lab.lab import submit
from plaml_lab.lab.cluster import check_kind, cluster_settings, split_cluster_overrides
from plaml_lab.lab.grids import Grid, Point, load_grid, override_list, threads_per_worker
from plaml_lab.lab.running import Running, kill_point, terminate_as_interrupt
from plaml_lab.lab.sweep_jobs import run_points
from plaml_lab.runs.checkpoint import atomic_path
from plaml_lab.runs.folder import read_json

DEFAULT_NOTEBOOK = "notebooks/01_pretrain.ipynb"
KERNEL = "python3"


def kernel_path(folder: Path, env: dict) -> str:
    """A JUPYTER_PATH whose first entry (`folder`) holds kernel KERNEL for this interpreter:
    papermill's kernel then imports this plaml_lab whatever kernels the user has registered
    (a pip install registers none; a user-wide `python3` may be another Python)."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python 3 ({sys.executable})", "language": "python"}))
    return os.pathsep.join([str(folder), *[p for p in [env.get("JUPYTER_PATH")] if p]])


# --- one point ----------------------------------------------------------------------------------

def notebook_error(nb_path: Path) -> str | None:
    """"cell N (id): EName: value" for the first cell of an executed notebook with an error
    output (N counts code cells, papermill's injected parameters included)."""
    nb = read_json(nb_path)
    if not isinstance(nb, dict):
        return None
    n = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        if "papermill-error-cell-tag" in cell.get("metadata", {}).get("tags", []):
            continue
        n += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                value = str(out.get("evalue", "")).strip().splitlines()
                cid = f" ({cell['id']})" if cell.get("id") else ""
                return f"cell {n}{cid}: {out.get('ename')}: {value[0] if value else ''}"
    return None


def _summary_metrics(run_dir: Path) -> dict:
    """Scalar entries of the run's summary.json (the run path itself left out)."""
    summary = read_json(run_dir / "summary.json")
    if not isinstance(summary, dict):
        return {}
    return {k: v for k, v in summary.items()
            if k != "run" and (v is None or isinstance(v, (int, float, str, bool)))}


def notebook_of(grid: Grid) -> Path:
    """The grid's notebook, else DEFAULT_NOTEBOOK of the checkout holding the grid, else the
    package's copy (plaml_lab.paths)."""
    checkout = checkout_of(grid.path.resolve().parent)
    return grid.notebook or find_file(DEFAULT_NOTEBOOK, "notebook",
                                      [checkout] if checkout else [])


def run_point(grid: Grid, point: Point, out: Path, *, notebook: Path | None = None,
              timeout: float | None = None, threads: int | None = None,
              running: Running | None = None) -> dict:
    """Execute the notebook for one point into out/<point>/; returns its results row."""
    nb = notebook or notebook_of(grid)
    point_dir = out / point.name
    point_dir.mkdir(parents=True, exist_ok=True)
    nb_out = point_dir / nb.name
    run_dir = point_dir / "run"
    overrides = point.run_overrides(grid.overrides)
    params = {**grid.parameters, "overrides": overrides, "out_dir": str(run_dir)}
    if grid.config is not None:
        params["config"] = str(grid.config)
    for stale in ("done.json", "error.txt", nb_out.name):
        (point_dir / stale).unlink(missing_ok=True)

    cmd = [sys.executable, "-m", "papermill", str(nb), str(nb_out),
           "-y", yaml.safe_dump(params, default_flow_style=True),
           "-k", KERNEL, "--cwd", str(nb.parent), "--no-progress-bar", "--log-level", "ERROR"]
    if timeout:
        cmd += ["--execution-timeout", str(int(timeout))]  # per cell; the wall clock is below
    env = os.environ.copy()
    if threads:
        # parallel points share the cores; torch reads this when the kernel imports it
        env.setdefault("OMP_NUM_THREADS", str(threads))
    t0 = time.perf_counter()
    log = point_dir / "papermill.log"
    with open(log, "w") as log_f, tempfile.TemporaryDirectory(prefix="plaml-kernel-") as kdir:
        env["JUPYTER_PATH"] = kernel_path(Path(kdir), env)
        proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        if running is not None:
            running.add(proc)
        try:
            rc = proc.wait(timeout=timeout)
            error = None
        except subprocess.TimeoutExpired:
            kill_point(proc)
            proc.wait()
            rc, error = -1, f"timeout: stopped after {timeout:g} s"
        finally:
            if running is not None:
                running.discard(proc)
        if running is not None and running.stopping and rc != 0:
            error = "interrupted"
    seconds = round(time.perf_counter() - t0, 1)

    if rc != 0 and error is None:
        error = notebook_error(nb_out)
        if error is None:
            tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            error = tail[-1] if tail else f"papermill exited with {rc}"
    row = {"point": point.name, "status": "failed" if error else "done", "executed": True,
           "seconds": seconds, "overrides": point.run_overrides(), "error": error or ""}
    if error:
        (point_dir / "error.txt").write_text(error + "\n")
        return row
    row.update(_summary_metrics(run_dir))
    done = {"point": point.name, **_identity(grid, point, nb), "seconds": seconds,
            "metrics": _summary_metrics(run_dir)}
    (point_dir / "done.json").write_text(json.dumps(done, indent=2) + "\n")
    return row


def _identity(grid: Grid, point: Point, nb: Path) -> dict:
    """What makes a completed point reusable: the same notebook, config, overrides and
    notebook parameters."""
    return {"notebook": str(nb), "config": str(grid.config) if grid.config else None,
            "overrides": point.run_overrides(grid.overrides), "parameters": grid.parameters}


def _completed(grid: Grid, point: Point, out: Path, nb: Path) -> dict | None:
    """The results row of a point that completed earlier with the same notebook, config and
    overrides, else None."""
    done = read_json(out / point.name / "done.json")
    if not isinstance(done, dict):
        return None
    if any(done.get(k) != v for k, v in _identity(grid, point, nb).items()):
        return None
    row = {"point": point.name, "status": "done", "executed": False,
           "seconds": done.get("seconds"), "overrides": point.run_overrides(), "error": ""}
    row.update(_summary_metrics(out / point.name / "run") or done.get("metrics", {}))
    return row


# --- the table ----------------------------------------------------------------------------------

def _override_columns(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        for o in r["overrides"]:
            k = o.split("=", 1)[0]
            if k not in keys:
                keys.append(k)
    return keys


def write_results(rows: list[dict], path: Path) -> None:
    """results.csv: point, status, executed, seconds, overrides, one column per overridden key,
    metrics (in first-seen order), error."""
    fixed = ["point", "status", "executed", "seconds", "overrides"]
    keys = _override_columns(rows)
    metrics: list[str] = []
    for r in rows:
        for k in r:
            if k not in fixed and k != "error" and k not in metrics:
                metrics.append(k)
    header = fixed + keys + metrics + ["error"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for r in rows:
            values = dict(r)
            given = dict(o.split("=", 1) for o in r["overrides"])
            values["overrides"] = " ".join(r["overrides"])
            for k in keys:
                values[k] = given.get(k, "")
            w.writerow({h: values.get(h, "") for h in header})


def read_results(path: str | Path) -> list[dict]:
    """results.csv back as a list of dicts (strings as written)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- the sweep ----------------------------------------------------------------------------------

def default_out(grid_path: str | Path) -> Path:
    return repo_root() / "experiments" / "runs" / "sweeps" / Path(grid_path).stem


def run_sweep(grid_path: str | Path, notebook: str | Path | None = None,
              out: str | Path | None = None, workers: int = 1, timeout: float | None = None,
              *, config: str | Path | None = None, overrides: list[str] | None = None,
              executor: str = "local", detach: bool = False, log=print) -> list[dict]:
    """Run every point of a grid (skipping completed ones) with `workers` points in parallel;
    writes out/results.csv after each point and returns the rows in grid order.

    timeout: seconds per point (default: the grid's `timeout`, else none); config replaces the
    grid's preset; overrides are appended to the grid's overrides (before each point's);
    `cluster.key=value` overrides set the grid's cluster section instead. executor: local
    (papermill processes from here), submitit-local or slurm (one submitit job per point, a job
    array on SLURM; `workers` does not apply); detach: submit and return (rows 'pending')."""
    check_kind(executor, detach)
    grid = load_grid(grid_path)
    if config:
        grid.config = find_file(config, "--config")
    overrides, cluster_overrides = split_cluster_overrides(list(overrides or []))
    settings = cluster_settings(grid.cluster, cluster_overrides)
    grid.overrides = grid.overrides + override_list(overrides, "overrides")
    nb = find_file(notebook, "--notebook") if notebook else notebook_of(grid)
    out = Path(out).expanduser().resolve() if out else default_out(grid_path)
    out.mkdir(parents=True, exist_ok=True)
    timeout = timeout or grid.timeout
    workers = max(1, int(workers))
    threads = threads_per_worker(workers) if workers > 1 else None

    rows: dict[str, dict] = {}
    todo = []
    for p in grid.points:
        row = _completed(grid, p, out, nb)
        if row is None:
            todo.append(p)
        else:
            rows[p.name] = row
    results_path = out / "results.csv"
    lock = threading.Lock()
    order = [p.name for p in grid.points]

    def flush() -> None:
        write_results([rows[n] for n in order if n in rows], results_path)

    if log:
        how = f"{workers} in parallel" if executor == "local" else f"executor {executor}"
        log(f"sweep {Path(grid_path).name}: {len(grid.points)} points, {len(rows)} already done, "
            f"{len(todo)} to run ({how}) -> {out}")
    with lock:
        flush()
    finished = 0

    running = Running()

    def one(p: Point) -> None:
        nonlocal finished
        if running.stopping:
            return
        row = run_point(grid, p, out, notebook=nb, timeout=timeout, threads=threads,
                        running=running)
        with lock:
            rows[p.name] = row
            finished += 1
            flush()
            if log:
                what = (f"done in {row['seconds']:.0f} s" if row["status"] == "done"
                        else f"FAILED ({row['error']})")
                log(f"[{finished}/{len(todo)}] {p.name}: {what}")

    if todo and executor != "local":
        run_points(grid, todo, out, nb, timeout, executor, settings, rows, flush,
                   run_point=run_point, registry=Running, detach=detach, log=log)
        return [rows[n] for n in order]
    if todo:
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            with terminate_as_interrupt():
                for f in [pool.submit(one, p) for p in todo]:
                    f.result()
        except BaseException:  # Ctrl-C, kill (or a bug): stop every point in flight, re-raise
            running.kill_all()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return [rows[n] for n in order]


def sweep_status(grid_path: str | Path, out: str | Path | None = None) -> list[tuple[str, str]]:
    """(point, one-line state) for every grid point: done / failed from the point's folder, else
    its job record (job id, live state, requeues, log path)."""
    grid = load_grid(grid_path)
    out = Path(out).expanduser().resolve() if out else default_out(grid_path)
    lines = []
    for p in grid.points:
        folder = out / p.name
        rec = submit.read_record(folder)
        job = f" [{submit.describe(rec, error=False)}]" if rec else ""
        if (folder / "done.json").is_file():
            lines.append((p.name, f"done{job}"))
        elif (folder / "error.txt").is_file():
            error = (folder / "error.txt").read_text().strip()
            lines.append((p.name, f"failed: {error}{job}"))
        elif rec:
            lines.append((p.name, submit.describe(rec)))
        else:
            lines.append((p.name, "not started"))
    return lines


# --- CLI ----------------------------------------------------------------------------------------


def cmd_sweep(args) -> int:
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be at least 1")
    if args.status:
        for name, state in sweep_status(args.grid, args.out):
            print(f"{name}: {state}")
        return 0
    if args.dry_run:
        grid = load_grid(args.grid)
        for p in grid.points:
            print(f"{p.name}: {' '.join(p.run_overrides(grid.overrides + args.overrides))}")
        return 0
    rows = run_sweep(args.grid, args.notebook, args.out, args.workers, args.timeout,
                     config=args.config, overrides=args.overrides, executor=args.executor,
                     detach=args.detach)
    failed = [r for r in rows if r["status"] == "failed"]
    pending = [r for r in rows if r["status"] == "pending"]
    ran = sum(bool(r["executed"]) for r in rows)
    out = Path(args.out).resolve() if args.out else default_out(args.grid)
    done = len(rows) - len(failed) - len(pending)
    print(f"{done}/{len(rows)} points done ({ran} executed now, {len(failed)} failed"
          + (f", {len(pending)} submitted" if pending else "") + f"); table: {out / 'results.csv'}")
    if pending:
        print(f"follow: plaml-lab sweep {args.grid} --status"
              + (f" --out {args.out}" if args.out else ""))
    for r in failed:
        print(f"failed: {r['point']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0
