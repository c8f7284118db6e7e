"""One typed config tree for plaml_lab: dataclasses, YAML load/save, dotted overrides, validation.

Every knob of the method (docs/method.md) is a field here; a dotted path into the tree
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
from plaml_lab.method.rules import Variant, unread_keys
from plaml_lab.paths import find_file, repo_root  # noqa: F401  (repo_root: callers import it here)
# diff, load_yaml, save_yaml: part of the config API (`from plaml_lab.config import ...`)
from plaml_lab.typed_tree import (build, check_ranges, diff, knob, load_yaml,  # noqa: F401
                                  opt, parse_override, save_yaml)

# --------------------------------------------------------------------------------------------
# The tree. A field's allowed values sit beside it: Literal[...] for choices, knob(default,
# lo, hi) for ranges (a bound may name a sibling field); validate() checks them all, plus the
# few rules that tie fields together (_relations).


@dataclass
class RunConfig:
    name: str = opt("run", "a plain name (no path): the run folder is experiments/runs/<name>")
    seed: int = opt(0, "seeds init, data order, augmentation and masking")
    device: Literal["auto", "cpu", "cuda", "mps"] = opt("auto", "auto: cuda, then mps, then cpu")
    # auto: bf16 on GPUs that have it (else fp16 + GradScaler), bf16 on CPUs with native bf16
    # (AVX512-BF16/AMX), fp32 on every other CPU (plaml_lab.hardware)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = opt(
        "auto", "autocast; auto: bf16 where native, else fp16 (GPU) or fp32 (CPU)")
    max_steps: int = knob(0, 0, help="stop after N optimiser steps; 0 = the full schedule")
    ckpt_every: int = knob(200, 0, help="optimiser steps between checkpoints; 0 = only at the end")
    keep_ckpts: int = knob(2, 0, help="periodic step_XXXXXXX.pt checkpoints kept besides last.pt")
    log_every: int = knob(10, 1, help="optimiser steps between metrics.jsonl lines")
    num_threads: int = knob(0, 0, help="torch CPU threads; 0 = torch's default")
    compile: bool = opt(False, "torch.compile the step (falls back to eager with a warning)")
    deterministic: bool = opt(False, "torch.use_deterministic_algorithms (bitwise resume on CPU)")
    on_nonfinite: Literal["stop", "skip"] = opt("stop", "a NaN/inf loss: stop (exit 3) or skip")
    progress: bool = opt(True, "tqdm progress bar")
    eval_knn: bool = opt(True, "kNN accuracy on the val split in summary.json (knn_split: val)")
    # what `plaml-lab search` prunes on: knn_top1 in that metrics.jsonl row
    knn_every: int = knob(0, 0, help="steps between kNN probes while training; 0 = only at the end")
    tensorboard: bool = opt(False, "also write RUN/tensorboard/ (metrics.jsonl stays the truth)")
    tensorboard_images: int = knob(32, 0, help="held-out images in TensorBoard figures; 0 = none")


@dataclass
class ShapesConfig:
    """Difficulty knobs of the embedded `shapes` dataset (see docs/data.md)."""

    num_classes: int = knob(10, 2, 12, help="shape classes drawn (of 12)")
    size_min: float = knob(0.5, 0, 1, open_lo=True, help="object radius / half image width, min")
    size_max: float = knob(0.9, "size_min", 1, help="object radius / half image width, max")
    min_contrast: float = knob(0.3, 0, 1, help="minimum object/background colour distance")
    clutter: int = knob(1, 0, 16, help="distractor blobs and lines per image")
    noise: float = knob(0.02, 0, 1, help="pixel noise std")
    texture: float = knob(0.5, 0, 1, help="background gradient/texture amplitude")
    rotation: bool = opt(True, "rotate each object by a random angle")
    jitter: float = knob(0.25, 0, 1, help="max centre offset, fraction of the free space")
    # grey: colour cannot tell images apart; mono: neither can grey level
    palette: Literal["colour", "grey", "mono"] = opt(
        "colour", "random colours, random grey levels, or one grey level each (mono)")


@dataclass
class AugConfig:
    crop_scale_min: float = knob(0.2, 0, 1, open_lo=True, help="RandomResizedCrop min (MAE: 0.2)")
    crop_scale_max: float = knob(1.0, "crop_scale_min", 1, help="RandomResizedCrop max")
    flip: bool = opt(True, "random horizontal flip")
    color_jitter: float = knob(0.4, 0, 1, help="colour jitter strength; 0 = off")
    color_jitter_p: float = knob(0.8, 0, 1, help="probability of colour jitter per view")
    grayscale_p: float = knob(0.2, 0, 1, help="probability of greyscale per view")
    # Colour as a nuisance the pseudo labels cannot use (see data.transforms.color_nuisance):
    channel_shuffle_p: float = knob(0.0, 0, 1, help="random RGB permutation per view, probability")
    invert_p: float = knob(0.0, 0, 1, help="colour negative per view, probability")
    # Grey level as a nuisance (data.transforms.tone_remap)
    tone_remap_p: float = knob(0.0, 0, 1, help="random piecewise-linear tone curve, probability")
    tone_remap_knots: int = knob(4, 1, 64, help="segments of the tone curve (1 = a random line)")
    shared_crop: bool = opt(False, "one crop for all views: they differ in colour only")


@dataclass
class DataConfig:
    dataset: Literal["shapes", "digits", "cifar10", "folder"] = opt(
        "shapes", "shapes (embedded), digits, cifar10, or folder (ImageNet layout)")
    root: str = opt("", "cifar10 / folder root (folder: one sub-folder of images per class)")
    download: bool = opt(False, "cifar10: allow torchvision to download")
    views: Literal[1, 2] = opt(2, "2: cross-view class-token targets (DINO); 1: same-view only")
    num_train: int = knob(20000, 1, help="shapes: generated training images")
    num_val: int = knob(2000, 1, help="shapes: generated validation images (for choosing)")
    num_test: int = knob(2000, 1, help="shapes: generated test images (for reporting)")
    # digits / folder / cifar10: the share of each class held out as val (and, where the
    # dataset has no test split of its own, as test), carved from train with a fixed seed
    val_fraction: float = knob(0.2, 0, 1, open_lo=True, open_hi=True,
                               help="share of each class held out as val (fixed seed)")
    test_fraction: float = knob(0.2, 0, 1, open_lo=True, open_hi=True,
                                help="share held out as test where there is no test split")
    num_workers: int = knob(0, 0, help="DataLoader workers for file datasets")
    on_bad_image: Literal["skip", "error"] = opt("skip", "a corrupt image: skip (counted) or stop")
    seed_data: int = opt(0, "generation seed of the embedded dataset (fixed across runs)")
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    aug: AugConfig = field(default_factory=AugConfig)


@dataclass
class ModelConfig:
    img_size: int = knob(32, 1, help="input image side in pixels")
    patch_size: int = knob(4, 1, help="ViT patch side in pixels")
    in_chans: int = knob(3, 1, help="image channels")
    embed_dim: int = knob(192, 1, help="encoder width D (ViT-S: 384, ViT-B: 768)")
    depth: int = knob(6, 1, help="encoder blocks")
    num_heads: int = knob(3, 1, help="encoder attention heads")
    mlp_ratio: float = knob(4.0, 0, open_lo=True, help="MLP hidden width / embed_dim")
    decoder_embed_dim: int = knob(128, 1, help="MAE decoder width (ViT-B in MAE: 512)")
    decoder_depth: int = knob(2, 1, help="MAE decoder blocks (ViT-B in MAE: 8)")
    decoder_num_heads: int = knob(4, 1, help="MAE decoder attention heads")
    drop_path: float = knob(0.0, 0, 1, open_hi=True, help="stochastic depth rate")
    attn_impl: Literal["auto", "sdpa", "math"] = opt(
        "auto", "auto: plain matmul attention on CPU in bf16/fp16, else SDPA")
    init_from: str = opt("", "start the student (and teachers) from FILE.safetensors or "
                         "TIMM_NAME@FILE; '' = random")


@dataclass
class MaskConfig:
    ratio: float = knob(0.75, 0, 1, open_lo=True, open_hi=True,
                        help="fraction of data tokens hidden from the student (MAE: 0.75)")
    strategy: Literal["random", "block"] = opt("random", "hide random tokens, or blobs of them")
    block_size: int = knob(2, 1, help="block strategy: blob scale in patches")


@dataclass
class MethodConfig:
    target: Literal["pixels", "tokens", "none"] = opt(
        "tokens", "what the decoder reconstructs: pixels (MAE), teacher tokens, or nothing")
    pseudo_labels: Literal["none", "cls", "patch", "both"] = opt(
        "both", "which tokens predict pseudo labels: class token, data tokens, both")
    teachers: Literal["single", "dual"] = opt(
        "dual", "dual: labelling + reconstruction teacher; single: one EMA teacher for both")


@dataclass
class PseudoLabelConfig:
    num_prototypes: int = knob(256, 2, help="K: the prototypes (clusters) of the pseudo labels")
    shared_head: bool = opt(True, "one head for class-token and patch pseudo labels (iBOT)")
    prototype_init: Literal["dino", "trunc_normal"] = opt(
        "dino", "prototype layer: nn.Linear's default (DINO/iBOT) or trunc_normal (std 0.02)")
    head_hidden_dim: int = knob(512, 1, help="head MLP hidden width (ViT-B: 2048)")
    head_bottleneck_dim: int = knob(128, 1, help="head's L2-normalised bottleneck (ViT-B: 256)")
    head_layers: int = knob(3, 1, help="head MLP layers")
    assignment: Literal["centering", "sinkhorn"] = opt(
        "centering", "teacher outputs -> targets: centering + sharpening (DINO) or Sinkhorn-Knopp")
    student_temp: float = knob(0.1, 0, open_lo=True, help="student softmax temperature")
    teacher_temp: float = knob(0.04, 0, open_lo=True, help="teacher temperature after any warm-up")
    patch_teacher_temp: float = knob(0.0, 0, help="patch targets' (iBOT); 0 = pl.teacher_temp")
    warmup_teacher_temp: float = knob(0.04, 0, open_lo=True, help="teacher temperature at start")
    warmup_teacher_temp_epochs: float = knob(0.0, 0, help="temperature warm-up; 0 = flat")
    center_momentum: float = knob(0.9, 0, 1, help="centering: EMA momentum of the center")
    sinkhorn_iters: int = knob(3, 1, help="sinkhorn: Sinkhorn-Knopp iterations")
    # The prototypes stay frozen for max(freeze_prototypes_epochs epochs, freeze_prototypes_frac
    # of the run's steps): DINO freezes its last layer 1 epoch of 100 (1%), so a share of the run
    # scales to short runs, where 1 epoch was 80% of the lab preset's 390 steps (docs/method.md)
    freeze_prototypes_epochs: float = knob(0.0, 0, help="prototypes frozen >= this many epochs")
    freeze_prototypes_frac: float = knob(0.01, 0, 1, help="prototypes frozen >= this share of steps")


@dataclass
class RecConfig:
    loss: Literal["mse", "smooth_l1", "cosine"] = opt("mse", "token reconstruction loss")
    target_layers: int = knob(1, 1, help="average the reconstruction teacher's last k blocks")
    target_norm: Literal["layer", "instance", "none"] = opt(
        "instance", "token targets, per block before averaging (instance: data2vec 2.0)")
    loss_scale: Literal["mean", "sqrt_dim"] = opt(
        "sqrt_dim", "over the D channels: mean, or sum / sqrt(D) (data2vec 2.0)")
    norm_pix_loss: bool = opt(True, "pixel mode: per-patch normalised target (MAE)")


@dataclass
class TeacherConfig:
    momentum: float = knob(0.996, 0, 1, help="EMA momentum m at the start (cosine to the end)")
    momentum_end: float = knob(1.0, 0, 1, help="EMA momentum at the end of training")
    # > 0: in place of momentum (momentum_end), so short and long runs average the same share
    window: float = knob(0.0, 0, 1, help="> 0: EMA window 1/(1-m) at the start, share of steps")
    window_end: float = knob(0.0, 0, 1, help="> 0: EMA window at the end, share of steps")
    # with momentum = momentum_end = 1 a frozen teacher, e.g. a trained MAE (docs/method.md)
    init_from: str = opt("", "this teacher's encoder from a file (model.init_from's forms)")


@dataclass
class TeachersConfig:
    labelling: TeacherConfig = field(default_factory=lambda: TeacherConfig(0.996, 1.0))
    reconstruction: TeacherConfig = field(default_factory=lambda: TeacherConfig(0.999, 0.9999))


@dataclass
class LossConfig:
    w_rec: float = knob(1.0, 0, help="weight of the reconstruction loss")
    w_cls: float = knob(1.0, 0, help="weight of the class-token pseudo-label loss")
    w_patch: float = knob(1.0, 0, help="weight of the data-token pseudo-label loss")


@dataclass
class OptimConfig:
    batch_size: int = knob(128, 1, help="per device, per accumulation step")
    epochs: float = knob(10.0, 0, open_lo=True, help="length of the schedule")
    blr: float = knob(1.5e-4, 0, help="base learning rate: lr = blr * global_batch / 256")
    lr: float = knob(0.0, 0, help="absolute learning rate; overrides blr when > 0")
    min_lr: float = knob(0.0, 0, help="learning rate at the end of the cosine")
    warmup_epochs: float = knob(1.0, 0, help="linear learning-rate warm-up")
    weight_decay: float = knob(0.05, 0, help="AdamW weight decay")
    beta1: float = knob(0.9, 0, 1, open_hi=True, help="AdamW beta1")
    beta2: float = knob(0.95, 0, 1, open_hi=True, help="AdamW beta2 (MAE: 0.95)")
    clip_grad: float = knob(3.0, 0, help="max gradient norm; 0 = off (DINO/iBOT: 3.0)")
    clip_mode: Literal["per_param", "global"] = opt(
        "per_param", "clip each parameter by its own norm (DINO), or all by one")
    accum_steps: int = knob(1, 1, help="micro-batches per optimiser step")


# What `plaml-lab eval --probes` and the ablation runner accept (evaluate.py runs them).
PROBES = ("knn", "linear", "clusters", "seg", "box")


@dataclass
class EvalConfig:
    knn_k: int = knob(20, 1, help="kNN neighbours (DINO's weighted vote)")
    knn_t: float = knob(0.07, 0, open_lo=True, help="kNN vote temperature")
    max_train: int = knob(10000, 1, help="cap on the kNN memory bank / probe train set")
    max_val: int = knob(2000, 1, help="cap on the held-out images probed")
    batch_size: int = knob(256, 1, help="feature extraction batch")


@dataclass
class FinetuneConfig:
    """`plaml-lab finetune`: the MAE / BEiT fine-tuning recipe through timm's building blocks,
    scaled to CPU minutes (ViT-B in MAE: blr 5e-4, layer decay 0.65, drop path 0.1, mixup 0.8,
    cutmix 1.0, smoothing 0.1, 5 warm-up epochs of 100)."""

    epochs: float = knob(10.0, 0, open_lo=True, help="fine-tuning epochs")
    batch_size: int = knob(128, 1, help="even with mixing: mixup pairs each image with its mirror")
    blr: float = knob(1.0e-3, 0, open_lo=True, help="lr = blr * batch_size / 256")
    min_lr: float = knob(1.0e-6, 0, help="learning rate at the end of the cosine")
    warmup_epochs: float = knob(1.0, 0, help="linear learning-rate warm-up")
    weight_decay: float = knob(0.05, 0, help="AdamW weight decay")
    layer_decay: float = knob(0.75, 0, 1, open_lo=True, help="lr x decay ** (blocks above)")
    drop_path: float = knob(0.1, 0, 1, open_hi=True, help="stochastic depth rate")
    mixup: float = knob(0.8, 0, help="Beta(alpha, alpha) of mixup; 0 = off")
    cutmix: float = knob(1.0, 0, help="Beta(alpha, alpha) of cutmix; 0 = off")
    mixup_prob: float = knob(1.0, 0, 1, help="probability that a batch is mixed at all")
    smoothing: float = knob(0.1, 0, 1, open_hi=True, help="label smoothing")
    crop_scale_min: float = knob(0.35, 0, 1, open_lo=True, help="RandomResizedCrop min; flips")
    pool: Literal["avg", "token"] = opt("avg", "mean of the data tokens (MAE) or the class token")
    blocks: int = knob(-1, -1, help="fine-tune the last K blocks (+ norm + head); -1 all, 0 head")
    fraction: float = knob(1.0, 0, 1, open_lo=True, help="of the labelled images, per class")
    seed: int = opt(0, "label subset, head init, augmentation, mixup")
    log_every: int = knob(10, 1, help="steps between metrics lines")
    ckpt_every: int = knob(100, 0, help="steps between checkpoints; 0 = only at the end")


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

    # -- derived facts about the method (its rules: plaml_lab.method.rules) ----------------
    @property
    def variant(self) -> Variant:
        return Variant.of(self)

    @property
    def uses_pseudo_labels(self) -> bool:
        return self.variant.uses_pseudo_labels

    @property
    def pl_cls(self) -> bool:
        return self.variant.pl_cls

    @property
    def pl_patch(self) -> bool:
        return self.variant.pl_patch

    @property
    def teacher_roles(self) -> dict[str, str]:
        """{teacher name: schedule name}: Variant.teacher_roles."""
        return self.variant.teacher_roles

    @property
    def rec_teacher(self) -> str | None:
        """The teacher that supplies token targets: Variant.rec_teacher."""
        return self.variant.rec_teacher


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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """YAML preset (optional: a path, or a shipped preset's name such as `demo`; plaml_lab.paths)
    + dotted overrides -> validated PretrainConfig. An override the chosen variant never reads
    (e.g. teachers.reconstruction.momentum with method.teachers=single) is reported as a
    ConfigWarning: it would change nothing."""
    data = load_yaml(find_file(path, "config file")) if path else {}
    cfg = from_dict(apply_overrides(data, overrides))
    for msg in unread_keys(cfg, [parse_override(o)[0] for o in overrides or []]):
        warnings.warn(msg, ConfigWarning, stacklevel=2)
    return cfg


# --------------------------------------------------------------------------------------------
# Validation


def _relations(cfg: PretrainConfig) -> None:
    """The rules that tie fields of different sections together."""
    d, m, mk, me = cfg.data, cfg.model, cfg.mask, cfg.method
    name = cfg.run.name
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        # it names the folder experiments/runs/<run.name>: a path would write elsewhere
        raise ConfigError(f"run.name={name!r}: must be a plain name (no '/', '\\' or '..'); "
                          "choose the folder with --out")
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
    r = cfg.run
    if r.knn_every % r.log_every:
        raise ConfigError(f"run.knn_every={r.knn_every}: must be a multiple of run.log_every="
                          f"{r.log_every} (kNN is logged in a metrics row)")
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


