"""PLAML: the student, its EMA teachers and the losses combined into one module.

One call = one optimisation step's forward: mask each view, run the student, run the teachers
on the full views (no grad), turn the labelling teacher's head scores into pseudo labels and
the reconstruction teacher's tokens into targets, and return the named loss parts.
"""

from __future__ import annotations

import torch
from torch import nn

from plaml_lab import collapse, losses
from plaml_lab.schedules import final_teacher_temp
from plaml_lab.config import PretrainConfig
from plaml_lab.model.mae import Student
from plaml_lab.model.masking import random_masking
from plaml_lab.model.teachers import Teacher
from plaml_lab.model.vit import set_attention

LOSS_KEYS = ("loss", "loss_rec", "loss_cls", "loss_patch")
# forward(monitor=True)'s collapse statistics (plaml_lab.collapse), logged in metrics.jsonl
MONITOR_KEYS = ("pl_entropy_cls", "pl_used_cls", "pl_entropy_patch", "pl_used_patch", "cls_std",
                "cls_erank")


def _gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x (B, L, D), ids (B, M) -> (B, M, D)."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class PLAML(nn.Module):
    """Student + labelling teacher + reconstruction teacher (or one teacher for both roles).

    Which teachers exist follows `cfg.teacher_roles`: the labelling teacher (encoder + heads)
    when pseudo labels are on; the reconstruction teacher (encoder only) when tokens are
    reconstructed; in single mode one teacher serves both roles."""

    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        self.cfg = cfg
        self.mask_ratio = cfg.mask.ratio  # the default of forward(mask_ratio=...)
        self.student = Student.from_config(cfg)
        self.teachers = nn.ModuleDict({
            name: Teacher(self.student, with_heads=(name == "labelling"))
            for name in cfg.teacher_roles})
        k = cfg.pl.num_prototypes
        # Centers of the teacher's cls and patch scores (DINO centering); kept in checkpoints.
        self.register_buffer("center_cls", torch.zeros(1, k))
        self.register_buffer("center_patch", torch.zeros(1, k))

    # -- teachers -------------------------------------------------------------------------------
    @property
    def labelling_teacher(self) -> Teacher | None:
        return self.teachers["labelling"] if "labelling" in self.teachers else None

    @property
    def reconstruction_teacher(self) -> Teacher | None:
        name = self.cfg.rec_teacher
        return self.teachers[name] if name else None

    def set_attention(self, device: torch.device | str, precision: str) -> None:
        """Pick every attention block's kernel (model.attn_impl) for steps on `device` under
        run.precision `precision` (hardware.resolve_precision's name, or 'auto')."""
        self.student.set_attention(device, precision)
        for teacher in self.teachers.values():
            set_attention(teacher.encoder.blocks, self.student.attn_impl, device, precision)

    @torch.no_grad()
    def update_teachers(self, momenta: dict[str, float]) -> None:
        """EMA step of each teacher with its own momentum ({teacher name: m})."""
        for name, teacher in self.teachers.items():
            teacher.update(self.student, momenta[name])

    def train(self, mode: bool = True) -> "PLAML":
        super().train(mode)
        for t in self.teachers.values():
            t.train(False)
        return self

    # -- targets --------------------------------------------------------------------------------
    def target_distribution(self, scores: torch.Tensor, which: str, temp: float) -> torch.Tensor:
        """Teacher head scores (..., K) -> target distributions (..., K): centred with this
        model's `which` ('cls' | 'patch') center and sharpened by temp, or Sinkhorn-Knopp over
        all the leading positions at once. The center is left as it is."""
        pl = self.cfg.pl
        if pl.assignment == "sinkhorn":
            flat = scores.reshape(-1, scores.shape[-1])
            return losses.sinkhorn_knopp(flat, temp, pl.sinkhorn_iters).reshape(scores.shape)
        return losses.centering_targets(scores, getattr(self, f"center_{which}"), temp)

    @torch.no_grad()
    def pseudo_labels(self, scores: torch.Tensor, which: str = "cls") -> torch.Tensor:
        """Labelling-teacher head scores (N, K) -> hard pseudo labels (N,) int64: the argmax of
        the target distribution training forms from them (at the final pl.teacher_temp; with
        Sinkhorn, balanced over these N). The one definition behind `plaml-lab eval`'s
        clusters probe, the cluster explorer and the demo's figure."""
        return self.target_distribution(scores.float(), which, self.final_temp(which)).argmax(-1)

    def final_temp(self, which: str = "cls") -> float:
        """schedules.final_teacher_temp of this model's config."""
        return final_teacher_temp(self.cfg.pl, which)

    def _pseudo_label_targets(self, scores: torch.Tensor, which: str, temp: float) -> torch.Tensor:
        """target_distribution(), then (in training, with centering) the center moves towards
        this batch's mean score."""
        targets = self.target_distribution(scores, which, temp)
        if self.training and self.cfg.pl.assignment != "sinkhorn":
            center = getattr(self, f"center_{which}")
            center.copy_(losses.center_update(center, losses.batch_mean(scores),
                                              self.cfg.pl.center_momentum))
        return targets

    @torch.no_grad()
    def teacher_targets(self, x: torch.Tensor, ids_masked: torch.Tensor, teacher_temp: float,
                        patch_teacher_temp: float | None = None) -> dict[str, torch.Tensor]:
        """Full views x (VB, C, H, W), hidden positions ids_masked (VB, M) ->
        rec (VB, M, D) token targets; cls (VB, K) and patch (VB, M, K) pseudo-label targets,
        plus the raw teacher scores (for dashboards and cluster metrics)."""
        cfg = self.cfg
        out: dict[str, torch.Tensor] = {}
        rec_name = cfg.rec_teacher
        for name, teacher in self.teachers.items():
            k = cfg.rec.target_layers if name == rec_name else 0
            tokens, layers = teacher.encoder.forward_features(x, return_layers=k)
            if name == rec_name:
                data_layers = [layer[:, 1:] for layer in layers]
                out["rec"] = _gather_tokens(losses.token_targets(data_layers, cfg.rec.target_norm),
                                            ids_masked)
            if name == "labelling":
                heads = teacher.heads
                if cfg.pl_cls:
                    out["cls_scores"] = heads["cls"](tokens[:, 0]).float()
                    out["cls"] = self._pseudo_label_targets(out["cls_scores"], "cls", teacher_temp)
                if cfg.pl_patch:
                    masked = _gather_tokens(tokens[:, 1:], ids_masked)
                    out["patch_scores"] = heads["patch"](masked).float()
                    out["patch"] = self._pseudo_label_targets(
                        out["patch_scores"], "patch",
                        teacher_temp if patch_teacher_temp is None else patch_teacher_temp)
        return out

    @torch.no_grad()
    def collapse_stats(self, targets: dict[str, torch.Tensor], cls_features: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
        """The step's collapse statistics (plaml_lab.collapse): of the pseudo-label targets
        training formed, and of the student's class-token features (VB, D)."""
        out = {}
        for which in ("cls", "patch"):
            if which in targets:
                out[f"pl_entropy_{which}"], out[f"pl_used_{which}"] = collapse.target_stats(
                    targets[which])
        out["cls_std"], out["cls_erank"] = collapse.feature_stats(cls_features)
        return out

    # -- the step -------------------------------------------------------------------------------
    def forward(self, views: list[torch.Tensor], teacher_temp: float = 0.04, *,
                patch_teacher_temp: float | None = None, mask_ratio: float | None = None,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                return_details: bool = False, monitor: bool = False
                ) -> dict[str, torch.Tensor]:
        """views: V augmented, normalised images, each (B, C, H, W); teacher_temp and
        patch_teacher_temp (None = teacher_temp): this step's teacher temperatures; mask_ratio:
        the fraction of data tokens hidden (default mask.ratio of the config the model was built
        from). monitor: also return the collapse statistics of plaml_lab.collapse (0-dim
        tensors: pl_entropy_*, pl_used_*, cls_std, cls_erank).

        Returns loss, loss_rec, loss_cls, loss_patch (scalar tensors; 0 for parts that are off),
        and with return_details also mask (VB, L), ids_masked (VB, M), the student's predicted
        tokens / pixels, the teachers' targets and scores."""
        cfg = self.cfg
        num_views = len(views)
        x = torch.cat(views) if num_views > 1 else views[0]
        n = x.shape[0]
        s = self.student
        ids_keep, mask, ids_restore, ids_masked = random_masking(
            n, s.num_patches, self.mask_ratio if mask_ratio is None else mask_ratio,
            strategy=cfg.mask.strategy,
            block_size=cfg.mask.block_size, device=x.device, generator=generator, noise=noise)

        latent = s.forward_encoder(x, ids_keep)
        zero = latent.new_zeros((), dtype=torch.float32)
        out = {"loss_rec": zero, "loss_cls": zero, "loss_patch": zero}
        details: dict[str, torch.Tensor] = {}

        decoded = s.forward_decoder(latent, ids_restore) if s.has_decoder else None
        p_tok = None
        if decoded is not None and hasattr(s, "token_pred"):
            p_tok = s.token_pred(_gather_tokens(decoded, ids_masked))  # (VB, M, D)

        targets = (self.teacher_targets(x, ids_masked, teacher_temp, patch_teacher_temp)
                   if self.teachers else {})

        if cfg.method.target == "pixels":
            pred = s.decoder_pred(decoded)
            out["loss_rec"] = losses.pixel_loss(pred.float(), x.float(), mask, s.patch_size,
                                                cfg.rec.norm_pix_loss)
            details["pred_pixels"] = pred
        elif cfg.method.target == "tokens":
            out["loss_rec"] = losses.token_loss(p_tok, targets["rec"], cfg.rec.loss,
                                                cfg.rec.loss_scale)

        st = cfg.pl.student_temp
        if cfg.pl_cls:
            s_cls = s.heads["cls"](latent[:, 0]).float()
            k = s_cls.shape[-1]
            out["loss_cls"] = losses.cross_view_loss(
                targets["cls"].reshape(num_views, -1, k), s_cls.reshape(num_views, -1, k), st)
            details["student_cls_scores"] = s_cls
        if cfg.pl_patch:
            s_patch = s.heads["patch"](p_tok).float()
            out["loss_patch"] = losses.pl_cross_entropy(targets["patch"], s_patch, st).mean()
            details["student_patch_scores"] = s_patch

        if monitor:
            out.update(self.collapse_stats(targets, latent[:, 0]))
        w = cfg.loss
        out["loss"] = w.w_rec * out["loss_rec"] + w.w_cls * out["loss_cls"] + w.w_patch * out["loss_patch"]
        if return_details:
            details.update(mask=mask, ids_keep=ids_keep, ids_masked=ids_masked,
                           ids_restore=ids_restore, latent=latent)
            if p_tok is not None:
                details["pred_tokens"] = p_tok
            for key, val in targets.items():
                details[f"teacher_{key}"] = val
            out.update(details)
        return out
