"""`plaml-lab bench`: step time, images/s, peak memory, FLOPs and MFU of the method's variants.

One training step = what `train_step.train_step` does per optimiser step, minus data loading:
(optionally the batched augmentation,) the PLAML forward under autocast, backward, AdamW step,
zero_grad and the EMA update of every teacher. Inputs are fixed synthetic views on the device
(random normal images of the preset's size), so no dataset is needed, at 224 px either.

How each column is measured (benchmarks/README.md has the numbers and their analysis):
- step_ms: median over --steps timed steps, after --warmup untimed ones. Variants (and
  precisions) run round-robin, one step each per round, so that a noisy neighbour slows all of
  them alike; on CUDA every timed step is bracketed by torch.cuda.synchronize(). step_iqr_ms is
  the inter-quartile range of the same samples (the noise).
- imgs_per_s: batch / step time (images, not views: a 2-view step sees 2 x batch views).
- peak_mem_mb: measured per case in a separate phase with only that case alive: on CUDA the
  growth of torch.cuda.max_memory_allocated over the allocation before the model was built; on
  CPU the growth of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) over the
  RSS before the model was built. Both include parameters, teachers, AdamW state, activations.
- gflop_per_step: torch.utils.flop_counter.FlopCounterMode over one whole step (matmuls,
  convolutions and attention; forward of the teachers, forward + backward of the student),
  counted with SDPA forced to its math backend so that every attention kernel is counted the
  same way (the counter has no formula for the CPU flash kernel). Element-wise work, norms,
  softmax and the optimiser are not counted, as is usual for MFU.
- gflop_per_s = gflop_per_step / step time; mfu = gflop_per_s / matmul_gflop_per_s, where the
  latter is the median rate of an n x n matmul in the step's dtype (fp32, bf16 or fp16), timed
  inside every round of the same run (so it sees the same neighbours as the steps).
- ema_ms: median time of one extra `update_teachers` call per round (all teachers; 0 for
  variants without teachers).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from plaml_lab.config import (ConfigError, PretrainConfig, apply_overrides, from_dict, load_yaml,
                              to_dict)
from plaml_lab.data import make_views
from plaml_lab.hardware import (autocast, resolve_device, resolve_precision, try_compile,
                                warn_if_emulated)
from plaml_lab.lab.bench_table import (BenchResult, format_table, iqr, median, paired_ratios,
                                       write_csv)
from plaml_lab.lab.measure import (PeakMemory, default_matmul_n, exact_rss, matmul_rate,
                                   release_cpu_memory, synchronize)
from plaml_lab.method import PLAML
from plaml_lab.optim import make_optimizer
from plaml_lab.method.rules import VARIANTS
from plaml_lab.paths import find_file

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_PRESET = "experiments/configs/lab.yaml"


# --- timing primitives ---------------------------------------------------------------------


# --- memory ----------------------------------------------------------------------------------


# --- one benchmark case ------------------------------------------------------------------------

def variant_config(preset: dict, variant: str, precision: str, overrides: list[str],
                   batch: int | None = None) -> PretrainConfig:
    """Preset (nested dict) + the variant's method switches + user overrides -> config."""
    if variant not in VARIANTS:
        raise ConfigError(f"--variants: unknown variant '{variant}'; allowed: {'|'.join(VARIANTS)}")
    extra = list(VARIANTS[variant]) + [f"run.precision={precision}"] + list(overrides)
    if batch:
        extra.append(f"optim.batch_size={batch}")
    return from_dict(apply_overrides(preset, extra))


@dataclass
class ExtraCase:
    """A case besides the variants: the config of `variant` plus `overrides`, built by
    builder(cfg, device) (default: the PLAML model, as the variants)."""

    variant: str
    overrides: list[str] = field(default_factory=list)
    builder: Callable[[PretrainConfig, torch.device], "Case"] | None = None


@dataclass
class Case:
    """A model, its optimiser and fixed synthetic inputs; `step()` is one optimiser step."""

    name: str
    precision: str
    cfg: PretrainConfig
    device: torch.device
    step: Callable[[], None]
    ema: Callable[[], None] | None  # the EMA update of all teachers; None without teachers
    model: torch.nn.Module
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    ema_times: list[float] = field(default_factory=list)
    attn: str = "sdpa"


