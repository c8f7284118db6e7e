"""Paired comparisons over seeds: a seed fixes a run's init, data order, augmentations and
masks for every variant, so two variants' runs of one seed are a pair. The ablation table and
the compare-runs dashboard both score a difference by the Student-t confidence interval of the
per-seed differences: held (above 0), reversed (below), unresolved (spans 0)."""

from __future__ import annotations

import math

CONFIDENCE = 0.95  # of the paired confidence intervals


def paired_differences(rows: list[dict], better: str, worse: str, metric: str
                       ) -> dict[int, float]:
    """{seed: better - worse} on `metric` for every seed both variants have a finite value of."""
    def by_seed(variant):
        return {r["seed"]: float(r[metric]) for r in rows
                if r["variant"] == variant and r.get(metric) is not None
                and math.isfinite(float(r[metric]))}
    a, b = by_seed(better), by_seed(worse)
    return {s: a[s] - b[s] for s in a if s in b}


def paired_interval(diffs: list[float], confidence: float = CONFIDENCE) -> dict:
    """Mean of paired differences and its Student-t confidence interval (n - 1 degrees of
    freedom, the sample std / sqrt(n) as standard error) with a verdict: held (the interval
    above 0), reversed (below), unresolved (it spans 0); no verdict with fewer than two pairs."""
    from scipy import stats  # scikit-learn's dependency; imported where a table is written

    n = len(diffs)
    if n == 0:
        return {"pairs": 0, "mean_diff": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "paired_verdict": "no verdict (no paired seeds)"}
    mean = sum(diffs) / n
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    if n < 2:
        return {"pairs": 1, "mean_diff": mean, "ci_low": math.nan, "ci_high": math.nan,
                "paired_verdict": "no verdict (one pair: no interval)"}
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    lo, hi = mean - half, mean + half
    verdict = "held" if lo > 0 else "reversed" if hi < 0 else "unresolved"
    return {"pairs": n, "mean_diff": mean, "ci_low": lo, "ci_high": hi, "paired_verdict": verdict}
