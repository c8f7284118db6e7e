"""plaml_lab.lab.cluster and .submit: cluster settings, grid points and pretraining runs as
submitit jobs.

The jobs run under submitit's LocalExecutor (real subprocesses, submitit's own signal handling
and requeueing); the SLURM path is checked on the sbatch script submitit writes, with stand-in
`srun`, `sbatch` and `sacct` commands on PATH (no cluster)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from plaml_lab.errors import ConfigError
from plaml_lab.lab import submit
from plaml_lab.lab.cluster import EXECUTORS, cluster_settings

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_pretrain.ipynb"
QUICK = ROOT / "experiments" / "configs" / "quick.yaml"
# Bitwise comparisons need the same kernels in every process: one thread, fp32.
DET = ["run.num_threads=1", "run.precision=fp32", "run.eval_knn=false", "run.deterministic=true"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- cluster settings ---------------------------------------------------------------------------

def test_cluster_settings_read_the_grid_section_then_dotted_overrides():
    s = cluster_settings({"partition": "gpu", "gpus_per_node": 8, "sbatch": "--qos=high"},
                         ["cluster.nodes=2", "cluster.partition=big", "cluster.mem_gb=500"])
    assert (s.partition, s.nodes, s.gpus_per_node, s.mem_gb) == ("big", 2, 8, 500)
    assert s.sbatch == ["--qos=high"]
    assert s.tasks("slurm") == 8  # one process per GPU unless told
    assert cluster_settings().gpus("slurm") == 1 and cluster_settings().gpus("submitit-local") == 0


@pytest.mark.parametrize("section, overrides, needle", [
    ({}, ["cluster.nodes=two"], "cluster.nodes: expected an integer"),
    ({}, ["cluster.nodes=0"], "cluster.nodes: must be at least 1"),
    ({"gpus_per_node": -1}, [], "cluster.gpus_per_node: must be at least 0"),
    ({"mem_gb": "lots"}, [], "cluster.mem_gb: expected a positive number"),
    ({"partiton": "gpu"}, [], "cluster.partiton: unknown cluster setting"),
    ({}, ["cluster.sbatch=[qos=high]"], "cluster.sbatch: 'qos=high' is not an sbatch option"),
    ({}, ["cluster.time_min=1.5"], "cluster.time_min: expected an integer"),
    ({"partition": ""}, [], "cluster.partition: expected a non-empty string"),
])
def test_bad_cluster_values_raise_one_line_errors_naming_the_key(section, overrides, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        cluster_settings(section, overrides)


def test_cli_bad_cluster_value_exits_2_with_one_line_error(tmp_path, capsys):
    from plaml_lab import cli
    grid = tmp_path / "g.yaml"
    grid.write_text(f"config: {QUICK}\npoints:\n  a: [run.seed=0]\ncluster:\n  nodes: many\n")
    assert cli.main(["sweep", str(grid), "--executor", "slurm", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cluster.nodes: expected an integer" in err
    assert cli.main(["pretrain", "--executor", "submitit-local", "--out", str(tmp_path / "r"),
                     "cluster.time_min=soon"]) == 2
    assert "cluster.time_min: expected an integer" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing submitted, nothing written
    grid.write_text(f"config: {QUICK}\npoints:\n  a: [run.seed=0]\n")
    for cmd in (["sweep", str(grid)], ["pretrain"], ["ablation", "--grid", str(grid)]):
        assert cli.main([*cmd, "--out", str(tmp_path / "d"), "--detach"]) == 2
        assert "--detach: only with --executor submitit-local or slurm" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    assert cli.main(["pretrain", "--out", str(tmp_path / "d"), "cluster.nodes=2"]) == 2
    assert "cluster.nodes=2: cluster settings are for --executor" in capsys.readouterr().err


# --- SLURM without a cluster --------------------------------------------------------------------

FAKE_SACCT = """#!/bin/sh
echo 'JobID|State|NodeList'
echo '4242_0|COMPLETED|n1'
echo '4242_1|RUNNING|n2'
echo '4242_2|PENDING|None'
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """srun/sbatch/sacct stand-ins on PATH; sbatch keeps each script it is given in scripts/."""
    bin_dir, scripts = tmp_path / "bin", tmp_path / "scripts"
    bin_dir.mkdir()
    scripts.mkdir()
    tools = {"srun": "#!/bin/sh\nexit 0\n",
             "sbatch": f'#!/bin/sh\nn=$(ls {scripts} | wc -l)\ncp "$1" {scripts}/$n.sh\n'
                       'echo "Submitted batch job $((4242 + n))"\n',
             "sacct": FAKE_SACCT}
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return scripts