def _attn_impl(model: torch.nn.Module) -> str:
    flags = {m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")}
    return "sdpa" if flags == {True} else "math" if flags == {False} else "mixed"


def build_case(cfg: PretrainConfig, device: torch.device, name: str, augment: bool = False,
               seed: int = 0) -> Case:
    """The PLAML model of `cfg` with AdamW and EMA, stepping on fixed random views."""

    torch.manual_seed(seed)
    model = PLAML.from_config(cfg).to(device)
    model.set_attention(device, resolve_precision(cfg.run.precision, device).name)
    model.train()
    optimizer = make_optimizer(model, cfg, 1e-4, device)
    step_module = try_compile(model) if cfg.run.compile else model
    b, img, nv = cfg.optim.batch_size, cfg.model.img_size, cfg.data.views
    g = torch.Generator(device=device).manual_seed(seed)
    if augment:
        images = torch.rand(b, 3, img, img, device=device, generator=g)
    else:
        views = [torch.randn(b, 3, img, img, device=device, generator=g) for _ in range(nv)]
    momenta = {n: getattr(cfg.teachers, s).momentum for n, s in cfg.teacher_roles.items()}
    temp = cfg.pl.teacher_temp

    def step() -> None:
        if augment:
            v = make_views(images, cfg.data.aug, nv, img, generator=g)
        else:
            v = views
        with autocast(device, cfg.run.precision):
            out = step_module(v, temp, generator=g)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_teachers(momenta)

    def ema() -> None:
        model.update_teachers(momenta)

    return Case(name, cfg.run.precision, cfg, device, step, ema if momenta else None, model,
                attn=_attn_impl(model))


def count_flops(fn: Callable[[], object], device: torch.device | None = None) -> float:
    """FLOPs of one call of `fn` (see the module docstring for what is counted)."""

    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    if device is not None:
        synchronize(device)
    return float(counter.get_total_flops())


FLOP_BATCH = 4


def flops_per_step(cfg: PretrainConfig, builder: Callable[[PretrainConfig], Case],
                   device: torch.device) -> float:
    """FLOPs of one step at cfg's batch, counted on a copy of the case at batch FLOP_BATCH and
    scaled: every counted op (linears, convolutions, attention) is per sample, and masking keeps
    the same number of tokens in every sample, so the count is exactly linear in the batch
    (tests/test_bench.py checks it). Counting at full size would materialise every attention
    matrix (math backend), gigabytes at ViT-B/224."""
    small = min(cfg.optim.batch_size, FLOP_BATCH)
    # eager: the counter sees aten ops, which a compiled graph would hide
    case = builder(from_dict(apply_overrides(to_dict(cfg), [f"optim.batch_size={small}",
                                                            "run.compile=false"])))
    total = count_flops(case.step, device)
    del case
    return total * cfg.optim.batch_size / small


# --- the run -----------------------------------------------------------------------------------


def run_bench(preset: str | Path | None = DEFAULT_PRESET, overrides: list[str] | None = None,
              variants: list[str] | None = None, precisions: list[str] | None = None,
              steps: int = 20, warmup: int = 3, batch: int | None = None, augment: bool = False,
              matmul_n: int | None = None, memory: bool = True,
              extra_cases: dict[str, ExtraCase] | None = None,
              log: Callable[[str], None] | None = print) -> BenchResult:
    """Benchmark every (variant, precision) case; see the module docstring.

    preset: a YAML file or preset name (None or 'none' -> the config defaults); overrides:
    dotted key=value strings for every case (run.device, run.num_threads, run.compile,
    model.attn_impl, ...); extra_cases: further cases timed round-robin with the others, by name
    (benchmarks/bench.py adds the reference MAE and the SDPA-attention twins this way)."""
    overrides = list(overrides or [])
    variants = list(variants or VARIANTS)
    extra_cases = dict(extra_cases or {})
    if preset in ("", "none"):
        preset = None
    preset_data: dict = {}
    preset_name = "defaults"
    if preset is not None:
        preset_data = load_yaml(find_file(preset, "--preset"))
        preset_name = str(preset)
    base = from_dict(apply_overrides(preset_data, overrides))
    requested = list(precisions or [base.run.precision])
    for p in requested:
        if p not in PRECISIONS:
            raise ConfigError(f"--precisions: unknown precision '{p}'; allowed: "
                              f"{'|'.join(PRECISIONS)}")
    if steps < 1 or warmup < 0:
        raise ConfigError(f"--steps={steps} --warmup={warmup}: need steps >= 1 and warmup >= 0")
    device = resolve_device(base.run.device)
    say = log or (lambda _msg: None)
    precisions = []  # resolved, in order, without repeats ('auto' and its answer are one case)
    for p in requested:
        resolved = resolve_precision(p, device)
        if p == "auto":
            say(f"precision auto -> {resolved.name} ({resolved.reason})")
        else:
            warn_if_emulated(resolved, device)
        if resolved.name not in precisions:
            precisions.append(resolved.name)
    if base.run.num_threads:
        torch.set_num_threads(base.run.num_threads)
    n = matmul_n or default_matmul_n(device)

    specs = []  # (name, precision, cfg, builder)
    for p in precisions:
        for v in variants:
            cfg = variant_config(preset_data, v, p, overrides, batch)
            specs.append((v, p, cfg, lambda c, name=v: build_case(c, device, name, augment)))
        for name, extra in extra_cases.items():
            cfg = variant_config(preset_data, extra.variant, p, overrides + extra.overrides, batch)
            b = extra.builder or (lambda c, d, name=name: build_case(c, d, name, augment))
            specs.append((name, p, cfg, lambda c, b=b: b(c, device)))

    # Phase 1: FLOPs and warm-up of every case, then all of them timed round-robin.
    cases, flops = [], {}
    for name, p, cfg, builder in specs:
        flops[(name, p)] = flops_per_step(cfg, builder, device)
        case = builder(cfg)
        for _ in range(warmup):
            case.step()
        synchronize(device)
        cases.append(case)
        say(f"built {name} {p}: {flops[(name, p)] / 1e9:.2f} GFLOP per step")
    mm_wall: dict[str, list[float]] = {p: [] for p in precisions}
    mm_cpu: dict[str, list[float]] = {p: [] for p in precisions}
    rounds: list[dict[tuple[str, str], tuple[float, float]]] = []  # key -> (wall s, cpu s)
    for r in range(steps):
        this_round = {}
        for case in cases:
            synchronize(device)
            w0, c0 = time.perf_counter(), time.process_time()
            case.step()
            synchronize(device)
            w1, c1 = time.perf_counter(), time.process_time()
            if case.ema is not None:
                case.ema()
                synchronize(device)
            w2 = time.perf_counter() if case.ema is not None else w1
            case.times.append(w1 - w0)
            case.cpu_times.append(c1 - c0)
            case.ema_times.append(w2 - w1)
            this_round[(case.name, case.precision)] = (w1 - w0, c1 - c0)
        for p in precisions:
            w, c = matmul_rate(device, p, n)
            mm_wall[p].append(w)
            mm_cpu[p].append(c)
        rounds.append(this_round)
        if (r + 1) % max(1, steps // 4) == 0:
            say(f"round {r + 1}/{steps}")

    matmul = {p: median(v) for p, v in mm_wall.items()}
    matmul_cpu = {p: median(v) for p, v in mm_cpu.items()}
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    rows = []
    for case in cases:
        t, tc = median(case.times), median(case.cpu_times)
        gf = flops[(case.name, case.precision)] / 1e9
        cfg = case.cfg
        rows.append({
            "variant": case.name, "device": str(device), "precision": case.precision,
            "batch": cfg.optim.batch_size, "views": cfg.data.views, "img_size": cfg.model.img_size,
            "step_ms": t * 1e3, "step_iqr_ms": iqr(case.times) * 1e3, "cpu_ms": tc * 1e3,
            "imgs_per_s": cfg.optim.batch_size / t, "peak_mem_mb": math.nan,
            "gflop_per_step": gf, "gflop_per_s": gf / t,
            "mfu": gf / t / matmul[case.precision],
            "mfu_cpu": gf / tc / matmul_cpu[case.precision] if tc > 0 else math.nan,
            "matmul_gflop_per_s": matmul[case.precision],
            "ema_ms": median(case.ema_times) * 1e3, "attn": case.attn,
            "compile": cfg.run.compile, "threads": threads, "preset": preset_name,
        })
    del cases, case

    # Phase 2, memory: one case alive at a time, after the timing (on CPU it changes how the
    # heap hands memory back to the OS, which would otherwise change the timings).
    if memory:
        with exact_rss(device):
            for row, (name, p, cfg, builder) in zip(rows, specs):
                with PeakMemory(device) as pm:
                    case = builder(cfg)
                    for _ in range(2):
                        case.step()
                    synchronize(device)
                del case
                row["peak_mem_mb"] = math.nan if pm.mb is None else pm.mb
                say(f"memory {name} {p}: {row['peak_mem_mb']:.1f} MB")
        release_cpu_memory()
    return BenchResult(rows, paired_ratios(rows, rounds, flops), matmul, steps)


# --- output ------------------------------------------------------------------------------------


# --- CLI ---------------------------------------------------------------------------------------

def split_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def cmd_bench(args, extra_cases=None) -> int:
    result = run_bench(args.preset, args.overrides, split_list(args.variants),
                       split_list(args.precisions), args.steps, args.warmup, args.batch,
                       args.augment, args.matmul_n, not args.no_memory, extra_cases,
                       log=lambda m: print(m, file=sys.stderr))
    print(format_table(result))
    if args.csv:
        write_csv(result, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0
