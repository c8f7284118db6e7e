"""The ablation table: mean +- std over seeds of each variant, the claims (docs/method.md) as
comparisons between variants, and the CSV, markdown and bar-plot outputs. Pure functions of the
rows ablation.py collects.

A seed fixes a run's init, data order, augmentations and masks for every variant, so two
variants' runs of one seed are a pair: a claim's verdict comes from the per-seed paired
differences (their mean and a Student-t confidence interval, 95% unless the caller asks for
another level, e.g. a Bonferroni-corrected one: held when it lies above 0, reversed below,
unresolved when it spans 0). The unpaired difference of means against the
pooled seed spread stays beside it."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from plaml_lab.lab.paired import CONFIDENCE, paired_differences, paired_interval
from plaml_lab.viz.figures import new_figure

BASELINE = "random_init"


# Columns of the CSV, in order (those a probe did not produce are left empty).
METRICS = ("knn_top1", "knn_top1_mean", "linear_top1", "linear_top1_mean", "finetune_top1",
           "nmi", "ari", "ami", "nmi_shuffled",
           "prototypes_used", "assignment_perplexity", "seg_miou", "seg_pixel_acc",
           "box_mean_iou", "box_iou50")


# Columns of the markdown table and panels of the plot.
TABLE_METRICS = ("knn_top1", "knn_top1_mean", "linear_top1", "linear_top1_mean", "finetune_top1",
                 "nmi", "ami", "nmi_shuffled",
                 "prototypes_used",
                 "assignment_perplexity", "seg_miou", "box_mean_iou", "box_iou50")


PLOT_METRICS = ("knn_top1", "linear_top1", "finetune_top1", "nmi", "seg_miou", "box_mean_iou")


# The paper's claims (docs/method.md, 'The claims') as comparisons between grid points: (claim, better, worse, metrics).
CLAIMS = (
    ("pseudo labels improve a token-reconstructing MAE", "dual", "token",
     ("knn_top1", "linear_top1")),
    ("reconstructing tokens beats reconstructing pixels", "token", "mae",
     ("knn_top1", "linear_top1")),
    ("two teachers beat one teacher doing both", "dual", "single",
     ("knn_top1", "linear_top1")),
    ("the paper's variant beats plain MAE", "dual", "mae", ("knn_top1", "linear_top1")),
    ("gains transfer to dense tasks (seg, box) over MAE", "dual", "mae",
     ("seg_miou", "box_mean_iou")),
    ("reconstruction adds to pseudo labels alone", "dual", "plonly",
     ("knn_top1", "linear_top1")),
)


# Every pretrained variant against the untrained encoder of the same shape, on these metrics.
BASELINE_METRICS = ("knn_top1", "knn_top1_mean", "linear_top1")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value) of finite values."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return math.nan, math.nan
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def aggregate(rows: list[dict], metrics=METRICS) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Rows {variant, seed, metric...} -> {variant: {metric: (mean, std, n seeds)}}, variants in
    first-seen order."""
    out: dict[str, dict] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        out[variant] = {}
        for m in metrics:
            vals = [r[m] for r in mine if r.get(m) is not None]
            mean, std = mean_std(vals)
            out[variant][m] = (mean, std, len(vals))
    return out


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "seed", "steps", *METRICS])
        for r in rows:
            w.writerow([r["variant"], r["seed"], r.get("steps", "")]
                       + ["" if r.get(m) is None else f"{r[m]:.6g}" for m in METRICS])


def read_csv(path: Path) -> list[dict]:
    """The rows `write_csv` wrote (empty cells -> None): a committed table's per-run rows, so its
    paired verdicts can be recomputed (tools/paired_verdicts.py)."""
    with open(path, newline="") as f:
        return [{"variant": r["variant"], "seed": int(r["seed"]),
                 "steps": int(r["steps"]) if r.get("steps") else None,
                 **{m: float(r[m]) if r.get(m) else None for m in METRICS}}
                for r in csv.DictReader(f)]


