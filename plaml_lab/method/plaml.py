"""PLAML: the student, its EMA teachers and the losses combined into one module.

One call = one optimisation step's forward: mask each view, run the student, run the teachers
on the full views (no grad), turn the labelling teacher's head scores into pseudo labels and
the reconstruction teacher's tokens into targets, and return the named loss parts.

Every knob is a constructor argument (defaults: PretrainConfig's, tests/test_method.py checks);
`PLAML.from_config` maps a PretrainConfig onto them. What the variant switches on or off is
decided here, at construction; `forward` reads no config.
"""

from __future__ import annotations

import torch
from torch import nn

from . import losses
from .masking import random_masking
from .monitor import feature_stats, target_stats
from .rules import Variant
from .schedules import final_teacher_temp
from .student import Student
from .teachers import Teacher
from .vit import set_attention

LOSS_KEYS = ("loss", "loss_rec", "loss_cls", "loss_patch")
# forward(monitor=True)'s collapse statistics (plaml_lab.method.monitor), logged in metrics.jsonl
MONITOR_KEYS = ("pl_entropy_cls", "pl_used_cls", "pl_entropy_patch", "pl_used_patch", "cls_std",
                "cls_erank")


def _gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x (B, L, D), ids (B, M) -> (B, M, D)."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class PLAML(nn.Module):
    """Student + labelling teacher + reconstruction teacher (or one teacher for both roles).

    Which teachers exist follows the variant (rules.Variant.teacher_roles): the labelling
    teacher (encoder + heads) when pseudo labels are on; the reconstruction teacher (encoder
    only) when tokens are reconstructed; in single mode one teacher serves both roles.

    Arguments, by the config section they come from (docs/method.md; `plaml-lab config` gives
    each one's help):
    - the variant (method.*): target pixels | tokens | none; pseudo_labels none | cls | patch |
      both; teachers single | dual;
    - the encoder and decoder (model.*): img_size ... decoder_num_heads, drop_path, attn_impl;
    - masking (mask.*): mask_ratio, mask_strategy random | block, mask_block_size;
    - pseudo labels (pl.*): num_prototypes, shared_head, prototype_init, head_hidden_dim,
      head_bottleneck_dim, head_layers, assignment centering | sinkhorn, student_temp,
      teacher_temp and patch_teacher_temp (after any warm-up: what `pseudo_labels` uses; 0 =
      teacher_temp), center_momentum, sinkhorn_iters;
    - reconstruction (rec.*): rec_loss mse | smooth_l1 | cosine, target_layers, target_norm
      layer | instance | none, loss_scale mean | sqrt_dim, norm_pix_loss;
    - loss weights (loss.*): w_rec, w_cls, w_patch.
    The teachers' momenta and the step's temperatures are not arguments: they change during
    training and are passed at call time (update_teachers, forward)."""

    def __init__(self, *, target: str = "tokens", pseudo_labels: str = "both",
                 teachers: str = "dual",
                 img_size: int = 32, patch_size: int = 4, in_chans: int = 3,
                 embed_dim: int = 192, depth: int = 6, num_heads: int = 3,
                 mlp_ratio: float = 4.0, decoder_embed_dim: int = 128, decoder_depth: int = 2,
                 decoder_num_heads: int = 4, drop_path: float = 0.0, attn_impl: str = "auto",
                 mask_ratio: float = 0.75, mask_strategy: str = "random",
                 mask_block_size: int = 2,
                 num_prototypes: int = 256, shared_head: bool = True,
                 prototype_init: str = "dino", head_hidden_dim: int = 512,
                 head_bottleneck_dim: int = 128, head_layers: int = 3,
                 assignment: str = "centering", student_temp: float = 0.1,
                 teacher_temp: float = 0.04, patch_teacher_temp: float = 0.0,
                 center_momentum: float = 0.9, sinkhorn_iters: int = 3,
                 rec_loss: str = "mse", target_layers: int = 1, target_norm: str = "instance",
                 loss_scale: str = "sqrt_dim", norm_pix_loss: bool = True,
                 w_rec: float = 1.0, w_cls: float = 1.0, w_patch: float = 1.0):
        super().__init__()
        if assignment not in ("centering", "sinkhorn"):
            raise ValueError(f"pl.assignment={assignment!r}: allowed values are centering|sinkhorn")
        variant = Variant(target, pseudo_labels, teachers)
        self.variant = variant
        self.target, self.pl_cls, self.pl_patch = target, variant.pl_cls, variant.pl_patch
        self.rec_teacher_name = variant.rec_teacher
        self.mask_ratio = mask_ratio  # the default of forward(mask_ratio=...)
        self.mask_strategy, self.mask_block_size = mask_strategy, mask_block_size
        self.sinkhorn = assignment == "sinkhorn"
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.sinkhorn_iters = sinkhorn_iters
        self.final_temps = {which: final_teacher_temp(teacher_temp, patch_teacher_temp, which)
                            for which in ("cls", "patch")}
        self.rec_loss, self.loss_scale, self.norm_pix_loss = rec_loss, loss_scale, norm_pix_loss
        self.target_layers, self.target_norm = target_layers, target_norm
        self.weights = (w_rec, w_cls, w_patch)
        self.student = Student(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
            depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, drop_path=drop_path,
            attn_impl=attn_impl, decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth, decoder_num_heads=decoder_num_heads, target=target,
            pl_cls=variant.pl_cls, pl_patch=variant.pl_patch, shared_head=shared_head,
            head=dict(num_prototypes=num_prototypes, hidden_dim=head_hidden_dim,
                      bottleneck_dim=head_bottleneck_dim, num_layers=head_layers,
                      prototype_init=prototype_init))
        self.teachers = nn.ModuleDict({
            name: Teacher(self.student, with_heads=(name == "labelling"))
            for name in variant.teacher_roles})
        # Centers of the teacher's cls and patch scores (DINO centering); kept in checkpoints.
        self.register_buffer("center_cls", torch.zeros(1, num_prototypes))
        self.register_buffer("center_patch", torch.zeros(1, num_prototypes))

    @classmethod
    def from_config(cls, cfg) -> "PLAML":
        """The model a PretrainConfig describes (model.*, mask.*, method.*, pl.*, rec.*,
        loss.*): see config_kwargs."""
        return cls(**config_kwargs(cfg))

    # -- teachers -------------------------------------------------------------------------------
    @property
    def labelling_teacher(self) -> Teacher | None:
        return self.teachers["labelling"] if "labelling" in self.teachers else None

    @property
    def reconstruction_teacher(self) -> Teacher | None:
        name = self.rec_teacher_name
        return self.teachers[name] if name else None

    def set_attention(self, device: torch.device | str, precision: str) -> None:
        """Pick every attention block's kernel (model.attn_impl) for steps on `device` under
        `precision` (fp32 | bf16 | fp16, resolved: see vit.fused_attention)."""
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
        if self.sinkhorn:
            flat = scores.reshape(-1, scores.shape[-1])
            return losses.sinkhorn_knopp(flat, temp, self.sinkhorn_iters).reshape(scores.shape)
        return losses.centering_targets(scores, getattr(self, f"center_{which}"), temp)

    @torch.no_grad()
    def pseudo_labels(self, scores: torch.Tensor, which: str = "cls") -> torch.Tensor:
        """Labelling-teacher head scores (N, K) -> hard pseudo labels (N,) int64: the argmax of
        the target distribution training forms from them (at the final teacher_temp; with
        Sinkhorn, balanced over these N). The one definition behind `plaml-lab eval`'s
        clusters probe, the cluster explorer and the demo's figure."""
        return self.target_distribution(scores.float(), which, self.final_temp(which)).argmax(-1)

    def final_temp(self, which: str = "cls") -> float:
        """The teacher temperature of `which` ('cls' | 'patch') after any warm-up."""
        return self.final_temps[which]

    def _pseudo_label_targets(self, scores: torch.Tensor, which: str, temp: float) -> torch.Tensor:
        """target_distribution(), then (in training, with centering) the center moves towards
        this batch's mean score."""
        targets = self.target_distribution(scores, which, temp)
        if self.training and not self.sinkhorn:
            center = getattr(self, f"center_{which}")
            center.copy_(losses.center_update(center, losses.batch_mean(scores),
                                              self.center_momentum))
        return targets

    @torch.no_grad()
    def teacher_targets(self, x: torch.Tensor, ids_masked: torch.Tensor, teacher_temp: float,
                        patch_teacher_temp: float | None = None) -> dict[str, torch.Tensor]:
        """Full views x (VB, C, H, W), hidden positions ids_masked (VB, M) ->
        rec (VB, M, D) token targets; cls (VB, K) and patch (VB, M, K) pseudo-label targets,
        plus the raw teacher scores (for dashboards and cluster metrics)."""
        out: dict[str, torch.Tensor] = {}
        rec_name = self.rec_teacher_name
        for name, teacher in self.teachers.items():
            k = self.target_layers if name == rec_name else 0
            tokens, layers = teacher.encoder.forward_features(x, return_layers=k)
            if name == rec_name:
                data_layers = [layer[:, 1:] for layer in layers]
                out["rec"] = _gather_tokens(losses.token_targets(data_layers, self.target_norm),
                                            ids_masked)
            if name == "labelling":
                heads = teacher.heads
                if self.pl_cls:
                    out["cls_scores"] = heads["cls"](tokens[:, 0]).float()
                    out["cls"] = self._pseudo_label_targets(out["cls_scores"], "cls", teacher_temp)
                if self.pl_patch:
                    masked = _gather_tokens(tokens[:, 1:], ids_masked)
                    out["patch_scores"] = heads["patch"](masked).float()
                    out["patch"] = self._pseudo_label_targets(
                        out["patch_scores"], "patch",
                        teacher_temp if patch_teacher_temp is None else patch_teacher_temp)
        return out

    @torch.no_grad()
    def collapse_stats(self, targets: dict[str, torch.Tensor], cls_features: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
        """The step's collapse statistics (monitor.py): of the pseudo-label targets
        training formed, and of the student's class-token features (VB, D)."""
        out = {}
        for which in ("cls", "patch"):
            if which in targets:
                out[f"pl_entropy_{which}"], out[f"pl_used_{which}"] = target_stats(
                    targets[which])
        out["cls_std"], out["cls_erank"] = feature_stats(cls_features)
        return out

    # -- the step -------------------------------------------------------------------------------
    def forward(self, views: list[torch.Tensor], teacher_temp: float = 0.04, *,
                patch_teacher_temp: float | None = None, mask_ratio: float | None = None,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                return_details: bool = False, monitor: bool = False
                ) -> dict[str, torch.Tensor]:
        """views: V augmented, normalised images, each (B, C, H, W); teacher_temp and
        patch_teacher_temp (None = teacher_temp): this step's teacher temperatures; mask_ratio:
        the fraction of data tokens hidden (default: the model's mask_ratio). monitor: also
        return the collapse statistics of monitor.py (0-dim tensors: pl_entropy_*, pl_used_*,
        cls_std, cls_erank).

        Returns loss, loss_rec, loss_cls, loss_patch (scalar tensors; 0 for parts that are off),
        and with return_details also mask (VB, L), ids_masked (VB, M), the student's predicted
        tokens / pixels, the teachers' targets and scores."""
        num_views = len(views)
        x = torch.cat(views) if num_views > 1 else views[0]
        n = x.shape[0]
        s = self.student
        ids_keep, mask, ids_restore, ids_masked = random_masking(
            n, s.num_patches, self.mask_ratio if mask_ratio is None else mask_ratio,
            strategy=self.mask_strategy,
            block_size=self.mask_block_size, device=x.device, generator=generator, noise=noise)

        latent = s.forward_encoder(x, ids_keep)
        zero = latent.new_zeros((), dtype=torch.float32)
        out = {"loss_rec": zero, "loss_cls": zero, "loss_patch": zero}
        details: dict[str, torch.Tensor] = {}

        decoded = s.forward_decoder(latent, ids_restore) if s.has_decoder else None
        p_tok = None
        if decoded is not None and s.token_pred is not None:
            p_tok = s.token_pred(_gather_tokens(decoded, ids_masked))  # (VB, M, D)

        targets = (self.teacher_targets(x, ids_masked, teacher_temp, patch_teacher_temp)
                   if self.teachers else {})

        if self.target == "pixels":
            pred = s.decoder_pred(decoded)
            out["loss_rec"] = losses.pixel_loss(pred.float(), x.float(), mask, s.patch_size,
                                                self.norm_pix_loss)
            details["pred_pixels"] = pred
        elif self.target == "tokens":
            out["loss_rec"] = losses.token_loss(p_tok, targets["rec"], self.rec_loss,
                                                self.loss_scale)

        st = self.student_temp
        if self.pl_cls:
            s_cls = s.heads["cls"](latent[:, 0]).float()
            k = s_cls.shape[-1]
            out["loss_cls"] = losses.cross_view_loss(
                targets["cls"].reshape(num_views, -1, k), s_cls.reshape(num_views, -1, k), st)
            details["student_cls_scores"] = s_cls
        if self.pl_patch:
            s_patch = s.heads["patch"](p_tok).float()
            out["loss_patch"] = losses.pl_cross_entropy(targets["patch"], s_patch, st).mean()
            details["student_patch_scores"] = s_patch

        if monitor:
            out.update(self.collapse_stats(targets, latent[:, 0]))
        w_rec, w_cls, w_patch = self.weights
        out["loss"] = w_rec * out["loss_rec"] + w_cls * out["loss_cls"] + w_patch * out["loss_patch"]
        if return_details:
            details.update(mask=mask, ids_keep=ids_keep, ids_masked=ids_masked,
                           ids_restore=ids_restore, latent=latent)
            if p_tok is not None:
                details["pred_tokens"] = p_tok
            for key, val in targets.items():
                details[f"teacher_{key}"] = val
            out.update(details)
        return out


def config_kwargs(cfg) -> dict:
    """PLAML's arguments from a PretrainConfig (or any object of its shape; no config import):
    model.*, mask.*, method.*, pl.*, rec.* and loss.*. Keys the variant never reads are passed
    all the same: PLAML ignores them."""
    m, mk, me, pl, rec, w = cfg.model, cfg.mask, cfg.method, cfg.pl, cfg.rec, cfg.loss
    return dict(
        target=me.target, pseudo_labels=me.pseudo_labels, teachers=me.teachers,
        img_size=m.img_size, patch_size=m.patch_size, in_chans=m.in_chans,
        embed_dim=m.embed_dim, depth=m.depth, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio,
        decoder_embed_dim=m.decoder_embed_dim, decoder_depth=m.decoder_depth,
        decoder_num_heads=m.decoder_num_heads, drop_path=m.drop_path, attn_impl=m.attn_impl,
        mask_ratio=mk.ratio, mask_strategy=mk.strategy, mask_block_size=mk.block_size,
        num_prototypes=pl.num_prototypes, shared_head=pl.shared_head,
        prototype_init=pl.prototype_init, head_hidden_dim=pl.head_hidden_dim,
        head_bottleneck_dim=pl.head_bottleneck_dim, head_layers=pl.head_layers,
        assignment=pl.assignment, student_temp=pl.student_temp, teacher_temp=pl.teacher_temp,
        patch_teacher_temp=pl.patch_teacher_temp, center_momentum=pl.center_momentum,
        sinkhorn_iters=pl.sinkhorn_iters,
        rec_loss=rec.loss, target_layers=rec.target_layers, target_norm=rec.target_norm,
        loss_scale=rec.loss_scale, norm_pix_loss=rec.norm_pix_loss,
        w_rec=w.w_rec, w_cls=w.w_cls, w_patch=w.w_patch)
