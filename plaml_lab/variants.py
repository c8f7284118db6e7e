"""METHOD.md's variant grid: each name and the method switches that make it (the one list that
bench, ablation, evaluate, the notebooks and the tests use). No torch: `plaml-lab --help` lists
these names."""

from __future__ import annotations

VARIANTS: dict[str, list[str]] = {
    "mae": ["method.target=pixels", "method.pseudo_labels=none"],
    "token": ["method.target=tokens", "method.pseudo_labels=none"],
    "single": ["method.target=tokens", "method.pseudo_labels=both", "method.teachers=single"],
    "dual": ["method.target=tokens", "method.pseudo_labels=both", "method.teachers=dual"],
    "plonly": ["method.target=none", "method.pseudo_labels=both", "method.teachers=dual"],
}


def variant_name(cfg) -> str:
    """METHOD.md's grid name for a PretrainConfig (mae, token, single, dual, plonly), or a
    description of its switches (e.g. `pixels+pl_cls+dual`) for a point off the grid."""
    t, p, te = cfg.method.target, cfg.method.pseudo_labels, cfg.method.teachers
    if t == "pixels" and p == "none":
        return "mae"
    if t == "tokens" and p == "none":
        return "token"
    if t == "tokens" and p == "both":
        return te
    if t == "none" and p == "both":
        return "plonly"
    return f"{t}+pl_{p}+{te}"
