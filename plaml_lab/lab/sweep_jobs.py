"""A sweep's points as submitit jobs (`plaml-lab sweep --executor submitit-local|slurm`): one
job per point (one job array on SLURM) runs the same papermill execution as a local point
(plaml_lab.lab.sweep.run_point), so the point folder, done.json / error.txt and the results
table are the same whatever the executor; OUT/<point>/job.json records the job."""

from __future__ import annotations

from pathlib import Path

from plaml_lab.errors import ConfigError
from plaml_lab.lab import submit
from plaml_lab.lab.cluster import ClusterSettings
from plaml_lab.lab.grids import Grid, Point, threads_per_worker

_IN_JOB = None  # in a job process: the registry of the papermill process the point runs


def _point_job(run_point, registry, *args, **kwargs) -> dict:
    """run_point(*args, running=...) inside a submitit job, its papermill process (its own
    session) registered so that it stops with the job. The sweep passes run_point and its
    process registry class in (by reference): this module does not import the sweep."""
    global _IN_JOB
    _IN_JOB = registry()
    try:
        return run_point(*args, running=_IN_JOB, **kwargs)
    except BaseException:
        _IN_JOB.kill_all()
        raise


def _stop_point_job() -> None:
    """Preempted: stop papermill before submitit requeues the job (the requeued run resumes)."""
    if _IN_JOB is not None:
        _IN_JOB.kill_all()


def run_points(grid: Grid, todo: list[Point], out: Path, nb: Path, timeout: float | None,
               kind: str, settings: ClusterSettings, rows: dict, flush, *, run_point, registry,
               detach: bool = False, log=print) -> None:
    """One submitit job per point (submit.run_jobs); rows[point] is 'pending' until its job ends,
    then the row run_point returned (or a failed row naming why the job died)."""
    # a point is one notebook process: its GPUs are for that process (DDP is `pretrain`'s)
    if settings.tasks_per_node is None:
        settings.tasks_per_node = 1
    if settings.tasks_per_node != 1 or settings.nodes != 1:
        raise ConfigError("cluster.tasks_per_node / cluster.nodes: a sweep point is one notebook "
                          "process (1 task on 1 node); multi-process pretraining is "
                          "`plaml-lab pretrain --executor slurm` or the ablation runner")
    points = {p.name: p for p in todo}

    def make_calls(names: list[str]) -> dict:
        # points running side by side on this machine share its cores; a SLURM job has its own
        threads = settings.cpus_per_task if kind == "slurm" else threads_per_worker(len(names))
        for name in names:
            for stale in ("done.json", "error.txt"):
                (out / name / stale).unlink(missing_ok=True)
        return {n: submit.CallJob(out / n, _point_job, run_point, registry, grid, points[n], out,
                                  notebook=nb, timeout=timeout, threads=threads,
                                  on_checkpoint=_stop_point_job) for n in names}

    def on_done(name: str, row: dict | None, error: str | None) -> str | None:
        if row is None:  # the job died: no row from run_point
            (out / name / "error.txt").write_text(error + "\n")
            row = {"point": name, "status": "failed", "executed": True, "seconds": None,
                   "overrides": points[name].run_overrides(), "error": error}
        rows[name] = row
        flush()
        if log:
            what = "done" if row["status"] == "done" else f"FAILED ({row['error']})"
            log(f"{name}: {what}")
        return row["error"] or None

    pending = {"status": "pending", "executed": False, "seconds": None, "error": ""}
    for p in todo:
        rows[p.name] = {"point": p.name, **pending, "overrides": p.run_overrides()}
    flush()
    submit.run_jobs({p.name: out / p.name for p in todo}, make_calls, kind, settings,
                    out / ".submitit", f"sweep-{grid.path.stem}", on_done=on_done, detach=detach,
                    log=log)
