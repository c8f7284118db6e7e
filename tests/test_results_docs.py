"""The CIFAR-10 numbers that docs/results.md and README.md quote are the committed tables' own:
each paired interval against random init, as the claims CSV of its results folder has it
(rounded to 3 places), appears in the docs. An edited CSV or a hand-typed number fails here."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "cifar_cpu"
# results folder -> (variants whose linear gain over random init README.md quotes)
TABLES = {".": ("mae", "token", "single", "dual", "plonly"), "2ep": (),
          "2ep/bonferroni_975": ("token", "dual")}


def one_line(path: Path) -> str:
    """The file's text with line breaks (and runs of spaces) as one space: prose wraps."""
    return " ".join(path.read_text().split())


def claims(folder: str) -> list[dict]:
    with open(RESULTS / folder / "ablation_folder_test_claims.csv") as f:
        return list(csv.DictReader(f))


def interval(row: dict) -> tuple[str, str, str]:
    return tuple(f"{float(row[k]):+.3f}" for k in ("mean_diff", "ci_low", "ci_high"))


@pytest.mark.parametrize("folder", TABLES)
def test_every_linear_gain_over_random_init_in_results_md_is_the_committed_tables(folder):
    doc = one_line(ROOT / "docs" / "results.md")
    rows = [r for r in claims(folder)
            if r["worse"] == "random_init" and r["metric"] == "linear_top1"]
    assert len(rows) == 5
    for r in rows:
        mean, lo, hi = interval(r)
        assert f"{mean} [{lo}, {hi}]" in doc, (folder, r["better"])


@pytest.mark.parametrize("folder", [f for f, quoted in TABLES.items() if quoted])
def test_readme_quotes_the_committed_linear_gains(folder):
    readme = one_line(ROOT / "README.md")
    for r in claims(folder):
        if r["worse"] == "random_init" and r["metric"] == "linear_top1" \
                and r["better"] in TABLES[folder]:
            mean, lo, hi = interval(r)
            assert f"{mean}, CI [{lo}, {hi}]: {r['paired_verdict']}" in readme, (folder, r["better"])


def test_the_bonferroni_reread_is_of_the_same_runs_at_975():
    """2ep/bonferroni_975 re-reads 2ep's runs: same per-seed differences, level 0.975, wider."""
    at95 = {(r["better"], r["worse"], r["metric"]): r for r in claims("2ep")}
    at975 = claims("2ep/bonferroni_975")
    assert at975 and {r["confidence"] for r in at975} == {"0.975"}
    for r in at975:
        base = at95[(r["better"], r["worse"], r["metric"])]
        assert r["diffs"] == base["diffs"]
        assert float(r["ci_low"]) < float(base["ci_low"]) < float(base["ci_high"]) < float(r["ci_high"])
