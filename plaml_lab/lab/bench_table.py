"""What `plaml-lab bench` reports: the ratios its targets are about (same-round, so both cases
saw the same neighbours) and the printed and CSV tables."""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

CSV_COLUMNS = ("variant", "device", "precision", "batch", "views", "img_size", "step_ms",
               "step_iqr_ms", "cpu_ms", "imgs_per_s", "peak_mem_mb", "gflop_per_step",
               "gflop_per_s", "mfu", "mfu_cpu", "matmul_gflop_per_s", "ema_ms", "attn", "compile",
               "threads", "preset")


@dataclass
class BenchResult:
    rows: list[dict]
    ratios: list[dict]
    matmul: dict[str, float]  # precision -> median wall-clock GFLOP/s of the matmul probe
    rounds: int


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def iqr(xs: list[float]) -> float:
    if len(xs) < 4:
        return max(xs) - min(xs) if xs else math.nan
    q = statistics.quantiles(xs, n=4)
    return q[2] - q[0]


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
            vals.append((median(rs), iqr(rs)))
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