def test_slurm_sweep_is_one_job_array_with_partition_gpus_and_requeue_signal(tmp_path, fake_slurm,
                                                                             capsys):
    from plaml_lab import cli
    grid = tmp_path / "g.yaml"
    grid.write_text(f"""
notebook: {NOTEBOOK}
config: {QUICK}
points:
  a: [run.seed=0]
  b: [run.seed=1]
  c: [run.seed=2]
cluster:
  partition: gpu
  account: plaml
  gpus_per_node: 4
  time_min: 600
  constraint: a100
  sbatch: ["--qos=high", "--exclusive"]
  setup: ["module load cuda"]
""")
    out = tmp_path / "sweep"
    assert cli.main(["sweep", str(grid), "cluster.mem_gb=64", "--out", str(out), "--executor",
                     "slurm", "--detach"]) == 0
    scripts = sorted(fake_slurm.iterdir())
    assert len(scripts) == 1, "three points must go out as one array job"
    text = scripts[0].read_text()
    for line in ["#SBATCH --partition=gpu", "#SBATCH --account=plaml", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --array=0-2%3", "#SBATCH --time=600",
                 "#SBATCH --signal=USR2@120", "#SBATCH --constraint=a100", "#SBATCH --mem=64GB",
                 "#SBATCH --qos=high", "#SBATCH --exclusive", "module load cuda"]:
        assert line in text.splitlines(), line
    assert "submitit.core._submit" in text and "srun" in text
    for i, name in enumerate("abc"):
        rec = json.loads((out / name / "job.json").read_text())
        assert rec["executor"] == "slurm" and rec["job_id"] == f"4242_{i}"
        assert rec["stdout"].endswith(f"4242_{i}_0_log.out")
    assert {r["point"]: r["status"] for r in read_csv(out / "results.csv")} == {
        "a": "pending", "b": "pending", "c": "pending"}

    capsys.readouterr()
    assert cli.main(["sweep", str(grid), "--out", str(out), "--status"]) == 0
    status = capsys.readouterr().out
    assert "a: slurm job 4242_0, COMPLETED" in status and "b: slurm job 4242_1, RUNNING" in status
    assert "c: slurm job 4242_2, PENDING" in status and "4242_2_0_log.out" in status

    # again: the queued and running jobs are waited for, not submitted twice; `a` ended without
    # leaving a result in its folder, so it alone is submitted again (a single job, no array)
    assert cli.main(["sweep", str(grid), "--out", str(out), "--executor", "slurm",
                     "--detach"]) == 0
    scripts = sorted(fake_slurm.iterdir())
    assert len(scripts) == 2 and "--array" not in scripts[1].read_text()
    assert json.loads((out / "a" / "job.json").read_text())["job_id"] == "4243"
    assert json.loads((out / "b" / "job.json").read_text())["job_id"] == "4242_1"


def test_slurm_without_slurm_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from plaml_lab import cli
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    grid = tmp_path / "g.yaml"
    grid.write_text(f"notebook: {NOTEBOOK}\nconfig: {QUICK}\npoints:\n  a: [run.seed=0]\n")
    assert cli.main(["sweep", str(grid), "--out", str(tmp_path / "o"), "--executor",
                     "slurm"]) == 2
    assert "--executor slurm: no SLURM here" in capsys.readouterr().err


# --- submitit-local: real jobs ------------------------------------------------------------------

@pytest.mark.slow
def test_local_jobs_sweep_reports_the_failed_point_and_a_rerun_skips_completed_points(tmp_path):
    """Three points as three submitit jobs through the real notebook: `broken` fails in its
    settings cell, the other two train; exit 1 naming it; a re-run submits `broken` alone."""
    grid = tmp_path / "g.yaml"
    grid.write_text(f"""
notebook: {NOTEBOOK}
config: {QUICK}
overrides: [run.device=cpu, run.max_steps=3, run.eval_knn=false, run.num_threads=1]
points:
  single: [method.teachers=single]
  broken: [method.target=pixel]
  mae: [method.target=pixels, method.pseudo_labels=none]
""")
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "plaml_lab", "sweep", str(grid), "--out", str(out),
           "--executor", "submitit-local"]
    env = dict(os.environ, CI="true")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed: broken: cell" in proc.stderr and "method.target='pixel'" in proc.stderr
    table = {r["point"]: r for r in read_csv(out / "results.csv")}
    assert {k: r["status"] for k, r in table.items()} == {
        "single": "done", "broken": "failed", "mae": "done"}
    assert table["single"]["variant"] == "single" and table["mae"]["variant"] == "mae"
    assert table["single"]["steps"] == table["mae"]["steps"] == "3"
    records = {p: json.loads((out / p / "job.json").read_text()) for p in table}
    assert records["broken"]["state"] == "FAILED" and "pixel" in records["broken"]["error"]
    assert records["single"]["state"] == "DONE" and len(records["single"]["starts"]) == 1
    assert len({r["job_id"] for r in records.values()}) == 3  # one job per point

    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 1
    assert "1 job(s) submitted" in proc.stderr + proc.stdout
    again = {p: json.loads((out / p / "job.json").read_text()) for p in table}
    assert again["single"] == records["single"] and again["mae"] == records["mae"]
    assert again["broken"]["job_id"] != records["broken"]["job_id"]
    rows = {r["point"]: r for r in read_csv(out / "results.csv")}
    assert rows["single"]["executed"] == "False" and rows["broken"]["executed"] == "True"
    assert rows["mae"]["loss"] == table["mae"]["loss"]


