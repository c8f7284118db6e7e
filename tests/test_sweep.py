"""plaml_lab.lab.sweep: grid files, parallel papermill points, failures, timeouts, re-runs, CLI.

Most tests run a tiny stand-in notebook (no torch import: a point costs one kernel start); one
test runs the real experiments/grids/quick_failing.yaml through notebooks/01_pretrain.ipynb
under CI settings (the five-variant grid runs in notebooks/02_ablations.ipynb under nbval)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from plaml_lab.lab.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]

STANDIN = '''\
import json, os, pathlib, time
opts = dict(o.split("=", 1) for o in overrides)
start = time.time()
out = pathlib.Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "pid").write_text(str(os.getpid()))
if opts.get("mode") == "fail":
    raise ValueError("deliberate failure of point " + opts.get("x", "?"))
time.sleep(float(opts.get("sleep", "0")))
summary = {"run": str(out), "value": 2 * float(opts.get("x", "0")), "config": config,
           "start": start, "end": time.time()}
(out / "summary.json").write_text(json.dumps(summary))
'''


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    """A notebook with the sweep's parameters that writes summary.json (value = 2 * x)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = nbformat.v4.new_code_cell('config = ""\noverrides = []\nout_dir = "out"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(STANDIN)]
    path = tmp_path_factory.mktemp("nb") / "standin.ipynb"
    nbformat.write(nb, path)
    return path


def write_grid(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- the CLI on a bad grid ----------------------------------------------------------------------

def test_cli_bad_grid_exits_2_with_one_line_error(tmp_path, capsys):
    from plaml_lab.cli import main
    bad = write_grid(tmp_path / "bad.yaml", "points: {a: [x=1]}\nworkers: 3\n")
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown grid key 'workers'" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "grid file not found" in capsys.readouterr().err
    assert main(["sweep", str(bad).replace("bad", "x"), "--workers", "0"]) == 2
    assert "--workers 0" in capsys.readouterr().err


# --- running points -----------------------------------------------------------------------------

@pytest.mark.slow
def test_parallel_points_failures_timeouts_and_results_table(tmp_path, standin):
    """workers=2 runs points concurrently; a raising point and a point past the timeout are
    recorded as failed (with the failing cell's error) while the others complete; the slow
    point's kernel does not outlive the timeout; results.csv has every point."""
    grid = write_grid(tmp_path / "g.yaml", f"""
notebook: {standin}
config: experiments/configs/quick.yaml
points:
  a: [x=1, sleep=3]
  b: [x=2, sleep=3]
  slow: [x=4, sleep=600]
  broken: [x=3, mode=fail]
""")
    out = tmp_path / "out"
    t0 = time.perf_counter()
    rows = run_sweep(grid, out=out, workers=2, timeout=25, log=None)
    took = time.perf_counter() - t0
    by = {r["point"]: r for r in rows}
    assert [r["point"] for r in rows] == ["a", "b", "slow", "broken"]
    assert by["a"]["status"] == by["b"]["status"] == "done"
    assert by["a"]["value"] == 2.0 and by["b"]["value"] == 4.0
    assert by["a"]["config"] == str(ROOT / "experiments" / "configs" / "quick.yaml")
    # a and b ran at the same time (2 workers)
    assert by["b"]["start"] < by["a"]["end"] and by["a"]["start"] < by["b"]["end"]

    assert by["broken"]["status"] == "failed"
    assert "ValueError: deliberate failure of point 3" in by["broken"]["error"]
    assert by["broken"]["error"].startswith("cell ")
    assert "deliberate failure" in (out / "broken" / "error.txt").read_text()
    assert not (out / "broken" / "done.json").exists()

    assert by["slow"]["status"] == "failed" and by["slow"]["error"].startswith("timeout")
    assert took < 90
    pid = int((out / "slow" / "run" / "pid").read_text())
    # the kernel notices its parent is gone within about a second
    assert _gone(pid), f"kernel {pid} of the timed-out point is still running"

    table = read_csv(out / "results.csv")
    assert [r["point"] for r in table] == ["a", "b", "slow", "broken"]
    assert [r["status"] for r in table] == ["done", "done", "failed", "failed"]
    assert table[0]["x"] == "1" and table[0]["overrides"] == "x=1 sleep=3"
    assert float(table[1]["value"]) == 4.0
    assert "deliberate failure" in table[3]["error"]
    assert (out / "a" / "standin.ipynb").exists()


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_rerun_executes_nothing_new_and_changed_points_run_again(tmp_path, standin):
    grid = write_grid(tmp_path / "g.yaml", f"""
notebook: {standin}
points:
  a: [x=1]
  b: [x=2]
""")
    out = tmp_path / "out"
    first = run_sweep(grid, out=out, workers=2, log=None)
    assert [r["executed"] for r in first] == [True, True]
    stamp = (out / "a" / "standin.ipynb").stat().st_mtime_ns
    again = run_sweep(grid, out=out, workers=2, log=None)
    assert [r["executed"] for r in again] == [False, False]
    assert [r["value"] for r in again] == [2.0, 4.0]
    assert (out / "a" / "standin.ipynb").stat().st_mtime_ns == stamp
    # a changed point is not "done": it runs again
    write_grid(grid, grid.read_text().replace("b: [x=2]", "b: [x=5]"))
    third = run_sweep(grid, out=out, workers=1, log=None)
    assert [r["executed"] for r in third] == [False, True]
    assert third[1]["value"] == 10.0


def test_stopping_a_point_also_kills_its_kernel_in_a_session_of_its_own(tmp_path):
    """papermill starts its kernel in a new session: killing papermill's group misses it."""
    from plaml_lab.lab.running import kill_point
    pid_file = tmp_path / "kernel.pid"
    kernel = ("import subprocess, sys, time; "
              "k = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
              "start_new_session=True); "
              f"open({str(pid_file)!r}, 'w').write(str(k.pid)); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", kernel], start_new_session=True)
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    kill_point(proc)
    proc.wait(timeout=10)
    assert _gone(int(pid_file.read_text()), seconds=5), "the kernel outlived its point"


