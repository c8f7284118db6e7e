"""Benchmark script: `plaml-lab bench` (plaml_lab/lab/bench.py holds the harness) plus the
reference MAE of benchmarks/reference_mae.py as an extra case.

    .venv/bin/python benchmarks/bench.py [key=value ...] [--preset FILE] [--variants mae,dual]
        [--precisions fp32,bf16] [--steps N] [--warmup N] [--batch N] [--csv FILE] [--reference]

--reference adds 'ref_mae' (a plain MAE at the same sizes, batch x views images per step),
timed round-robin with the other cases; compare it with the 'mae' row.
--sdpa-twins adds '<variant>_sdpa' for every selected variant: the same case with
model.attn_impl=sdpa, to compare attention implementations inside one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plaml_lab.cli import bench_arguments  # noqa: E402
from plaml_lab.lab.bench import ExtraCase, cmd_bench, split_list  # noqa: E402
from plaml_lab.method.rules import VARIANTS  # noqa: E402
from plaml_lab.config import ConfigError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/bench.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_arguments(p)
    p.add_argument("--reference", action="store_true",
                   help="also time the reference MAE (benchmarks/reference_mae.py)")
    p.add_argument("--sdpa-twins", action="store_true",
                   help="also time every variant with model.attn_impl=sdpa")
    args = p.parse_args(argv)
    extra = {}
    if args.reference:
        from reference_mae import reference_case
        extra["ref_mae"] = ExtraCase("mae", [], reference_case)
    if args.sdpa_twins:
        for v in split_list(args.variants) or list(VARIANTS):
            extra[f"{v}_sdpa"] = ExtraCase(v, ["model.attn_impl=sdpa"])
    try:
        return cmd_bench(args, extra_cases=extra)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
