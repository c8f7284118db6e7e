"""One trainer per run folder (plaml_lab.runs.lock): a second pretrain into a folder being
trained is refused in one line and writes nothing, and a trainer that dies, however it dies,
frees the folder; a killed `plaml-lab ablation --workers N` takes its pool workers with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plaml_lab import cli
from plaml_lab.errors import RunError
from plaml_lab.runs.lock import lock_path, run_lock
from plaml_lab.train import pretrain

fcntl = pytest.importorskip("fcntl")
ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "experiments" / "configs" / "quick.yaml")
TINY = ["run.progress=false", "run.num_threads=1", "run.max_steps=2", "data.num_train=128",
        "data.num_val=64", "run.eval_knn=false"]


def _alive(pid: int) -> bool:
    """pid runs (a zombie nobody reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def test_a_second_trainer_of_a_folder_is_refused_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    with run_lock(out):
        with pytest.raises(RunError, match=r"--out .*run: another process \(pid \d+\) is training"):
            pretrain(QUICK, out, TINY)
        assert not out.exists()
    assert not lock_path(out).exists()  # released: the lock file goes with the holder
    pretrain(QUICK, out, TINY)
    assert (out / "checkpoints" / "last.pt").exists()


def test_the_cli_reports_a_held_folder_with_exit_code_2(tmp_path, capsys):
    out = tmp_path / "run"
    with run_lock(out):
        assert cli.main(["pretrain", "--config", QUICK, "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another process" in err[0]


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_a_killed_holder_frees_the_folder(tmp_path):
    out = tmp_path / "run"
    code = ("import sys, time; from plaml_lab.runs.lock import run_lock\n"
            f"with run_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=f"pid {proc.pid}"):
            with run_lock(out):
                pass
    finally:
        proc.kill()
        proc.wait()
    with run_lock(out):  # SIGKILL ran no cleanup; the kernel dropped the lock
        pass


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_killing_the_ablation_stops_its_pool_workers(tmp_path, sig):
    """The parent of a 2-worker ablation gets `sig` while both workers train: soon nobody trains
    either run folder (their locks can be taken), and the runner itself ends."""
    runs = tmp_path / "runs"
    names = ("mae-s0", "dual-s0")
    cmd = [sys.executable, "-m", "plaml_lab", "ablation", "--preset", QUICK, "--seeds", "0",
           "--variants", "mae,dual", "--probes", "knn", "--workers", "2", "--runs", str(runs),
           "--out", str(tmp_path / "results"), "run.progress=false", "run.num_threads=1",
           "run.max_steps=100000", "optim.epochs=1000", "data.num_train=128", "data.num_val=64"]
    # its own group, so the signal reaches it alone; SIGINT at its default, as for a command in
    # a terminal (a shell's background job, e.g. a CI script, inherits it ignored)
    parent = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    locks = [lock_path(runs / name) for name in names]
    workers = []
    try:
        deadline = time.monotonic() + 120
        while not all(p.exists() and p.read_text().strip() for p in locks):
            assert parent.poll() is None, "the ablation ended before both points trained"
            assert time.monotonic() < deadline, "the workers never started training"
            time.sleep(0.2)
        workers = [int(p.read_text()) for p in locks]
        assert parent.pid not in workers and all(_alive(w) for w in workers)
        parent.send_signal(sig)
        # A process's files close when its last thread has exited, which on a loaded CPU can
        # trail the main thread's zombie state: the lock itself says when nobody trains.
        free, deadline = set(), time.monotonic() + 60
        while len(free) < len(names) and time.monotonic() < deadline:
            for name in set(names) - free:
                try:
                    with run_lock(runs / name):
                        free.add(name)
                except RunError:
                    pass
            time.sleep(0.5)
        assert free == set(names), f"pool workers still train {set(names) - free} ({sig.name})"
        parent.wait(timeout=120)  # and the runner itself ends (seconds when the CPU is free)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
