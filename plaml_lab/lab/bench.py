"""`plaml-lab bench`: step time, images/s, peak memory, FLOPs and MFU of the method's variants.

One training step = what `train._loop` does per optimiser step, minus data loading: (optionally
the batched augmentation,) the PLAML forward under autocast, backward, AdamW step, zero_grad and
the EMA update of every teacher. Inputs are fixed synthetic views on the device (random normal
images of the preset's size), so no dataset is needed, at 224 px either.

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

import contextlib
import csv
import ctypes
import gc
import math
import re
import statistics
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
from plaml_lab.hardware import autocast, resolve_device, resolve_precision, warn_if_emulated
from plaml_lab.method import PLAML
from plaml_lab.train import make_optimizer
from plaml_lab.variants import VARIANTS

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_PRESET = "experiments/configs/lab.yaml"
CSV_COLUMNS = ("variant", "device", "precision", "batch", "views", "img_size", "step_ms",
               "step_iqr_ms", "cpu_ms", "imgs_per_s", "peak_mem_mb", "gflop_per_step",
               "gflop_per_s", "mfu", "mfu_cpu", "matmul_gflop_per_s", "ema_ms", "attn", "compile",
               "threads", "preset")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --- timing primitives ---------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def matmul_rate(device: torch.device, precision: str, n: int, reps: int = 3,
                _cache: dict = {}) -> tuple[float, float]:  # noqa: B006 (operands are reused)
    """GFLOP/s of `reps` back-to-back (n, n) @ (n, n) products in the precision's dtype, per
    second of wall-clock time and per second of process CPU time."""
    key = (str(device), precision, n)
    if key not in _cache:
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, generator=g).to(_DTYPES[precision])
        b = torch.randn(n, n, device=device, generator=g).to(_DTYPES[precision])
        _cache[key] = (a, b, torch.empty_like(a))
        torch.mm(a, b, out=_cache[key][2])  # first call: kernel selection, page faults
    a, b, c = _cache[key]
    synchronize(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        torch.mm(a, b, out=c)
    synchronize(device)
    flop = 2 * n ** 3 * reps / 1e9
    cpu = time.process_time() - c0
    return flop / (time.perf_counter() - t0), (flop / cpu if cpu > 0 else math.nan)


def default_matmul_n(device: torch.device) -> int:
    # large enough to reach the machine's matmul peak, small enough to time in a few ms
    return 8192 if device.type == "cuda" else 1024


# --- memory ----------------------------------------------------------------------------------

def _proc_status_kb(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def _exact_rss(device: torch.device):
    """On CPU with glibc: serve every allocation of 256 KiB or more by mmap, returned to the OS
    on free, so that the process's RSS follows the live tensors and its peak (VmHWM) is the peak
    of live memory. Afterwards the thresholds are left at glibc's steady-state values (32 MiB
    mmap, 64 MiB trim), which is what the dynamic defaults grow to in a training process."""
    libc = None
    if device.type == "cpu":
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 256 * 1024)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            libc = None
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(-3, 32 * 2**20)
            libc.mallopt(-1, 64 * 2**20)


def _release_cpu_memory() -> None:
    """Hand freed heap pages back to the OS, so the next RSS baseline is not inflated by pages
    an earlier case freed (glibc keeps them otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory growth (MB) of the code run inside the context: CUDA max allocated, or the
    CPU process's peak RSS (VmHWM after a reset). `.mb` is None where it cannot be measured."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb: float | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            _release_cpu_memory()
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
                self._base = _proc_status_kb("VmRSS")
            except OSError:
                self._base = None
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        elif self._base is not None:
            peak = _proc_status_kb("VmHWM")
            self.mb = None if peak is None else (peak - self._base) / 1024


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
    model = PLAML(cfg).to(device)
    model.set_attention(device, cfg.run.precision)
    model.train()
    optimizer = make_optimizer(model, cfg, 1e-4, device)
    step_module = _maybe_compile(model) if cfg.run.compile else model
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


def _maybe_compile(module: torch.nn.Module) -> torch.nn.Module:
    try:
        return torch.compile(module)
    except Exception as e:  # noqa: BLE001
        print(f"warning: run.compile=true: torch.compile failed ({e}); running eagerly",
              file=sys.stderr)
        return module


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

@dataclass
class BenchResult:
    rows: list[dict]
    ratios: list[dict]
    matmul: dict[str, float]  # precision -> median wall-clock GFLOP/s of the matmul probe
    rounds: int


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def _iqr(xs: list[float]) -> float:
    if len(xs) < 4:
        return max(xs) - min(xs) if xs else math.nan
    q = statistics.quantiles(xs, n=4)
    return q[2] - q[0]



def run_bench(preset: str | Path | None = DEFAULT_PRESET, overrides: list[str] | None = None,
              variants: list[str] | None = None, precisions: list[str] | None = None,
              steps: int = 20, warmup: int = 3, batch: int | None = None, augment: bool = False,
              matmul_n: int | None = None, memory: bool = True,
              extra_cases: dict[str, ExtraCase] | None = None,
              log: Callable[[str], None] | None = print) -> BenchResult:
    """Benchmark every (variant, precision) case; see the module docstring.

    preset: a YAML file (None, 'none' or a missing default -> the config defaults); overrides:
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
    if preset is not None and (Path(preset).exists() or str(preset) != DEFAULT_PRESET):
        preset_data = load_yaml(preset)
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

    matmul = {p: _median(v) for p, v in mm_wall.items()}
    matmul_cpu = {p: _median(v) for p, v in mm_cpu.items()}
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    rows = []
    for case in cases:
        t, tc = _median(case.times), _median(case.cpu_times)
        gf = flops[(case.name, case.precision)] / 1e9
        cfg = case.cfg
        rows.append({
            "variant": case.name, "device": str(device), "precision": case.precision,
            "batch": cfg.optim.batch_size, "views": cfg.data.views, "img_size": cfg.model.img_size,
            "step_ms": t * 1e3, "step_iqr_ms": _iqr(case.times) * 1e3, "cpu_ms": tc * 1e3,
            "imgs_per_s": cfg.optim.batch_size / t, "peak_mem_mb": math.nan,
            "gflop_per_step": gf, "gflop_per_s": gf / t,
            "mfu": gf / t / matmul[case.precision],
            "mfu_cpu": gf / tc / matmul_cpu[case.precision] if tc > 0 else math.nan,
            "matmul_gflop_per_s": matmul[case.precision],
            "ema_ms": _median(case.ema_times) * 1e3, "attn": case.attn,
            "compile": cfg.run.compile, "threads": threads, "preset": preset_name,
        })
    del cases, case

    # Phase 2, memory: one case alive at a time, after the timing (on CPU it changes how the
    # heap hands memory back to the OS, which would otherwise change the timings).
    if memory:
        with _exact_rss(device):
            for row, (name, p, cfg, builder) in zip(rows, specs):
                with PeakMemory(device) as pm:
                    case = builder(cfg)
                    for _ in range(2):
                        case.step()
                    synchronize(device)
                del case
                row["peak_mem_mb"] = math.nan if pm.mb is None else pm.mb
                say(f"memory {name} {p}: {row['peak_mem_mb']:.1f} MB")
        _release_cpu_memory()
    return BenchResult(rows, paired_ratios(rows, rounds, flops), matmul, steps)


def paired_ratios(rows: list[dict], rounds: list[dict], flops: dict) -> list[dict]:
    """The ratios the targets are about (benchmarks/README.md). A ratio of two timed cases is
    the median over rounds of the same-round ratio (both steps saw the same neighbours), once
    on wall-clock time and once on process CPU time (with one thread, the latter does not count
    the time other processes held the cores)."""
    have = {(r["variant"], r["precision"]) for r in rows}
    by = {(r["variant"], r["precision"]): r for r in rows}
    out = []

    def timed(name: str, target: str, a: tuple, b: tuple, speed: bool, flop: bool = False):
        """speed: ratio of rates (b's time / a's time); flop: of FLOP rates."""
        if not {a, b} <= have:
            return
        scale = flops[a] / flops[b] if flop else 1.0
        vals = []
        for i in (0, 1):
            rs = [(rd[b][i] / rd[a][i] if speed else rd[a][i] / rd[b][i]) * scale
                  for rd in rounds if rd[a][i] > 0 and rd[b][i] > 0]
            vals.append((_median(rs), _iqr(rs)))
        out.append({"ratio": name, "target": target, "wall": vals[0][0], "wall_iqr": vals[0][1],
                    "cpu": vals[1][0], "cpu_iqr": vals[1][1]})

    def plain(name: str, target: str, value: float):
        out.append({"ratio": name, "target": target, "wall": value, "wall_iqr": math.nan,
                    "cpu": math.nan, "cpu_iqr": math.nan})

    precisions = sorted({p for _, p in have})
    for p in precisions:
        timed(f"dual/mae FLOP/s [{p}]", ">= 0.9", ("dual", p), ("mae", p), True, flop=True)
        timed(f"dual/single step time [{p}]", "", ("dual", p), ("single", p), False)
        timed(f"mae/ref_mae imgs/s [{p}]", ">= 1.0", ("mae", p), ("ref_mae", p), True)
        if {("dual", p), ("single", p)} <= have:
            a, b = by[("dual", p)]["peak_mem_mb"], by[("single", p)]["peak_mem_mb"]
            plain(f"dual/single peak memory [{p}]", "<= 1.10", a / b if b else math.nan)
        if ("dual", p) in have:
            r = by[("dual", p)]
            plain(f"EMA of all teachers / dual step [{p}]", "<= 0.03", r["ema_ms"] / r["step_ms"])
    for v in sorted({v for v, _ in have}):
        timed(f"bf16/fp32 imgs/s [{v}]", ">= 1.5", (v, "bf16"), (v, "fp32"), True)
    for p in precisions:  # twins of a variant named <variant>_<tag> (benchmarks/bench.py)
        for v in sorted({v for v, q in have if q == p and "_" in v and v != "ref_mae"}):
            base = v.split("_")[0]
            timed(f"{v}/{base} step time [{p}]", "", (v, p), (base, p), False)
    return out


# --- output ------------------------------------------------------------------------------------

def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def format_table(result: BenchResult) -> str:
    cols = ("variant", "precision", "batch", "views", "step_ms", "step_iqr_ms", "cpu_ms",
            "imgs_per_s", "peak_mem_mb", "gflop_per_step", "gflop_per_s", "mfu", "mfu_cpu",
            "ema_ms", "attn")
    lines = [list(cols)] + [[_fmt(r[c]) for c in cols] for r in result.rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
    text = ["  ".join(s.rjust(w) for s, w in zip(line, widths)) for line in lines]
    if result.rows:
        r0 = result.rows[0]
        mm = ", ".join(f"{p} {v:.0f}" for p, v in result.matmul.items())
        text.insert(0, f"device {r0['device']}, threads {r0['threads'] or '-'}, preset "
                       f"{r0['preset']}, {result.rounds} round-robin rounds; matmul GFLOP/s "
                       f"(median): {mm}")
    if result.ratios:
        text += ["", "ratios: median over rounds of the same-round ratio [IQR], by wall-clock "
                     "and by process CPU time"]
        for r in result.ratios:
            cpu = "" if r["cpu"] != r["cpu"] else f"   cpu {r['cpu']:.3f} [{_fmt(r['cpu_iqr'])}]"
            iqr = "" if r["wall_iqr"] != r["wall_iqr"] else f" [{_fmt(r['wall_iqr'])}]"
            target = f"   target {r['target']}" if r["target"] else ""
            text.append(f"  {r['ratio']:38s} wall {r['wall']:.3f}{iqr}{cpu}{target}")
    return "\n".join(text)


def write_csv(result: BenchResult, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in result.rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()
                        if k in CSV_COLUMNS})


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