def _fmt(mean: float, std: float, metric: str) -> str:
    if math.isnan(mean):
        return "n/a"
    digits = 1 if metric in ("prototypes_used", "assignment_perplexity") else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def compare(agg: dict, better: str, worse: str, metric: str,
            rows: list[dict] | None = None, confidence: float = CONFIDENCE) -> dict | None:
    """Difference of means of `better` minus `worse` on `metric` and a verdict against the seed
    spread s = sqrt(std_a^2 + std_b^2): held (difference > s), reversed (< -s), within seed
    spread; no verdict with fewer than two seeds. None when either side lacks the metric.
    With `rows` (the per-run rows), also the paired view: `diffs` {seed: difference} and
    paired_interval's mean_diff, ci_low, ci_high, pairs and paired_verdict at `confidence`."""
    if better not in agg or worse not in agg:
        return None
    (ma, sa, na), (mb, sb, nb) = agg[better][metric], agg[worse][metric]
    if math.isnan(ma) or math.isnan(mb):
        return None
    diff, spread = ma - mb, math.sqrt(sa ** 2 + sb ** 2)
    if min(na, nb) < 2:
        verdict = "no verdict (one seed: no spread)"
    else:
        verdict = ("held" if diff > spread else "reversed" if diff < -spread
                   else "within seed spread")
    out = {"metric": metric, "better": better, "worse": worse, "diff": diff,
           "spread": spread, "seeds": min(na, nb), "verdict": verdict}
    if rows is not None:
        diffs = paired_differences(rows, better, worse, metric)
        out.update(diffs=diffs, confidence=confidence,
                   **paired_interval(list(diffs.values()), confidence))
    return out


def stand_in(agg: dict, variant: str) -> str:
    """The point of `agg` that stands for a CLAIMS variant: the point of that name, else the only
    point named `<variant>_<tag>` (a budget grid's dual_ep8); `variant` itself when there is
    none, or more than one (pl_mono's dual_w025 and dual_k32 are not one variant)."""
    if variant in agg:
        return variant
    tagged = [p for p in agg if p.startswith(variant + "_")]
    return tagged[0] if len(tagged) == 1 else variant


def claim_verdicts(agg: dict, rows: list[dict] | None = None,
                   confidence: float = CONFIDENCE) -> list[dict]:
    """Each CLAIMS comparison present in `agg` (by name or by `stand_in`), scored by `compare`
    (paired too, given the per-run `rows`)."""
    out = []
    for claim, better, worse, metrics in CLAIMS:
        for m in metrics:
            v = compare(agg, stand_in(agg, better), stand_in(agg, worse), m, rows, confidence)
            if v is not None:
                out.append({"claim": claim, **v})
    return out


def baseline_verdicts(agg: dict, rows: list[dict] | None = None,
                      confidence: float = CONFIDENCE) -> list[dict]:
    """Every pretrained variant against the random-init row on BASELINE_METRICS ("held" = it
    beats random init by more than the seed spread; paired too, given `rows`)."""
    out = []
    for variant in agg:
        if variant == BASELINE:
            continue
        for m in BASELINE_METRICS:
            v = compare(agg, variant, BASELINE, m, rows, confidence)
            if v is not None:
                out.append(v)
    return out


CLAIM_COLUMNS = ("claim", "better", "worse", "metric", "pairs", "diffs", "mean_diff", "ci_low",
                 "ci_high", "confidence", "paired_verdict", "diff", "spread", "verdict")