def _gone(pid: int, seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.2)):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "kill"])
def test_ctrl_c_or_kill_stops_the_sweep_and_its_kernels(tmp_path, standin, sig):
    grid = write_grid(tmp_path / "g.yaml", f"""
notebook: {standin}
points:
  slow: [x=1, sleep=600]
""")
    out = tmp_path / "out"
    # A shell's background job (`make test &`, nohup) starts with SIGINT ignored, and Python then
    # keeps ignoring it: give the sweep the default disposition, as a terminal's Ctrl-C has.
    proc = subprocess.Popen([sys.executable, "-m", "plaml_lab", "sweep", str(grid), "--out",
                             str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pid_file = out / "slow" / "run" / "pid"
    for _ in range(300):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the point never started")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert _gone(int(pid_file.read_text())), "the point's kernel outlived the sweep"
    assert not (out / "slow" / "done.json").exists()


@pytest.mark.slow
def test_cli_sweep_of_quick_failing_grid_reports_the_failed_point(tmp_path):
    """The real notebook: `broken` fails in its settings cell, `ok` trains and is kNN-scored;
    exit code 1; stderr names the failed point."""
    out = tmp_path / "sweep"
    env = dict(os.environ, CI="true")
    proc = subprocess.run(
        [sys.executable, "-m", "plaml_lab", "sweep", "experiments/grids/quick_failing.yaml",
         "--workers", "2", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed: broken: cell" in proc.stderr and "method.target='pixel'" in proc.stderr
    table = {r["point"]: r for r in read_csv(out / "results.csv")}
    assert table["ok"]["status"] == "done" and table["broken"]["status"] == "failed"
    summary = json.loads((out / "ok" / "run" / "summary.json").read_text())
    assert table["ok"]["variant"] == "single"
    assert float(table["ok"]["knn_top1"]) == pytest.approx(summary["knn_top1"], abs=1e-9)
    assert table["ok"]["method.teachers"] == "single"
    assert (out / "ok" / "run" / "checkpoints" / "last.pt").exists()
    done = json.loads((out / "ok" / "done.json").read_text())
    assert done["overrides"] == ["run.device=cpu", "method.teachers=single"]
