"""Recompute a committed ablation table's verdicts paired by seed, from its per-run CSV.

    python tools/paired_verdicts.py experiments/results/ablation_shapes.csv --split val \
        --out experiments/results/ablation_shapes_paired.md

Tables written before 2026-12-02 compared unpaired means against the pooled seed spread; the
runs of one seed are pairs (same init, data order, augmentations and masks), and this writes the
same markdown `plaml-lab ablation` now writes (plaml_lab.lab.ablation_table): per-seed
differences, their mean, the 95% Student-t interval and the verdict from it, the unpaired view
beside. --split names the held-out split the CSV's probes scored.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plaml_lab.lab.ablation_table import aggregate, read_csv, write_markdown  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", help="a table's per-run CSV (ablation_<dataset>.csv)")
    ap.add_argument("--split", default="val", choices=["val", "test"],
                    help="the held-out split its probes scored (default val)")
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--preset", default="(as in the CSV's own table)")
    ap.add_argument("--grid", default="(as in the CSV's own table)")
    ap.add_argument("--out", required=True, help="markdown file to write")
    args = ap.parse_args(argv)
    rows = read_csv(Path(args.csv))
    seeds = sorted({r["seed"] for r in rows})
    header = {"dataset": args.dataset, "split": args.split, "preset": args.preset,
              "grid": args.grid, "seeds": seeds, "date": date.today().isoformat(),
              "machine": f"recomputed from {args.csv}",
              "command": f"python tools/paired_verdicts.py {args.csv} --split {args.split}"}
    write_markdown(aggregate(rows), Path(args.out), header=header, rows=rows)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