class PreemptOnce:
    """A trainer callback that sends this job process submitit's preemption signal (USR2) once,
    when `step` is logged: what SLURM does before a preemption or the time limit."""

    def __init__(self, step: int, marker: Path):
        self.step, self.marker = step, marker

    def __call__(self, row: dict) -> None:
        if row["step"] >= self.step and not self.marker.exists():
            self.marker.write_text(str(row["step"]))
            os.kill(os.getpid(), signal.SIGUSR2)


@pytest.mark.slow
def test_preempted_job_requeues_and_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    import cloudpickle
    import torch

    from plaml_lab.runs.checkpoint import load_checkpoint
    from plaml_lab.train import pretrain

    overrides = DET + ["run.max_steps=12", "run.ckpt_every=4", "run.log_every=1",
                       "model.drop_path=0.1"]  # drop-path: the global torch RNG must resume too
    pretrain(str(QUICK), tmp_path / "ref", overrides)

    # the callback travels by value: the job process cannot import this test module
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "preempted_at"
    settings = cluster_settings(None, ["cluster.cpus_per_task=1"])
    job, out = submit.submit_pretrain(str(QUICK), tmp_path / "job", overrides,
                                         "submitit-local", settings,
                                         callback=PreemptOnce(6, marker))
    summary = submit.result(job)
    assert marker.read_text() == "6" and summary["steps"] == 12
    rec = submit.read_record(out)
    assert len(rec["starts"]) == 2, "the signalled job must have been requeued once"
    assert "Caught signal SIGUSR2" in Path(rec["stderr"]).read_text()  # submitit's handler

    ref = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    got = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ref["step"] == got["step"] == 12
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], got["model"][k]), k
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))  # steps 5-6 re-logged once


