"""How many intra-op threads should a step use on this machine? One step per thread count per
round, alternating, so both see the same neighbours.

    .venv/bin/python benchmarks/threads.py [--variant dual] [--precision bf16] [--threads 1,2]
        [--rounds 10] [--preset experiments/configs/lab.yaml]

Prints the median wall-clock step time per thread count and the paired ratio to the first.
On a machine whose cores are busy with other processes, OpenMP threads that wait for each
other at every parallel region make more threads slower, not faster.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from plaml_lab.lab.bench import build_case, variant_config
from plaml_lab.config import load_yaml


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="experiments/configs/lab.yaml")
    p.add_argument("--variant", default="dual")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    cfg = variant_config(load_yaml(args.preset), args.variant, args.precision, [])
    case = build_case(cfg, torch.device("cpu"), args.variant)
    for n in counts:
        torch.set_num_threads(n)
        case.step()
    times: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(args.rounds):
        for n in counts:
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            case.step()
            times[n].append(time.perf_counter() - t0)
    first = times[counts[0]]
    print(f"{args.variant} {args.precision} at {args.preset}, batch {cfg.optim.batch_size}, "
          f"{args.rounds} rounds")
    for n in counts:
        ratio = statistics.median(a / b for a, b in zip(times[n], first))
        print(f"  {n} thread(s): median step {1e3 * statistics.median(times[n]):7.0f} ms, "
              f"{cfg.optim.batch_size / statistics.median(times[n]):6.1f} img/s, "
              f"paired time ratio to {counts[0]} thread(s): {ratio:.2f}")


if __name__ == "__main__":
    main()
