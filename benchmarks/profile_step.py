"""Where one training step's time goes: torch.profiler self CPU time, grouped by kind of op.

    .venv/bin/python benchmarks/profile_step.py dual mae [--precision fp32] [--threads 1]
        [--preset experiments/configs/lab.yaml] [--steps 3]

One step is what `plaml-lab bench` times (plaml_lab.bench.build_case): forward under autocast,
backward, AdamW, EMA of every teacher, on fixed synthetic views. benchmarks/README.md records the
output."""

from __future__ import annotations

import argparse
import collections

import torch
from torch.profiler import ProfilerActivity, profile

from plaml_lab.lab.bench import build_case, variant_config
from plaml_lab.config import load_yaml

KINDS = (  # first match wins
    ("matmul", ("aten::addmm", "aten::mm", "aten::bmm")),
    ("attention (SDPA)", ("scaled_dot_product",)),
    ("copy_", ("aten::copy_",)),
    ("gelu", ("gelu",)),
    ("layer_norm", ("layer_norm",)),
    ("softmax", ("softmax",)),
    ("optimizer (AdamW)", ("fused_adam", "addcdiv", "addcmul", "aten::sqrt")),
    ("ema (foreach lerp)", ("foreach_lerp",)),
)


def kind(name: str) -> str:
    for label, keys in KINDS:
        if any(k == name or (not k.startswith("aten::") and k in name) for k in keys):
            return label
    return "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("variants", nargs="+")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--preset", default="experiments/configs/lab.yaml")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for variant in args.variants:
        cfg = variant_config(load_yaml(args.preset), variant, args.precision, [])
        case = build_case(cfg, torch.device("cpu"), variant)
        for _ in range(2):
            case.step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                case.step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        shares = collections.Counter()
        for e in events:
            shares[kind(e.key)] += e.self_cpu_time_total
        print(f"{variant} {args.precision}: {total / args.steps / 1000:.0f} ms self CPU per step "
              f"({args.steps} steps, {args.threads} thread(s))")
        for label, t in shares.most_common():
            print(f"  {label:22s} {100 * t / total:5.1f}%")


if __name__ == "__main__":
    main()