def write_claims_csv(verdicts: list[dict], path: Path) -> None:
    """One row per claim (or baseline comparison) and metric: the paired columns (per-seed
    differences as seed:value pairs, their mean, the CI and its level, the paired verdict), then the
    unpaired difference of means, the seed spread and its verdict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CLAIM_COLUMNS)
        for v in verdicts:
            cells = []
            for c in CLAIM_COLUMNS:
                x = v.get(c, "")
                if c == "diffs":
                    x = " ".join(f"{s}:{d:+.6g}" for s, d in (x or {}).items())
                elif isinstance(x, float):
                    x = "" if math.isnan(x) else f"{x:.6g}"
                cells.append(x)
            w.writerow(cells)


def _ci(v: dict) -> str:
    if math.isnan(v.get("ci_low", math.nan)):
        return "n/a"
    return f"[{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]"


def _paired_cells(v: dict) -> str:
    diffs = " ".join(f"{d:+.3f}" for d in v.get("diffs", {}).values()) or "n/a"
    mean = "n/a" if math.isnan(v.get("mean_diff", math.nan)) else f"{v['mean_diff']:+.3f}"
    return f"{diffs} | {mean} | {_ci(v)} | {v.get('paired_verdict', 'n/a')}"


def level_text(confidence: float) -> str:
    """0.95 -> '95%', 0.975 -> '97.5%' (a Bonferroni level must not round to 98%)."""
    return f"{confidence * 100:.4g}%"


def write_markdown(agg: dict, path: Path, *, header: dict, rows: list[dict] | None = None,
                   confidence: float = CONFIDENCE) -> None:
    """The table (mean ± std per variant), then the claims and the comparisons with the
    random-init encoder, paired by seed when `rows` are given."""
    metrics = [m for m in TABLE_METRICS if any(not math.isnan(v[m][0]) for v in agg.values())]
    split = header.get("split", "val")
    lines = [f"# Ablation on `{header['dataset']}`, {split} split: mean ± std over seeds", "",
             f"Written by `{header['command']}` on {header['date']} ({header['machine']}).",
             f"Preset `{header['preset']}`, grid `{header['grid']}`, seeds {header['seeds']}, "
             f"probes on the frozen student encoder, scored on the {split} split; std is the "
             "sample std (n - 1) over seeds.",
             "", "| variant | seeds | " + " | ".join(metrics) + " |",
             "|---|---|" + "---|" * len(metrics)]
    for variant, stats in agg.items():
        n = max(v[2] for v in stats.values())
        lines.append(f"| {variant} | {n} | "
                     + " | ".join(_fmt(*stats[m][:2], m) for m in metrics) + " |")
    level = level_text(confidence)
    verdicts = claim_verdicts(agg, rows, confidence)
    if verdicts:
        lines += ["", f"## Claims: paired by seed ({level} Student-t CI of the per-seed "
                  "differences), the unpaired difference of means beside", "",
                  f"| claim | metric | per-seed differences | mean | {level} CI | verdict | "
                  "unpaired difference ± spread | unpaired verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for v in verdicts:
            lines.append(f"| {v['claim']} ({v['better']} vs {v['worse']}) | {v['metric']} | "
                         f"{_paired_cells(v)} | {v['diff']:+.3f} ± {v['spread']:.3f} | "
                         f"{v['verdict']} |")
    against = baseline_verdicts(agg, rows, confidence)
    if against:
        lines += ["", "## Against the random-init encoder (paired by seed)", "",
                  f"| variant | metric | per-seed differences | mean | {level} CI | beats random "
                  "init | unpaired difference ± spread | unpaired verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for v in against:
            lines.append(f"| {v['better']} | {v['metric']} | {_paired_cells(v)} | "
                         f"{v['diff']:+.3f} ± {v['spread']:.3f} | {v['verdict']} |")
    if header.get("failed"):
        lines += ["", "## Failed runs", ""] + [f"- {k}: {e}" for k, e in header["failed"].items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_plot(rows: list[dict], agg: dict, path: Path, title: str = "") -> None:
    """One panel per PLOT_METRICS: a bar per variant (mean, std error bar), seeds as dots;
    the random-init baseline hatched grey."""
    metrics = [m for m in PLOT_METRICS if any(not math.isnan(v[m][0]) for v in agg.values())]
    variants = list(agg)
    fig = new_figure(3.0 * max(1, len(metrics)), 3.4)
    axes = fig.subplots(1, max(1, len(metrics)), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for i, v in enumerate(variants):
            mean, std, _ = agg[v][m]
            base = v == BASELINE
            ax.bar(i, 0 if math.isnan(mean) else mean, yerr=0 if math.isnan(std) else std,
                   color="0.8" if base else f"C{i}", hatch="//" if base else None,
                   edgecolor="0.3", capsize=3)
            seeds = [r[m] for r in rows if r["variant"] == v and r.get(m) is not None]
            ax.plot([i] * len(seeds), seeds, "k.", ms=4)
        if BASELINE in agg and not math.isnan(agg[BASELINE][m][0]):
            ax.axhline(agg[BASELINE][m][0], ls="--", lw=1, color="0.4")  # the bar to beat
        ax.set_xticks(range(len(variants)), variants, rotation=45, ha="right")
        ax.set_title(m)
        ax.set_ylim(0, 1.0)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def write_tables(rows: list[dict], agg: dict, out_dir: Path, header: dict,
                 confidence: float = CONFIDENCE) -> dict[str, Path]:
    """The table's four files in `out_dir`, named by dataset and split
    (ablation_<dataset>[_<split>].csv, .md, .png and _claims.csv); returns {kind: path}."""
    split, seeds = header.get("split", "val"), header.get("seeds")
    stem = f"ablation_{header['dataset']}" + ("" if split == "val" else f"_{split}")
    outputs = {"csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md",
               "png": out_dir / f"{stem}.png", "claims_csv": out_dir / f"{stem}_claims.csv"}
    write_csv(rows, outputs["csv"])
    write_claims_csv([{"claim": v.get("claim", f"beats {BASELINE}"), **v}
                      for v in claim_verdicts(agg, rows, confidence)
                      + baseline_verdicts(agg, rows, confidence)],
                     outputs["claims_csv"])
    write_markdown(agg, outputs["md"], header=header, rows=rows, confidence=confidence)
    if rows:
        write_plot(rows, agg, outputs["png"],
                   title=f"{stem} ({split} split; mean ± std over seeds {seeds})")
    return outputs