@pytest.mark.slow
@pytest.mark.ddp
def test_two_task_job_forms_a_gloo_group_through_submitit_and_trains(tmp_path, capsys):
    """`plaml-lab pretrain --executor submitit-local cluster.tasks_per_node=2`: two processes,
    ranks and master address from submitit's TorchDistributedEnvironment, one gloo group."""
    from plaml_lab import cli
    from plaml_lab.runs.checkpoint import load_checkpoint

    out = tmp_path / "ddp"
    rc = cli.main(["pretrain", "--config", str(QUICK), "--out", str(out), "--executor",
                   "submitit-local", "run.max_steps=4", "run.log_every=2", "optim.batch_size=16",
                   *DET[:3], "cluster.tasks_per_node=2", "cluster.cpus_per_task=1"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 4
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 4
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # written by rank 0 only
    rec = submit.read_record(out)
    assert rec["tasks"] == 2 and rec["state"] == "DONE"
    logs = [Path(rec["stdout"].replace("_0_log", f"_{t}_log")).read_text() for t in (0, 1)]
    assert all("global_rank=" in log for log in logs)


def test_cli_offers_exactly_the_executors_the_submit_module_runs():
    from plaml_lab import cli
    assert cli.EXECUTORS == EXECUTORS


# --- the ablation runner ------------------------------------------------------------------------

TINY = ["run.progress=false", "run.num_threads=1", "run.max_steps=2", "data.num_train=128",
        "data.num_val=64", "eval.max_train=128", "eval.max_val=64"]


def _ablation(tmp_path, *extra):
    from plaml_lab import cli
    return cli.main(["ablation", "--preset", str(QUICK), "--seeds", "0", "--variants", "mae,dual",
                     "--probes", "knn", "--runs", str(tmp_path / "runs"), "--out",
                     str(tmp_path / "results"), *extra, *TINY])


def test_slurm_ablation_queues_one_array_of_runs_and_returns_with_detach(tmp_path, fake_slurm,
                                                                         capsys):
    assert _ablation(tmp_path, "--executor", "slurm", "--detach", "cluster.gpus_per_node=2",
                     "cluster.nodes=2", "cluster.partition=gpu") == 0
    assert "2 run(s) queued" in capsys.readouterr().out
    (script,) = fake_slurm.iterdir()
    lines = script.read_text().splitlines()
    for line in ["#SBATCH --array=0-1%2", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=2",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --partition=gpu"]:
        assert line in lines, line  # 2 nodes x 2 GPUs: one 4-process DDP group per point
    for i, run in enumerate(["mae-s0", "dual-s0"]):
        rec = json.loads((tmp_path / "runs" / run / "job.json").read_text())
        assert rec["job_id"] == f"4242_{i}" and rec["tasks"] == 4
    assert not (tmp_path / "results").exists()  # no table until the runs are collected


@pytest.mark.slow
def test_ablation_points_as_local_jobs_fill_the_table_and_a_local_rerun_reuses_them(
        tmp_path, monkeypatch):
    assert _ablation(tmp_path, "--executor", "submitit-local") == 0
    with open(tmp_path / "results" / "ablation_shapes.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["steps"]) for r in rows] == [("mae", "2"), ("dual", "2"),
                                                          ("random_init", "0")]
    recs = [submit.read_record(tmp_path / "runs" / r) for r in ("mae-s0", "dual-s0")]
    assert all(r["state"] == "DONE" and len(r["starts"]) == 1 for r in recs)
    assert recs[0]["job_id"] != recs[1]["job_id"]

    def refuse(*a, **k):
        raise AssertionError("re-ran finished work")

    monkeypatch.setattr("plaml_lab.lab.ablation.pretrain", refuse)
    monkeypatch.setattr("plaml_lab.lab.ablation.evaluate", refuse)
    before = (tmp_path / "results" / "ablation_shapes.csv").read_text()
    assert _ablation(tmp_path) == 0
    assert (tmp_path / "results" / "ablation_shapes.csv").read_text() == before


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_local_jobs_on_one_multi_gpu_machine_get_their_own_gpus_round_robin(tmp_path,
                                                                           monkeypatch):
    """Three one-GPU jobs on a machine showing GPUs 4-7 (no GPU needed: the jobs only report
    what CUDA_VISIBLE_DEVICES the submitit-local controller gave them)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    settings = cluster_settings(None, ["cluster.gpus_per_node=2"])
    calls = {k: submit.CallJob(tmp_path / k, os.getenv, "CUDA_VISIBLE_DEVICES") for k in "abc"}
    jobs = submit.submit_jobs(calls, "submitit-local", settings, tmp_path / "logs", "gpus")
    assert {k: submit.result(j) for k, j in jobs.items()} == {"a": "4,5", "b": "6,7", "c": "4,5"}
    assert submit.read_record(tmp_path / "b")["gpus"] == [6, 7]
    with pytest.raises(ConfigError, match="cluster.gpus_per_node=8: this machine shows 4"):
        submit.submit_jobs(calls, "submitit-local", cluster_settings(
            None, ["cluster.gpus_per_node=8"]), tmp_path / "logs", "gpus")


def test_a_task_of_a_two_node_slurm_job_exports_its_rank_and_the_first_node_as_master(
        monkeypatch):
    """Task 9 of 16 (2 nodes x 8), as SLURM's srun describes it: submitit's distributed
    environment gives the env:// variables the trainer's process-group set-up reads."""
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "77", "SLURM_NTASKS": "16",
             "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1", "SLURM_PROCID": "9",
             "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[17-18]"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    for key in ("MASTER_ADDR", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                "CUDA_VISIBLE_DEVICES"):
        monkeypatch.setenv(key, "stale")  # overwritten (all but the last); restored after
    monkeypatch.delenv("MASTER_PORT", raising=False)  # a set one would be kept
    assert submit.export_distributed() == 9
    env = {k: os.environ[k] for k in ("MASTER_ADDR", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                                      "LOCAL_WORLD_SIZE")}
    assert env == {"MASTER_ADDR": "gpu17", "RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1",
                   "LOCAL_WORLD_SIZE": "8"}
    assert 20000 <= int(os.environ["MASTER_PORT"]) <= 60000  # the same on every task of job 77
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "stale"  # every GPU stays visible to the task
