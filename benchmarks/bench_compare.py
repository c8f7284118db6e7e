"""How the compare-runs dashboard copes with hundreds of runs, on this machine's CPU.

    .venv/bin/python benchmarks/bench_compare.py [--runs 300] [--rows 100] [--selected 12]

Writes --runs synthetic run folders (config.yaml of the quick preset with 5 knobs varied,
metrics.jsonl of --rows rows, eval.json; tests/fake_runs.py) into a temporary folder, then
times: building the app (scanning and reading every run), a refresh with nothing changed (what
the auto-refresh thread does every few seconds), a refresh after one run logged a row, and
interactions (selecting --selected runs, then all of them; picking another curve column;
changing the smoothing), each a synchronous re-draw as a click in JupyterLab makes it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_runs import write_fake_run  # noqa: E402

from plaml_lab.viz.compare import compare_runs  # noqa: E402

PRESET = str(ROOT / "experiments" / "configs" / "quick.yaml")
KNOBS = [("mask.ratio", [0.6, 0.75, 0.9]), ("method.teachers", ["single", "dual"]),
         ("pl.num_prototypes", [16, 32, 64]), ("teachers.labelling.momentum", [0.99, 0.996]),
         ("method.pseudo_labels", ["cls", "patch", "both"])]


def make_runs(root: Path, n: int, rows: int) -> None:
    points = list(itertools.product(*[v for _, v in KNOBS]))
    for i in range(n):
        values = points[i % len(points)]
        seed = i // len(points)
        overrides = [f"{k}={v}" for (k, _), v in zip(KNOBS, values)]
        write_fake_run(root / f"p{i % len(points):03d}-s{seed}", PRESET, overrides, rows=rows,
                       knn=0.3 + 0.001 * (i % 97), seed=seed)


def timed(fn, repeats: int = 3) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--rows", type=int, default=100)
    p.add_argument("--selected", type=int, default=12)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_runs(root, args.runs, args.rows)
        print(f"wrote {args.runs} runs x {args.rows} rows in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        app = compare_runs(root, auto_refresh=False)
        results = {"build (scan + read every run + first draw)": (time.perf_counter() - t0,) * 2}
        names = app.runset.names
        results["refresh, nothing changed"] = timed(app.refresh)
        last = root / names[0] / "metrics.jsonl"

        def one_more_row():
            with open(last, "a") as f:
                f.write(json.dumps({"step": 10**6, "epoch": 1.0, "loss": 0.1}) + "\n")
            app.refresh()

        results["refresh, one run logged a row"] = timed(one_more_row)
        runs = app.controls["runs"]
        sel = [tuple(names[i:i + args.selected]) for i in (0, args.selected, 2 * args.selected)]
        it = iter(sel)
        results[f"select {args.selected} runs"] = timed(lambda: setattr(runs, "value",
                                                                         next(it)))
        results[f"select all {len(names)} runs"] = timed(
            lambda: (setattr(runs, "value", ()), setattr(runs, "value", tuple(names))), 1)
        cols = iter(["loss_rec", "lr", "loss"])
        results[f"curve column, {len(names)} runs"] = timed(
            lambda: setattr(app.controls["metric"], "value", next(cols)))
        win = iter([5, 9, 3])
        results[f"smoothing, {len(names)} runs"] = timed(
            lambda: setattr(app.controls["smoothing"], "value", next(win)))
        assert "error" not in app.state, app.state.get("error")
        print(f"\n| action ({args.runs} runs, {args.rows} rows each) | median s | worst s |")
        print("|---|---|---|")
        for k, (med, worst) in results.items():
            print(f"| {k} | {med:.3f} | {worst:.3f} |")


if __name__ == "__main__":
    main()
