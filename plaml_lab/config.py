"""One typed config tree for plaml_lab: dataclasses, YAML load/save, dotted overrides, validation.

Every knob of the method (METHOD.md) is a field here; a dotted path into the tree
(`teachers.labelling.momentum=0.99`) names it on the CLI, in a notebook's `overrides`
parameter and in a sweep grid alike. Validation errors name the key, the value and what is
allowed, in one line, so the CLI can print them as `error: ...`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from plaml_lab import typed_tree
from plaml_lab.errors import ConfigError
from plaml_lab.variants import unread_keys
# diff, load_yaml, save_yaml: part of the config API (`from plaml_lab.config import ...`)
from plaml_lab.typed_tree import (build, check_ranges, diff, knob, load_yaml,  # noqa: F401
                                  parse_override, save_yaml)

# --------------------------------------------------------------------------------------------
# The tree. A field's allowed values sit beside it: Literal[...] for choices, knob(default,
# lo, hi) for ranges (a bound may name a sibling field); validate() checks them all, plus the
# few rules that tie fields together (_relations).


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0  # seeds init, data order, augmentation and masking
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"  # auto: cuda, then mps, then cpu
    # auto: bf16 on GPUs that have it (else fp16 + GradScaler), bf16 on CPUs with native bf16
    # (AVX512-BF16/AMX), fp32 on every other CPU (plaml_lab.hardware)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    max_steps: int = knob(0, 0)  # stop after N optimiser steps; 0 = the full schedule
    ckpt_every: int = knob(200, 0)  # optimiser steps between checkpoints; 0 = only at the end
    keep_ckpts: int = knob(2, 0)  # periodic step_XXXXXXX.pt checkpoints kept besides last.pt
    log_every: int = knob(10, 1)  # optimiser steps between metrics.jsonl lines
    num_threads: int = knob(0, 0)  # torch CPU threads; 0 = torch's default
    compile: bool = False  # torch.compile the step (falls back with a warning if unavailable)
    deterministic: bool = False  # torch.use_deterministic_algorithms (bitwise resume on CPU)
    on_nonfinite: Literal["stop", "skip"] = "stop"  # what a NaN/inf loss does
    progress: bool = True  # tqdm progress bar
    eval_knn: bool = True  # kNN accuracy on the val split in summary.json (knn_split: val)
    tensorboard: bool = False  # also write RUN/tensorboard/ events (metrics.jsonl stays the truth)
    tensorboard_images: int = knob(32, 0)  # held-out images in the logged figures; 0 = none


@dataclass
class ShapesConfig:
    """Difficulty knobs of the embedded `shapes` dataset (see docs/data.md)."""

    num_classes: int = knob(10, 2, 12)
    size_min: float = knob(0.5, 0, 1, open_lo=True)  # object radius / half image width
    size_max: float = knob(0.9, "size_min", 1)
    min_contrast: float = knob(0.3, 0, 1)  # minimum fg/bg colour distance
    clutter: int = knob(1, 0, 16)  # distractor blobs/lines
    noise: float = knob(0.02, 0, 1)  # pixel noise std
    texture: float = knob(0.5, 0, 1)  # background gradient/texture amplitude
    rotation: bool = True
    jitter: float = knob(0.25, 0, 1)  # max centre offset, fraction of the free space
    # grey: colour cannot tell images apart; mono: neither can grey level (one level each for
    # background and object)
    palette: Literal["colour", "grey", "mono"] = "colour"


@dataclass
class AugConfig:
    crop_scale_min: float = knob(0.2, 0, 1, open_lo=True)  # RandomResizedCrop (MAE: 0.2-1)
    crop_scale_max: float = knob(1.0, "crop_scale_min", 1)
    flip: bool = True
    color_jitter: float = knob(0.4, 0, 1)  # strength; 0 = off. Colour as a nuisance for labels
    color_jitter_p: float = knob(0.8, 0, 1)
    grayscale_p: float = knob(0.2, 0, 1)
    # Colour as a nuisance the pseudo labels cannot use (see data.transforms.color_nuisance):
    channel_shuffle_p: float = knob(0.0, 0, 1)  # random RGB permutation per view
    invert_p: float = knob(0.0, 0, 1)  # colour negative per view
    # Grey level as a nuisance (data.transforms.tone_remap): a random piecewise-linear tone
    # curve per view with this probability; knots = its segments (1 = a random line)
    tone_remap_p: float = knob(0.0, 0, 1)
    tone_remap_knots: int = knob(4, 1, 64)
    shared_crop: bool = False  # one crop for all views: they differ in colour only


@dataclass
class DataConfig:
    dataset: Literal["shapes", "digits", "cifar10", "folder"] = "shapes"
    root: str = ""  # cifar10 / folder root
    download: bool = False  # cifar10: allow torchvision to download
    views: Literal[1, 2] = 2  # 2: cross-view class-token targets (DINO); 1: same-view only
    num_train: int = knob(20000, 1)  # shapes: generated training images
    num_val: int = knob(2000, 1)  # shapes: generated validation images (for choosing settings)
    num_test: int = knob(2000, 1)  # shapes: generated test images (for reporting)
    # digits / folder / cifar10: the share of each class held out as val (and, where the
    # dataset has no test split of its own, as test), carved from train with a fixed seed
    val_fraction: float = knob(0.2, 0, 1, open_lo=True, open_hi=True)
    test_fraction: float = knob(0.2, 0, 1, open_lo=True, open_hi=True)
    num_workers: int = knob(0, 0)  # DataLoader workers for file datasets
    on_bad_image: Literal["skip", "error"] = "skip"  # a corrupt image in a folder dataset
    seed_data: int = 0  # generation seed of the embedded dataset (fixed across runs)
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    aug: AugConfig = field(default_factory=AugConfig)


@dataclass
class ModelConfig:
    img_size: int = knob(32, 1)
    patch_size: int = knob(4, 1)
    in_chans: int = knob(3, 1)
    embed_dim: int = knob(192, 1)
    depth: int = knob(6, 1)
    num_heads: int = knob(3, 1)
    mlp_ratio: float = knob(4.0, 0, open_lo=True)
    decoder_embed_dim: int = knob(128, 1)
    decoder_depth: int = knob(2, 1)
    decoder_num_heads: int = knob(4, 1)
    drop_path: float = knob(0.0, 0, 1, open_hi=True)
    # auto: math on CPU in bf16/fp16, else SDPA (the resolved run.precision decides)
    attn_impl: Literal["auto", "sdpa", "math"] = "auto"
    # start the student (and so the teachers) from a timm ViT: FILE.safetensors (ours from
    # `plaml-lab export`, or anyone's of this shape) or TIMM_NAME@LOCAL_FILE; '' = random init
    init_from: str = ""


@dataclass
class MaskConfig:
    ratio: float = knob(0.75, 0, 1, open_lo=True, open_hi=True)  # fraction of data tokens hidden
    strategy: Literal["random", "block"] = "random"
    block_size: int = knob(2, 1)  # block strategy: blob scale in patches


@dataclass
class MethodConfig:
    target: Literal["pixels", "tokens", "none"] = "tokens"  # what the decoder reconstructs
    pseudo_labels: Literal["none", "cls", "patch", "both"] = "both"
    teachers: Literal["single", "dual"] = "dual"


@dataclass
class PseudoLabelConfig:
    num_prototypes: int = knob(256, 2)  # K
    shared_head: bool = True  # one head for cls and patch pseudo labels (iBOT's recipes)
    # dino: nn.Linear's default init, as DINO/iBOT create the prototype layer after apply(init)
    prototype_init: Literal["dino", "trunc_normal"] = "dino"
    head_hidden_dim: int = knob(512, 1)  # ViT-B: 2048
    head_bottleneck_dim: int = knob(128, 1)  # ViT-B: 256
    head_layers: int = knob(3, 1)
    assignment: Literal["centering", "sinkhorn"] = "centering"
    student_temp: float = knob(0.1, 0, open_lo=True)
    teacher_temp: float = knob(0.04, 0, open_lo=True)  # after any warm-up (DINO: 0.04, flat)
    patch_teacher_temp: float = knob(0.0, 0)  # patch targets (iBOT's own); 0 = pl.teacher_temp
    warmup_teacher_temp: float = knob(0.04, 0, open_lo=True)  # start of the optional warm-up
    warmup_teacher_temp_epochs: float = knob(0.0, 0)  # 0 = flat (no warm-up)
    center_momentum: float = knob(0.9, 0, 1)  # centering only
    sinkhorn_iters: int = knob(3, 1)  # sinkhorn only
    # The prototypes stay frozen for max(freeze_prototypes_epochs epochs, freeze_prototypes_frac
    # of the run's steps): DINO freezes its last layer 1 epoch of 100 (1%), so a share of the run
    # scales to short runs, where 1 epoch was 80% of the lab preset's 390 steps (docs/method.md)
    freeze_prototypes_epochs: float = knob(0.0, 0)
    freeze_prototypes_frac: float = knob(0.01, 0, 1)


@dataclass
class RecConfig:
    loss: Literal["mse", "smooth_l1", "cosine"] = "mse"  # token mode
    target_layers: int = knob(1, 1)  # average of the reconstruction teacher's last k (<= depth)
    # per layer, before averaging; instance = each channel over an image's tokens (data2vec 2.0)
    target_norm: Literal["layer", "instance", "none"] = "instance"
    loss_scale: Literal["mean", "sqrt_dim"] = "sqrt_dim"  # over D: mean, or sum / sqrt(D) (d2v)
    norm_pix_loss: bool = True  # pixel mode: per-patch normalised target (MAE)


@dataclass
class TeacherConfig:
    momentum: float = knob(0.996, 0, 1)
    momentum_end: float = knob(1.0, 0, 1)
    # > 0: the EMA window 1/(1-m) at the start (end) as a fraction of the run's steps, in place
    # of momentum (momentum_end), so short and long runs average the same share of training
    window: float = knob(0.0, 0, 1)
    window_end: float = knob(0.0, 0, 1)
    # the teacher's encoder starts from these weights instead of the student's (the forms of
    # model.init_from); with momentum = momentum_end = 1 it stays there: a frozen teacher,
    # e.g. a trained MAE as the reconstruction teacher (docs/method.md)
    init_from: str = ""


@dataclass
class TeachersConfig:
    labelling: TeacherConfig = field(default_factory=lambda: TeacherConfig(0.996, 1.0))
    reconstruction: TeacherConfig = field(default_factory=lambda: TeacherConfig(0.999, 0.9999))


@dataclass
class LossConfig:
    w_rec: float = knob(1.0, 0)
    w_cls: float = knob(1.0, 0)
    w_patch: float = knob(1.0, 0)


@dataclass
class OptimConfig:
    batch_size: int = knob(128, 1)  # per device, per accumulation step
    epochs: float = knob(10.0, 0, open_lo=True)
    blr: float = knob(1.5e-4, 0)  # lr = blr * global_batch / 256
    lr: float = knob(0.0, 0)  # absolute lr; overrides blr when > 0
    min_lr: float = knob(0.0, 0)
    warmup_epochs: float = knob(1.0, 0)
    weight_decay: float = knob(0.05, 0)
    beta1: float = knob(0.9, 0, 1, open_hi=True)
    beta2: float = knob(0.95, 0, 1, open_hi=True)
    clip_grad: float = knob(3.0, 0)  # max grad norm; 0 = off (DINO/iBOT: 3.0)
    clip_mode: Literal["per_param", "global"] = "per_param"  # DINO's per parameter, or one norm
    accum_steps: int = knob(1, 1)


# What `plaml-lab eval --probes` and the ablation runner accept (evaluate.py runs them).
PROBES = ("knn", "linear", "clusters", "seg", "box")


@dataclass
class EvalConfig:
    knn_k: int = knob(20, 1)
    knn_t: float = knob(0.07, 0, open_lo=True)
    max_train: int = knob(10000, 1)  # cap on the kNN memory bank / probe train set
    max_val: int = knob(2000, 1)
    batch_size: int = knob(256, 1)


@dataclass
class FinetuneConfig:
    """`plaml-lab finetune`: the MAE / BEiT fine-tuning recipe through timm's building blocks,
    scaled to CPU minutes (ViT-B in MAE: blr 5e-4, layer decay 0.65, drop path 0.1, mixup 0.8,
    cutmix 1.0, smoothing 0.1, 5 warm-up epochs of 100)."""

    epochs: float = knob(10.0, 0, open_lo=True)
    batch_size: int = knob(128, 1)  # even with mixing: mixup pairs each image with its mirror
    blr: float = knob(1.0e-3, 0, open_lo=True)  # lr = blr * batch_size / 256
    min_lr: float = knob(1.0e-6, 0)
    warmup_epochs: float = knob(1.0, 0)
    weight_decay: float = knob(0.05, 0)
    layer_decay: float = knob(0.75, 0, 1, open_lo=True)  # lr x decay ** (blocks above)
    drop_path: float = knob(0.1, 0, 1, open_hi=True)
    mixup: float = knob(0.8, 0)  # Beta(alpha, alpha) of mixup; 0 = off
    cutmix: float = knob(1.0, 0)  # Beta(alpha, alpha) of cutmix; 0 = off
    mixup_prob: float = knob(1.0, 0, 1)  # probability that a batch is mixed at all
    smoothing: float = knob(0.1, 0, 1, open_hi=True)  # label smoothing
    crop_scale_min: float = knob(0.35, 0, 1, open_lo=True)  # RandomResizedCrop (min, 1); flips
    pool: Literal["avg", "token"] = "avg"  # mean of the data tokens (MAE) or the class token
    blocks: int = knob(-1, -1)  # fine-tune the last K blocks (+ norm + head); -1 all, 0 head
    fraction: float = knob(1.0, 0, 1, open_lo=True)  # of the labelled training images, per class
    seed: int = 0  # label subset, head init, augmentation, mixup
    log_every: int = knob(10, 1)
    ckpt_every: int = knob(100, 0)


@dataclass
class PretrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    pl: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    rec: RecConfig = field(default_factory=RecConfig)
    teachers: TeachersConfig = field(default_factory=TeachersConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    # -- derived facts about the method, used by the model, the trainer and the docs --------
    @property
    def uses_pseudo_labels(self) -> bool:
        return self.method.pseudo_labels != "none"

    @property
    def pl_cls(self) -> bool:
        return self.method.pseudo_labels in ("cls", "both")

    @property
    def pl_patch(self) -> bool:
        return self.method.pseudo_labels in ("patch", "both")

    @property
    def teacher_roles(self) -> dict[str, str]:
        """Which EMA teachers exist and which role each serves.

        Returns {teacher name: schedule name}. In dual mode the labelling teacher exists when
        pseudo labels are on and the reconstruction teacher when tokens are reconstructed.
        In single mode one teacher serves both roles; it is named after, and follows the
        schedule of, the labelling teacher when pseudo labels are on, else the reconstruction
        teacher's.
        """
        need_l = self.uses_pseudo_labels
        need_r = self.method.target == "tokens"
        if self.method.teachers == "single" and need_l and need_r:
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
        if self.method.target != "tokens":
            return None
        return "reconstruction" if "reconstruction" in self.teacher_roles else "labelling"


# --------------------------------------------------------------------------------------------
# YAML, plain dicts and overrides (typed_tree.py does the walking)


def to_dict(cfg: PretrainConfig) -> dict:
    """The tree as nested plain dicts (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict | None) -> PretrainConfig:
    """Build and validate a config from nested plain dicts (missing keys take defaults)."""
    cfg = build(PretrainConfig, data)
    validate(cfg)
    return cfg


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...] | None) -> dict:
    """Set dotted keys in a nested dict (a copy); unknown keys raise ConfigError."""
    return typed_tree.apply_overrides(PretrainConfig, data, overrides)


