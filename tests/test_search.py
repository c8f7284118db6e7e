"""`plaml-lab search`: an Optuna study over config keys, each trial a pretraining process, pruned
on the metric its run logs, resumable from OUT/study.db, its best trials written as a sweep grid.
Trials use the quick preset at fp32 with tiny budgets (a few seconds each)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from plaml_lab.cli import main as cli_main
from plaml_lab.errors import ConfigError
from plaml_lab.lab.grids import load_grid
from plaml_lab.lab.search import open_study, run_search
from plaml_lab.lab.search_file import load_search
from plaml_lab.lab.sweep import read_results

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "experiments" / "configs" / "quick.yaml"
TINY = ["run.precision=fp32", "run.num_threads=1", "run.max_steps=10", "run.log_every=5",
        "run.knn_every=5", "run.ckpt_every=0", "data.num_train=256", "data.num_val=64",
        "eval.max_train=256", "eval.max_val=64"]
TWO_KEYS = {"optim.blr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
            "mask.ratio": {"low": 0.5, "high": 0.9}}


def _search_file(folder: Path, **fields) -> Path:
    data = {"config": os.path.relpath(QUICK, folder), "overrides": TINY, "params": TWO_KEYS,
            "objective": {"metric": "knn_top1", "direction": "maximize"}, "trials": 6,
            "seeds": [0, 1], "best": 2, "pruner": "none", "sampler": {"seed": 0}}
    data.update(fields)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _trials(out: Path) -> list[dict]:
    return read_results(out / "trials.csv")


@pytest.mark.slow
def test_six_trials_of_a_two_key_search_on_two_workers_write_a_grid_the_sweep_accepts(tmp_path, capsys):
    path = _search_file(tmp_path / "spec")
    out = tmp_path / "study"
    code = cli_main(["search", str(path), "--out", str(out), "--workers", "2"])
    printed = capsys.readouterr().out
    assert code == 0 and "6 trials finished (6 now; 6 complete)" in printed
    rows = _trials(out)
    assert [r["trial"] for r in rows] == [str(i) for i in range(6)]
    assert all(r["state"] == "complete" and 0 <= float(r["knn_top1"]) <= 1 for r in rows)
    assert len({(r["optim.blr"], r["mask.ratio"]) for r in rows}) == 6
    for r in rows:  # each trial trained with its own values
        cfg = yaml.safe_load((out / r["run"] / "config.yaml").read_text())
        assert cfg["optim"]["blr"] == pytest.approx(float(r["optim.blr"]))
        assert cfg["mask"]["ratio"] == pytest.approx(float(r["mask.ratio"]))
        assert cfg["run"]["precision"] == "fp32"

    grid = load_grid(out / "best_grid.yaml")
    best = sorted(rows, key=lambda r: -float(r["knn_top1"]))[:2]
    assert list(grid.variants) == [f"t{int(r['trial']):04d}" for r in best]
    assert grid.config == QUICK and grid.overrides == TINY and grid.seeds == [0, 1]
    point = grid.points[0]
    assert point.name == f"t{int(best[0]['trial']):04d}-s0"
    assert [o.split("=")[0] for o in point.run_overrides()] == ["optim.blr", "mask.ratio",
                                                                "run.seed"]
    assert cli_main(["sweep", str(out / "best_grid.yaml"), "--dry-run"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4  # 2 points x 2 seeds


@pytest.mark.slow
def test_a_search_made_to_prune_stops_the_trials_runs_early(tmp_path):
    """The objective is the learning rate the run logs (minimised), so a trial whose sampled
    optim.blr is above the median of the earlier trials' is worse at its first report (step 5),
    deterministically: unless four seeded samples fall in decreasing order, one is pruned."""
    path = _search_file(tmp_path / "spec", params={"optim.blr": TWO_KEYS["optim.blr"]},
                        overrides=[*TINY, "run.max_steps=80", "optim.epochs=10"], trials=4,
                        objective={"metric": "lr", "direction": "minimize"},
                        pruner={"startup_trials": 1, "warmup_steps": 0})
    out = tmp_path / "study"
    run_search(path, out, log=None)
    rows = _trials(out)
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert len(rows) == 4 and pruned
    for r in pruned:  # its training run was stopped, not left to finish
        run = out / r["run"]
        steps = [yaml.safe_load(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert not (run / "summary.json").exists() and max(steps) < 80
        earlier = [float(x["optim.blr"]) for x in rows if int(x["trial"]) < int(r["trial"])
                   and x["state"] == "complete"]
        assert float(r["optim.blr"]) > min(earlier)


@pytest.mark.slow
def test_a_rerun_with_more_trials_keeps_the_finished_ones(tmp_path):
    path = _search_file(tmp_path / "spec")
    out = tmp_path / "study"
    first = run_search(path, out, trials=2, log=None)
    assert first["ran"] == 2
    before = {r["trial"]: r for r in _trials(out)}
    logs = {n: (out / r["run"] / "metrics.jsonl").read_bytes() for n, r in before.items()}
    again = run_search(path, out, trials=3, log=None)
    after = {r["trial"]: r for r in _trials(out)}
    assert again["ran"] == 1 and again["finished"] == 3 and sorted(after) == ["0", "1", "2"]
    for n, r in before.items():  # not re-run: the same values, the same run files
        assert after[n] == r
        assert (out / r["run"] / "metrics.jsonl").read_bytes() == logs[n]
    assert run_search(path, out, trials=3, log=None)["ran"] == 0


def _trial_processes(run_dir: Path) -> list[int]:
    """Live processes (not zombies) training into run_dir, from /proc."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(run_dir).encode() in args and state != "Z":
            found.append(int(proc.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_killed_search_resumes_without_repeating_finished_trials(tmp_path, sig):
    """kill -9 (or Ctrl-C) of the search while its second trial trains: the trial process dies
    with it; the resumed search keeps trial 0, runs the interrupted trial's values again and
    reaches 3 finished trials."""
    # 256 images, batches of 32: 160 steps, far more than the trial trains before the kill
    path = _search_file(tmp_path / "spec", overrides=[*TINY, "run.max_steps=0", "optim.epochs=20",
                                                      "run.knn_every=0"])
    out = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "plaml_lab", "search", str(path), "--out",
                             str(out), "--trials", "3"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            # a background job may inherit SIGINT ignored: Ctrl-C as a terminal
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    second = out / "trials" / "t0001" / "metrics.jsonl"
    deadline = time.time() + 240
    while not (second.exists() and second.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.time() < deadline, "search ended before the kill"
        time.sleep(0.2)
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)
    assert len(list((out / "trials").glob("t*.log"))) == 2  # it stopped: no third trial began
    deadline = time.time() + 10
    while _trial_processes(second.parent) and time.time() < deadline:
        time.sleep(0.2)
    assert not _trial_processes(second.parent)  # the orphaned trial did not go on training
    first = (out / "trials" / "t0000" / "metrics.jsonl").read_bytes()

    result = run_search(path, out, trials=3, log=None)
    rows = {r["trial"]: r for r in _trials(out)}
    assert result["finished"] == 3 and result["ran"] == 2
    assert rows["0"]["state"] == "complete"
    assert (out / "trials" / "t0000" / "metrics.jsonl").read_bytes() == first
    assert rows["1"]["state"] == "fail" and rows["1"]["note"].startswith("interrupted")
    rerun = [r for n, r in rows.items() if n not in ("0", "1")]
    assert (rows["1"]["optim.blr"], rows["1"]["mask.ratio"]) in {
        (r["optim.blr"], r["mask.ratio"]) for r in rerun}
    assert all(r["state"] == "complete" for r in rerun) and len(rerun) == 2


@pytest.mark.parametrize("change, needle", [
    ({"params": {"optim.blrr": {"low": 1.0e-4, "high": 1.0e-2}}}, "params.optim.blrr"),
    ({"params": {"mask.ratio": {"low": 0.5, "high": 1.5}}}, "params.mask.ratio"),
    ({"params": {"optim.blr": {"low": "1e-4", "high": 1.0e-2}}}, "params.optim.blr.low"),
    ({"params": {"method.teachers": ["single", "triple"]}}, "params.method.teachers"),
    ({"objective": {"metric": "knn_top1", "direction": "up"}}, "objective.direction"),
    ({"trails": 5}, "trails"),
    ({"config": "missing.yaml"}, "config"),
    ({"pruner": {"startup_trials": 1}, "overrides": ["run.precision=fp32"]}, "run.knn_every"),
])
def test_a_bad_search_file_exits_2_with_one_line_naming_the_key(tmp_path, capsys, change,
                                                                 needle):
    path = _search_file(tmp_path / "spec", **change)
    out = tmp_path / "study"
    code = cli_main(["search", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and needle in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_study_folder_of_another_search_is_refused(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    open_study(load_search(_search_file(tmp_path / "a")), out)
    other = load_search(_search_file(tmp_path / "b", objective={"metric": "knn_top1_mean"}))
    with pytest.raises(ConfigError, match="another search.*metric"):
        open_study(other, out)
    # trials, seeds and best may change between runs of one search
    open_study(load_search(_search_file(tmp_path / "a", trials=9, seeds=[3], best=1)), out)


def test_the_example_search_file_is_valid():
    search = load_search(ROOT / "experiments" / "searches" / "quick_blr_mask.yaml")
    assert search.config == QUICK and [p.key for p in search.params] == ["optim.blr",
                                                                        "mask.ratio"]
