"""Grid points and pretraining runs as submitit jobs (`--executor submitit-local|slurm`):
submitit does the work (sbatch scripts, job arrays, logs, pickled results, the USR2 preemption
and time-limit signal, requeueing); this module wraps the lab's calls as submitit
`Checkpointable`s, submits them with plaml_lab.lab.cluster's executors, and records each job
next to what it computes:

    <folder>/job.json   {"executor", "job_id", "state", "submitted", "stdout", "stderr",
                         "tasks", "cluster", "starts": [{"job_id", "at", "host"}, ...], ...}

A job that receives USR2 (preemption, or the time limit's warning) runs its `checkpoint()`,
which requeues the same call: the run folder then resumes exactly from checkpoints/last.pt.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable, TorchDistributedEnvironment, as_completed

from plaml_lab.config import load_config
from plaml_lab.errors import ConfigError
from plaml_lab.lab.cluster import (ClusterSettings, cluster_settings, local_gpus, make_executor,
                                   split_cluster_overrides)

RECORD = "job.json"
# States after which a job will not change any more (SLURM's, and submitit-local's).
# Not PREEMPTED: a preempted job requeues itself and comes back under the same id.
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                "BOOT_FAIL", "DEADLINE", "FINISHED", "INTERRUPTED", "DONE",
                "NO PROCESS AND NO RESULT"}


# --- jobs ---------------------------------------------------------------------------------------

class LabJob:
    """Base of the lab's submitit callables: rank 0 records each start, and the end, in the
    job.json of the folder the job computes into (so a detached job's state is known without
    the scheduler)."""

    record_dir: Path

    def _run(self, fn):
        env = submitit.JobEnvironment()
        main = env.global_rank == 0
        if main:
            rec = read_record(self.record_dir) or {}
            rec.setdefault("starts", []).append({"job_id": env.job_id, "at": _now(),
                                                 "host": env.hostname})
            rec["state"] = "RUNNING"
            write_record(self.record_dir, rec)
        try:
            out = fn()
        except Exception as e:  # recorded, then raised for submitit to pickle
            if main:
                finish_record(self.record_dir, "FAILED",
                              f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}")
            raise
        if main:
            finish_record(self.record_dir, "COMPLETED")
        return out


def export_distributed() -> int:
    """Inside a job: export MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK for torch's env://
    (submitit's TorchDistributedEnvironment, from SLURM's or the local controller's variables);
    returns this task's rank. Each task picks its GPU from LOCAL_RANK (the trainer), so every
    GPU stays visible."""
    env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return env.rank


class PretrainJob(Checkpointable, LabJob):
    """`pretrain(config, out, overrides)` as a job. With several tasks (nodes x tasks_per_node)
    submitit's TorchDistributedEnvironment exports MASTER_ADDR/PORT, RANK, WORLD_SIZE and
    LOCAL_RANK, and the trainer's env:// setup forms the group (NCCL on GPUs, gloo on CPU).
    Preempted or timed out, checkpoint() (submitit's default: the same call) requeues it and the
    run resumes exactly from out/checkpoints/last.pt. `callback(row)` is the trainer's."""

    def __init__(self, config, out: str | Path, overrides: list[str], callback=None):
        self.config = None if config is None else str(config)
        self.out = str(out)
        self.overrides = list(overrides)
        self.callback = callback
        self.record_dir = Path(out)

    def __call__(self) -> dict:
        from plaml_lab.train import pretrain  # torch: only in a pretraining job's process

        export_distributed()
        return self._run(lambda: pretrain(self.config, self.out, self.overrides,
                                          callback=self.callback))


class CallJob(Checkpointable, LabJob):
    """`fn(*args, **kwargs)` as a job whose results live in `record_dir` (a sweep point, an
    ablation run): requeued as is on preemption, since the call resumes from its folder.
    `on_checkpoint`, if given, runs first (the sweep stops its papermill process group)."""

    def __init__(self, record_dir: str | Path, fn, *args, on_checkpoint=None, **kwargs):
        self.record_dir = Path(record_dir)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.on_checkpoint = on_checkpoint

    def __call__(self):
        return self._run(lambda: self.fn(*self.args, **self.kwargs))

    def checkpoint(self, *args, **kwargs):
        if self.on_checkpoint is not None:
            self.on_checkpoint()
        return super().checkpoint(*args, **kwargs)


# --- records ------------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_record(folder: str | Path) -> dict | None:
    path = Path(folder) / RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_record(folder: str | Path, record: dict) -> None:
    """folder/job.json, replaced atomically (the job and the submitter both update it). Not
    runs.checkpoint.write_atomic: that module imports torch, and every job process writes this
    record, including a sweep point's, whose notebook kernel is what needs torch."""
    path = Path(folder) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RECORD}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def record_submission(folder: str | Path, job, kind: str, settings: ClusterSettings) -> dict:
    """Write folder/job.json for a just-submitted submitit job and return it."""
    rec = {"executor": kind, "job_id": str(job.job_id), "state": "SUBMITTED",
           "submitted": _now(), "submitit_folder": str(job.paths.folder),
           "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
           "tasks": job.num_tasks,
           "cluster": {k: v for k, v in asdict(settings).items() if v not in (None, [])},
           "starts": []}
    write_record(folder, rec)
    return rec


def finish_record(folder: str | Path, state: str, error: str | None = None) -> None:
    rec = read_record(folder) or {}
    rec["state"] = state
    rec["finished"] = _now()
    if error:
        rec["error"] = error
    else:
        rec.pop("error", None)
    write_record(folder, rec)


def live_state(rec: dict) -> str:
    """The job's state now: SLURM's (sacct, through submitit) for slurm jobs; for submitit-local
    RUNNING while its controller process lives; else the recorded state."""
    kind, job_id, state = rec.get("executor"), rec.get("job_id"), rec.get("state", "UNKNOWN")
    if state in FINAL_STATES or not job_id:
        return state
    if kind == "slurm":
        try:
            return submitit.SlurmJob(rec["submitit_folder"], job_id).state
        except Exception as e:  # noqa: BLE001 - sacct missing or unreachable: say so, keep going
            return f"{state} (sacct: {type(e).__name__})"
    if kind == "submitit-local":
        try:
            os.kill(int(job_id), 0)
            return "RUNNING"
        except (OSError, ValueError):
            return "INTERRUPTED"
    return state


def in_flight(rec: dict | None) -> bool:
    """A submitted job that has not reached a final state (re-runs attach instead of resubmit)."""
    if not rec or rec.get("executor") not in ("slurm", "submitit-local"):
        return False
    return live_state(rec).split(" ")[0] not in FINAL_STATES


def attach(rec: dict):
    """A submitit job object for a recorded SLURM job (to wait for it again)."""
    return submitit.SlurmJob(rec["submitit_folder"], rec["job_id"])


def result(job):
    """What rank 0 returned (submitit keeps one result per task; raises if the job failed)."""
    return job.results()[0]


def job_error(job) -> str:
    """One line for a job that ended without a result (its exception, else its log's tail)."""
    try:
        exc = job.exception()
    except Exception as e:  # noqa: BLE001 - submitit raises when the job left no result
        exc = e
    text = str(exc).strip() if exc is not None else ""
    # submitit's FailedJobError puts the remote traceback between two dashed rules (then the log
    # paths): the traceback's last line names the error
    parts = text.split("-" * 22)
    lines = [ln.strip() for ln in (parts[1] if len(parts) > 2 else text).splitlines()
             if ln.strip()]
    return lines[-1] if lines else f"job {job.job_id} ended without a result"


def wait(jobs: dict, on_done, poll_s: float = 2.0) -> None:
    """Call on_done(key, job) for each of {key: job} as it finishes, in completion order."""
    by_id = {id(j): k for k, j in jobs.items()}
    for job in as_completed(list(jobs.values()), poll_frequency=poll_s):
        on_done(by_id[id(job)], job)


def describe(rec: dict | None, error: bool = True) -> str:
    """`--status` line for one record (its error too unless error=False)."""
    if not rec:
        return "not submitted"
    starts = len(rec.get("starts", []))
    parts = [f"{rec.get('executor')} job {rec.get('job_id')}", live_state(rec)]
    if starts > 1:
        parts.append(f"{starts} starts (requeued {starts - 1}x)")
    if error and rec.get("error"):
        parts.append(rec["error"])
    parts.append(f"log {rec.get('stdout')}")
    return ", ".join(parts)



# --- many jobs at once ---------------------------------------------------------------------------

def submit_jobs(calls: dict, kind: str, settings: ClusterSettings, folder: str | Path,
           name: str) -> dict:
    """Submit {key: LabJob} as one batch (one SLURM job array when there are several) and write
    each job's record into its LabJob's record_dir; returns {key: submitit job}."""
    ex = make_executor(kind, folder, settings, name)
    gpus, assigned = settings.gpus(kind), {}
    if kind == "submitit-local" and gpus:
        # one machine, several jobs at once: each its own GPUs, round-robin over the machine's
        ids = local_gpus()
        if gpus > len(ids):
            raise ConfigError(f"cluster.gpus_per_node={gpus}: this machine shows {len(ids)} "
                              "GPU(s) (CUDA_VISIBLE_DEVICES or nvidia-smi -L)")
        jobs = {}
        for i, (key, call) in enumerate(calls.items()):
            assigned[key] = [ids[(i * gpus + k) % len(ids)] for k in range(gpus)]
            ex.update_parameters(gpus_per_node=gpus, visible_gpus=tuple(assigned[key]))
            jobs[key] = ex.submit(call)
    else:
        with ex.batch():
            jobs = {key: ex.submit(call) for key, call in calls.items()}
    for key, job in jobs.items():  # ids exist once the batch is closed
        rec = record_submission(calls[key].record_dir, job, kind, settings)
        if key in assigned:
            rec["gpus"] = assigned[key]
            write_record(calls[key].record_dir, rec)
    return jobs


def run_jobs(folders: dict, make_calls, kind: str, settings: ClusterSettings, log_dir: Path,
             name: str, *, on_done, detach: bool = False, log=print) -> list:
    """One job per key of {key: folder} (one array on SLURM); a folder whose job.json names a
    SLURM job still queued or running is waited for, not submitted again.

    make_calls(keys) -> {key: LabJob} for the keys to submit; on_done(key, value, error) gets,
    as each job ends, what it returned (error None) or the one-line error of a job that died
    (value None), and returns the point's own error or None, which goes into job.json (FAILED
    or DONE). Returns the keys left running when detach (after logging their ids); Ctrl-C
    cancels submitit-local jobs and leaves SLURM jobs running."""
    waiting, fresh = {}, []
    for key, folder in folders.items():
        rec = read_record(folder)
        if kind == "slurm" and rec and rec.get("executor") == "slurm" and in_flight(rec):
            waiting[key] = attach(rec)
        else:
            fresh.append(key)
    calls = make_calls(fresh) if fresh else {}
    if calls:
        waiting.update(submit_jobs(calls, kind, settings, log_dir, name))
    if log:
        ids = ", ".join(f"{k}={j.job_id}" for k, j in waiting.items())
        log(f"{kind}: {len(calls)} job(s) submitted, {len(waiting) - len(calls)} already "
            f"queued ({ids})")
    if detach:
        return list(waiting)

    def done(key, job) -> None:
        try:
            value, error = result(job), None
        except Exception:  # noqa: BLE001 - the job died (killed, out of memory, time limit)
            value, error = None, job_error(job)
        error = on_done(key, value, error)
        finish_record(folders[key], "FAILED" if error else "DONE", error)

    try:
        wait(waiting, done, poll_s=1.0 if kind == "submitit-local" else 30.0)
    except KeyboardInterrupt:
        if kind == "submitit-local":
            for job in waiting.values():
                job.cancel(check=False)
        else:
            print("the SLURM jobs keep running; the same command again waits for them and "
                  "collects them", file=sys.stderr)
        raise
    return []


def submit_pretrain(config, out, overrides: list[str], kind: str,
                    settings: ClusterSettings, *, force_new: bool = False, callback=None):
    """Check the config and run folder here, then submit one PretrainJob (nodes x tasks_per_node
    processes); returns (job, out). force_new moves an existing run aside now, before the job's
    logs go into out/submitit/."""
    from plaml_lab.runs.folder import check_run_dir, dated_aside  # torch: only for pretrain

    cfg = load_config(config, overrides)
    out = Path(out or f"experiments/runs/{cfg.run.name}").expanduser().resolve()
    if check_run_dir(out, cfg, force_new) == "aside":
        aside = dated_aside(out)
        os.replace(out, aside)
        print(f"moved the previous run aside to {aside}")
    call = PretrainJob(config, out, overrides, callback=callback)
    name = f"pretrain-{cfg.run.name}"
    job = submit_jobs({"run": call}, kind, settings, out / "submitit", name)["run"]
    return job, out


def cmd_pretrain_job(args) -> int:
    """`plaml-lab pretrain --executor submitit-local|slurm`: submit, then wait for the job and
    print its summary (or, with --detach, return once it is queued)."""
    overrides, cluster = split_cluster_overrides(args.overrides)
    settings = cluster_settings(None, cluster)
    job, out = submit_pretrain(args.config, args.out, overrides, args.executor, settings,
                               force_new=args.force_new)
    rec = read_record(out)
    print(f"{args.executor} job {job.job_id}: {out} (record {out / RECORD}, log {rec['stdout']})",
          file=sys.stderr)
    if args.detach:
        return 0
    try:
        summary = result(job)
    except KeyboardInterrupt:
        if args.executor == "submitit-local":
            job.cancel(check=False)
        raise
    except Exception:  # noqa: BLE001 - the job failed: its error in one line, and the log
        error = job_error(job)
        finish_record(out, "FAILED", error)
        print(f"error: job {job.job_id} failed: {error} (log {rec['stderr']})", file=sys.stderr)
        return 1
    finish_record(out, "DONE")
    print(json.dumps(summary, indent=2))
    return 0