def repo_root(start: str | Path | None = None) -> Path:
    """The project folder (the nearest one at or above `start`, default cwd then this package,
    that holds pyproject.toml): `experiments/...` paths in grids and notebook parameters are
    relative to it."""
    starts = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).parent]
    for s in starts:
        for folder in [s.resolve(), *s.resolve().parents]:
            if (folder / "pyproject.toml").is_file():
                return folder
    return Path.cwd().resolve()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """YAML preset (optional) + dotted overrides -> validated PretrainConfig. An override the
    chosen variant never reads (e.g. teachers.reconstruction.momentum with method.teachers=single)
    is reported as a ConfigWarning: it would change nothing."""
    data = load_yaml(path) if path else {}
    cfg = from_dict(apply_overrides(data, overrides))
    for msg in unread_keys(cfg, [parse_override(o)[0] for o in overrides or []]):
        warnings.warn(msg, ConfigWarning, stacklevel=2)
    return cfg


# --------------------------------------------------------------------------------------------
# Validation


def _relations(cfg: PretrainConfig) -> None:
    """The rules that tie fields of different sections together."""
    d, m, mk, me = cfg.data, cfg.model, cfg.mask, cfg.method
    if d.val_fraction + d.test_fraction >= 1:
        raise ConfigError(f"data.test_fraction={d.test_fraction}: data.val_fraction + "
                          "data.test_fraction must be below 1 (the rest trains)")
    if d.dataset == "folder" and not d.root:
        raise ConfigError("data.root='': data.dataset=folder needs data.root (an image folder)")
    if m.img_size % m.patch_size:
        raise ConfigError(f"model.img_size={m.img_size}: must be divisible by model.patch_size="
                          f"{m.patch_size}")
    if m.embed_dim % m.num_heads:
        raise ConfigError(f"model.num_heads={m.num_heads}: must divide model.embed_dim={m.embed_dim}")
    if m.decoder_embed_dim % m.decoder_num_heads:
        raise ConfigError(f"model.decoder_num_heads={m.decoder_num_heads}: must divide "
                          f"model.decoder_embed_dim={m.decoder_embed_dim}")
    if m.embed_dim % 4 or m.decoder_embed_dim % 4:
        raise ConfigError(f"model.embed_dim={m.embed_dim}/decoder_embed_dim={m.decoder_embed_dim}: "
                          "2-D sin-cos position embeddings need multiples of 4")
    num_patches = (m.img_size // m.patch_size) ** 2
    if int(num_patches * (1 - mk.ratio)) < 1:
        raise ConfigError(f"mask.ratio={mk.ratio}: leaves no visible patch out of {num_patches}")
    if int(num_patches * (1 - mk.ratio)) >= num_patches:
        raise ConfigError(f"mask.ratio={mk.ratio}: masks no patch out of {num_patches}")
    if me.target == "none" and me.pseudo_labels == "none":
        raise ConfigError("method.pseudo_labels='none': with method.target=none there is nothing to "
                          "learn; set method.target or method.pseudo_labels")
    if cfg.rec.target_layers > m.depth:
        raise ConfigError(f"rec.target_layers={cfg.rec.target_layers}: must be in [1, model.depth="
                          f"{m.depth}]")
    if cfg.optim.blr == 0 and cfg.optim.lr == 0:
        raise ConfigError("optim.lr=0: set optim.lr or optim.blr to a positive learning rate")
    f = cfg.finetune
    if f.blocks > m.depth:
        raise ConfigError(f"finetune.blocks={f.blocks}: must be in [-1, model.depth={m.depth}]")
    if (f.mixup > 0 or f.cutmix > 0) and f.mixup_prob > 0 and f.batch_size % 2:
        raise ConfigError(f"finetune.batch_size={f.batch_size}: mixup / cutmix need an even "
                          "batch (or finetune.mixup=0 finetune.cutmix=0)")


def validate(cfg: PretrainConfig) -> None:
    """Raise ConfigError (naming the key, value and what is allowed) for the first bad value.
    Choices (Literal fields) are checked as values are read; ranges and relations here."""
    check_ranges(cfg)
    _relations(cfg)


# --------------------------------------------------------------------------------------------
# Knobs a variant never reads


class ConfigWarning(UserWarning):
    """A key was set that the chosen variant never reads (it changes nothing)."""


