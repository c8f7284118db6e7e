"""The method's variant grid (docs/method.md, 'The variants'): each name and the method switches that make it (the one list that
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
    """The variant grid's name for a PretrainConfig (mae, token, single, dual, plonly), or a
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


def unread_keys(cfg, keys: list[str]) -> list[str]:
    """Those of `keys` (dotted) that cfg's variant never reads, each with the reason: e.g.
    teachers.reconstruction.* when one teacher serves both roles."""
    return [f"{key} is not read: {why}" for key, why in unread_reasons(cfg, keys).items()]


def unread_reasons(cfg, keys: list[str]) -> dict[str, str]:
    """{key: why} for those of `keys` (dotted) that cfg's variant never reads."""
    roles = cfg.teacher_roles
    pl, target = cfg.uses_pseudo_labels, cfg.method.target
    rules = [
        ("teachers.labelling.", "labelling" not in roles,
         f"there is no labelling teacher (teachers: {', '.join(roles) or 'none'})"),
        ("teachers.reconstruction.", "reconstruction" not in roles,
         "there is no reconstruction teacher" + (" (method.teachers=single: the labelling teacher "
                                                 "serves both roles)" if roles else "")),
        ("pl.", not pl, "method.pseudo_labels=none"),
        ("pl.center_momentum", cfg.pl.assignment != "centering", "pl.assignment=sinkhorn"),
        ("pl.sinkhorn_iters", cfg.pl.assignment != "sinkhorn", "pl.assignment=centering"),
        ("pl.patch_teacher_temp", not cfg.pl_patch, f"method.pseudo_labels={cfg.method.pseudo_labels}"),
        ("rec.norm_pix_loss", target != "pixels", f"method.target={target}"),
        ("rec.", target != "tokens" and target != "pixels", f"method.target={target}"),
        ("rec.loss", target == "pixels", "method.target=pixels"),
        ("rec.target_", target == "pixels", "method.target=pixels"),
        ("loss.w_rec", target == "none", "method.target=none"),
        ("loss.w_cls", not cfg.pl_cls, f"method.pseudo_labels={cfg.method.pseudo_labels}"),
        ("loss.w_patch", not cfg.pl_patch, f"method.pseudo_labels={cfg.method.pseudo_labels}"),
        ("mask.block_size", cfg.mask.strategy != "block", "mask.strategy=random"),
    ]
    out = {}
    for key in keys:
        why = next((w for prefix, unread, w in rules if unread and key.startswith(prefix)), None)
        if why:
            out[key] = why
    return out
