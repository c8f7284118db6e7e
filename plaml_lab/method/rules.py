"""The method's rules in one place: which teachers and parts a variant has, the named variants
of docs/method.md ('The variants'), and which config keys a variant never reads.

No torch (`plaml-lab --help` lists the variant names) and no import of the config: a `Variant`
is built from the three method switches, and the functions that speak of config keys take any
object of PretrainConfig's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGETS = ("pixels", "tokens", "none")
PSEUDO_LABELS = ("none", "cls", "patch", "both")
TEACHER_MODES = ("single", "dual")

# The variant grid: each name and the method switches that make it (the one list that bench,
# ablation, evaluate, the notebooks and the tests use).
VARIANTS: dict[str, list[str]] = {
    "mae": ["method.target=pixels", "method.pseudo_labels=none"],
    "token": ["method.target=tokens", "method.pseudo_labels=none"],
    "single": ["method.target=tokens", "method.pseudo_labels=both", "method.teachers=single"],
    "dual": ["method.target=tokens", "method.pseudo_labels=both", "method.teachers=dual"],
    "plonly": ["method.target=none", "method.pseudo_labels=both", "method.teachers=dual"],
}


@dataclass(frozen=True)
class Variant:
    """The method switches: what the decoder reconstructs (`target`: pixels | tokens | none),
    which tokens predict pseudo labels (`pseudo_labels`: none | cls | patch | both) and whether
    one EMA teacher serves both roles (`teachers`: single | dual)."""

    target: str = "tokens"
    pseudo_labels: str = "both"
    teachers: str = "dual"

    def __post_init__(self) -> None:
        for key, value, allowed in (("method.target", self.target, TARGETS),
                                    ("method.pseudo_labels", self.pseudo_labels, PSEUDO_LABELS),
                                    ("method.teachers", self.teachers, TEACHER_MODES)):
            if value not in allowed:
                raise ValueError(f"{key}={value!r}: allowed values are {'|'.join(allowed)}")
        if self.target == "none" and self.pseudo_labels == "none":
            raise ValueError("method.pseudo_labels='none': with method.target=none there is "
                             "nothing to learn; set method.target or method.pseudo_labels")

    @classmethod
    def of(cls, cfg) -> "Variant":
        """The variant of a PretrainConfig (its method.* switches)."""
        m = cfg.method
        return cls(m.target, m.pseudo_labels, m.teachers)

    @property
    def uses_pseudo_labels(self) -> bool:
        return self.pseudo_labels != "none"

    @property
    def pl_cls(self) -> bool:
        """The class token predicts pseudo labels."""
        return self.pseudo_labels in ("cls", "both")

    @property
    def pl_patch(self) -> bool:
        """The masked data tokens predict pseudo labels."""
        return self.pseudo_labels in ("patch", "both")

    @property
    def teacher_roles(self) -> dict[str, str]:
        """Which EMA teachers exist and which role each serves: {teacher name: schedule name}.

        In dual mode the labelling teacher exists when pseudo labels are on and the
        reconstruction teacher when tokens are reconstructed. In single mode one teacher serves
        both roles; it is named after, and follows the schedule of, the labelling teacher when
        pseudo labels are on, else the reconstruction teacher's."""
        need_l = self.uses_pseudo_labels
        need_r = self.target == "tokens"
        if self.teachers == "single" and need_l and need_r:
            return {"labelling": "labelling"}
        roles = {}
        if need_l:
            roles["labelling"] = "labelling"
        if need_r:
            roles["reconstruction"] = "reconstruction"
        return roles

    @property
    def rec_teacher(self) -> str | None:
        """Name of the teacher that supplies token targets (None unless target=tokens)."""
        if self.target != "tokens":
            return None
        return "reconstruction" if "reconstruction" in self.teacher_roles else "labelling"

    @property
    def name(self) -> str:
        """The variant grid's name (mae, token, single, dual, plonly), or a description of the
        switches (e.g. `pixels+pl_cls+dual`) for a point off the grid."""
        t, p, te = self.target, self.pseudo_labels, self.teachers
        if t == "pixels" and p == "none":
            return "mae"
        if t == "tokens" and p == "none":
            return "token"
        if t == "tokens" and p == "both":
            return te
        if t == "none" and p == "both":
            return "plonly"
        return f"{t}+pl_{p}+{te}"


def variant_name(cfg) -> str:
    """Variant.name of a PretrainConfig."""
    return Variant.of(cfg).name


def unread_keys(cfg, keys: list[str]) -> list[str]:
    """Those of `keys` (dotted) that cfg's variant never reads, each with the reason: e.g.
    teachers.reconstruction.* when one teacher serves both roles."""
    return [f"{key} is not read: {why}" for key, why in unread_reasons(cfg, keys).items()]


def unread_reasons(cfg, keys: list[str]) -> dict[str, str]:
    """{key: why} for those of `keys` (dotted) that cfg's variant never reads."""
    v = Variant.of(cfg)
    roles, target, p = v.teacher_roles, v.target, v.pseudo_labels
    rules = [
        ("teachers.labelling.", "labelling" not in roles,
         f"there is no labelling teacher (teachers: {', '.join(roles) or 'none'})"),
        ("teachers.reconstruction.", "reconstruction" not in roles,
         "there is no reconstruction teacher" + (" (method.teachers=single: the labelling teacher "
                                                 "serves both roles)" if roles else "")),
        ("pl.", not v.uses_pseudo_labels, "method.pseudo_labels=none"),
        ("pl.center_momentum", cfg.pl.assignment != "centering", "pl.assignment=sinkhorn"),
        ("pl.sinkhorn_iters", cfg.pl.assignment != "sinkhorn", "pl.assignment=centering"),
        ("pl.patch_teacher_temp", not v.pl_patch, f"method.pseudo_labels={p}"),
        ("rec.norm_pix_loss", target != "pixels", f"method.target={target}"),
        ("rec.", target != "tokens" and target != "pixels", f"method.target={target}"),
        ("rec.loss", target == "pixels", "method.target=pixels"),
        ("rec.target_", target == "pixels", "method.target=pixels"),
        ("loss.w_rec", target == "none", "method.target=none"),
        ("loss.w_cls", not v.pl_cls, f"method.pseudo_labels={p}"),
        ("loss.w_patch", not v.pl_patch, f"method.pseudo_labels={p}"),
        ("mask.block_size", cfg.mask.strategy != "block", "mask.strategy=random"),
    ]
    out = {}
    for key in keys:
        why = next((w for prefix, unread, w in rules if unread and key.startswith(prefix)), None)
        if why:
            out[key] = why
    return out
