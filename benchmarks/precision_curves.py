"""Do bf16 autocast and fp32 train alike? Loss curves of short real runs, side by side.

    .venv/bin/python benchmarks/precision_curves.py [--steps 200] [--variant dual]
        [--preset experiments/configs/lab.yaml] [--csv benchmarks/results/precision_curves.csv]

Runs `pretrain` on the preset's dataset three times for --steps optimiser steps: fp32 seed 0,
bf16 seed 0, bf16 seed 1 (same data order and masks for the two seed-0 runs: everything random
is drawn from the seed). The bf16-vs-fp32 gap of the logged losses (means over log_every steps)
is compared with the seed-to-seed gap of bf16, the scale on which two runs of the same recipe
differ anyway. Writes one CSV row per logged step and prints the verdict.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

from plaml_lab.method.rules import VARIANTS
from plaml_lab.train import pretrain

KEYS = ("loss", "loss_rec", "loss_cls", "loss_patch")


def curve(preset: str, variant: str, precision: str, seed: int, steps: int, threads: int,
          root: Path) -> tuple[list[dict], float]:
    out = root / f"{variant}-{precision}-s{seed}"
    t0 = time.perf_counter()
    pretrain(preset, out, VARIANTS[variant] + [
        f"run.precision={precision}", f"run.seed={seed}", f"run.max_steps={steps}",
        "run.log_every=10", "run.ckpt_every=0", "run.keep_ckpts=0", "run.eval_knn=false",
        "run.progress=false", f"run.num_threads={threads}"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    return rows, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="experiments/configs/lab.yaml")
    p.add_argument("--variant", default="dual", choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", default="benchmarks/results/precision_curves.csv")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for prec, seed in (("fp32", 0), ("bf16", 0), ("bf16", 1)):
            rows, secs = curve(args.preset, args.variant, prec, seed, args.steps, args.threads,
                               Path(tmp))
            runs[(prec, seed)] = rows
            print(f"{args.variant} {prec} seed {seed}: {args.steps} steps in {secs:.0f} s "
                  f"({args.steps / secs:.2f} steps/s), final loss {rows[-1]['loss']:.4f}",
                  flush=True)

    fp, bf, bf1 = runs[("fp32", 0)], runs[("bf16", 0)], runs[("bf16", 1)]
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step"] + [f"{k}_{tag}" for tag in ("fp32", "bf16", "bf16_seed1")
                               for k in KEYS])
        for a, b, c in zip(fp, bf, bf1):
            w.writerow([a["step"]] + [f"{r[k]:.6g}" for r in (a, b, c) for k in KEYS])
    print(f"wrote {args.csv}")

    ok = True
    for k in KEYS:
        if not any(r[k] for r in fp):
            continue
        gap = max(abs(a[k] - b[k]) for a, b in zip(fp, bf))
        seed_gap = max(abs(b[k] - c[k]) for b, c in zip(bf, bf1))
        rel = max(abs(a[k] - b[k]) / abs(a[k]) for a, b in zip(fp, bf))
        within = gap <= seed_gap
        ok &= within
        print(f"{k:10s} max |bf16 - fp32| {gap:.4f} ({100 * rel:.1f}% of fp32); "
              f"max |bf16 seed 0 - seed 1| {seed_gap:.4f}: "
              f"{'within' if within else 'OUTSIDE'} the seed-to-seed spread")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
