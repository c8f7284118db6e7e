"""One typed config tree for plaml_lab: dataclasses, YAML load/save, dotted overrides, validation.

Every knob of the method (METHOD.md) is a field here; a dotted path into the tree
(`teachers.labelling.momentum=0.99`) names it on the CLI, in a notebook's `overrides`
parameter and in a sweep grid alike. Validation errors name the key, the value and what is
allowed, in one line, so the CLI can print them as `error: ...`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plaml_lab.errors import ConfigError

# --------------------------------------------------------------------------------------------
# The tree


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0  # seeds init, data order, augmentation and masking
    device: str = "auto"  # auto|cpu|cuda|mps (auto: cuda, then mps, then cpu)
    # auto|fp32|bf16|fp16. auto: bf16 on GPUs that have it (else fp16 + GradScaler), bf16 on
    # CPUs with native bf16 (AVX512-BF16/AMX), fp32 on every other CPU (plaml_lab.hardware)
    precision: str = "auto"
    max_steps: int = 0  # stop after N optimiser steps; 0 = the full schedule
    ckpt_every: int = 200  # optimiser steps between checkpoints (last.pt); 0 = only at the end
    keep_ckpts: int = 2  # periodic step_XXXXXXX.pt checkpoints kept besides last.pt
    log_every: int = 10  # optimiser steps between metrics.jsonl lines
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    compile: bool = False  # torch.compile the student (falls back with a warning if unavailable)
    deterministic: bool = False  # torch.use_deterministic_algorithms (bitwise resume on CPU)
    on_nonfinite: str = "stop"  # stop|skip: what a NaN/inf loss does
    progress: bool = True  # tqdm progress bar
    eval_knn: bool = True  # kNN accuracy on the held-out split in summary.json


@dataclass
class ShapesConfig:
    """Difficulty knobs of the embedded `shapes` dataset (see docs/data.md)."""

    num_classes: int = 10
    size_min: float = 0.5  # object radius / half image width
    size_max: float = 0.9
    min_contrast: float = 0.3  # minimum fg/bg colour distance in [0, 1]
    clutter: int = 1  # distractor blobs/lines
    noise: float = 0.02  # pixel noise std
    texture: float = 0.5  # background gradient/texture amplitude
    rotation: bool = True
    jitter: float = 0.25  # max centre offset, fraction of the free space
    palette: str = "colour"  # colour | grey (desaturated: colour cannot tell images apart)


@dataclass
class AugConfig:
    crop_scale_min: float = 0.2  # RandomResizedCrop scale range (MAE: 0.2-1)
    crop_scale_max: float = 1.0
    flip: bool = True
    color_jitter: float = 0.4  # strength; 0 = off. Makes colour a nuisance for pseudo labels
    color_jitter_p: float = 0.8
    grayscale_p: float = 0.2
    # Colour as a nuisance the pseudo labels cannot use (see data.transforms.color_nuisance):
    channel_shuffle_p: float = 0.0  # random RGB permutation per view
    invert_p: float = 0.0  # colour negative per view
    shared_crop: bool = False  # one crop for all views: they differ in colour only


@dataclass
class DataConfig:
    dataset: str = "shapes"  # shapes|digits|cifar10|folder
    root: str = ""  # cifar10 / folder root
    download: bool = False  # cifar10: allow torchvision to download
    views: int = 2  # 2: cross-view class-token targets (DINO); 1: same-view only
    num_train: int = 20000  # shapes: generated training images
    num_val: int = 2000  # shapes: generated held-out images
    val_fraction: float = 0.2  # digits / single-tree folder: held-out fraction
    num_workers: int = 0  # DataLoader workers for file datasets
    on_bad_image: str = "skip"  # skip|error: a corrupt image in a folder dataset
    seed_data: int = 0  # generation seed of the embedded dataset (fixed across runs)
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    aug: AugConfig = field(default_factory=AugConfig)


@dataclass
class ModelConfig:
    img_size: int = 32
    patch_size: int = 4
    in_chans: int = 3
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 128
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    drop_path: float = 0.0
    attn_impl: str = "auto"  # auto|sdpa|math (auto: math on CPU in bf16/fp16, else SDPA; the
    # resolved run.precision decides)


@dataclass
class MaskConfig:
    ratio: float = 0.75  # fraction of data tokens hidden from the student
    strategy: str = "random"  # random|block
    block_size: int = 2  # block strategy: blob scale in patches


@dataclass
class MethodConfig:
    target: str = "tokens"  # pixels|tokens|none: what the decoder reconstructs
    pseudo_labels: str = "both"  # none|cls|patch|both
    teachers: str = "dual"  # single|dual


@dataclass
class PseudoLabelConfig:
    num_prototypes: int = 256  # K
    shared_head: bool = False  # class-token and patch pseudo labels from one head
    head_hidden_dim: int = 512  # ViT-B: 2048
    head_bottleneck_dim: int = 128  # ViT-B: 256
    head_layers: int = 3
    assignment: str = "centering"  # centering|sinkhorn
    student_temp: float = 0.1
    teacher_temp: float = 0.07  # after warm-up
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: float = 0.0
    center_momentum: float = 0.9
    sinkhorn_iters: int = 3
    freeze_prototypes_epochs: float = 0.0  # DINO freezes the last layer early on


@dataclass
class RecConfig:
    loss: str = "mse"  # mse|smooth_l1|cosine (token mode)
    target_layers: int = 1  # average of the reconstruction teacher's last k blocks
    target_norm: str = "layer"  # layer|instance|none, per layer before averaging
    norm_pix_loss: bool = True  # pixel mode: per-patch normalised target (MAE)


@dataclass
class TeacherConfig:
    momentum: float = 0.996
    momentum_end: float = 1.0


@dataclass
class TeachersConfig:
    labelling: TeacherConfig = field(default_factory=lambda: TeacherConfig(0.996, 1.0))
    reconstruction: TeacherConfig = field(default_factory=lambda: TeacherConfig(0.999, 0.9999))


@dataclass
class LossConfig:
    w_rec: float = 1.0
    w_cls: float = 1.0
    w_patch: float = 1.0


@dataclass
class OptimConfig:
    batch_size: int = 128  # per device, per accumulation step
    epochs: float = 10.0
    blr: float = 1.5e-4  # lr = blr * global_batch / 256
    lr: float = 0.0  # absolute lr; overrides blr when > 0
    min_lr: float = 0.0
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    clip_grad: float = 0.0  # max grad norm; 0 = off
    accum_steps: int = 1


# What `plaml-lab eval --probes` and the ablation runner accept (evaluate.py runs them).
PROBES = ("knn", "linear", "clusters", "seg", "box")


@dataclass
class EvalConfig:
    knn_k: int = 20
    knn_t: float = 0.07
    max_train: int = 10000  # cap on the kNN memory bank / probe train set
    max_val: int = 2000
    batch_size: int = 256


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
# Plain data <-> tree


def to_dict(cfg: Any) -> dict:
    """The tree as nested plain dicts (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(cfg)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML/override value to the field's type, or raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        tp = args[0]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}={value!r}: expected a boolean (true|false)")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    f = None
                if f is not None and f.is_integer():
                    return int(f)
        raise ConfigError(f"{key}={value!r}: expected an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}={value!r}: expected a number")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}={value!r}: expected a string")
    raise ConfigError(f"{key}: unsupported field type {tp}")


def _known_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in _field_types(cls).items():
        if _is_dataclass_type(tp):
            keys += _known_keys(tp, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _unknown_key_error(key: str) -> ConfigError:

    close = difflib.get_close_matches(key, _known_keys(PretrainConfig), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}")


def _build(cls: type, data: dict | None, prefix: str = "", base: Any = None) -> Any:
    """Set `data` onto `base` (default: cls()); nested sections start from the parent's default
    for that field, so e.g. the reconstruction teacher keeps its own default momenta."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = _field_types(cls)
    obj = cls() if base is None else base
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in hints:
            raise _unknown_key_error(full)
        tp = hints[key]
        if _is_dataclass_type(tp):
            setattr(obj, key, _build(tp, value, full + ".", getattr(obj, key)))
        else:
            setattr(obj, key, _convert(full, value, tp))
    return obj


def from_dict(data: dict | None) -> PretrainConfig:
    """Build and validate a config from nested plain dicts (missing keys take defaults)."""
    cfg = _build(PretrainConfig, data)
    validate(cfg)
    return cfg


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


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML file's top-level mapping ({} when empty); one-line ConfigError naming the file
    when it is missing, is not valid YAML (with the line), or is not a mapping. Also reads the
    sweep and ablation grid files (`what` names the kind of file in the message)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=value' -> ('a.b', value parsed as a YAML scalar)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value (e.g. mask.ratio=0.6)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...] | None) -> dict:
    """Set dotted keys in a nested dict (a copy); unknown keys raise ConfigError."""

    data = copy.deepcopy(data) if data else {}
    for text in overrides or []:
        key, value = parse_override(text)
        parts = key.split(".")
        cls: Any = PretrainConfig
        node = data
        for i, part in enumerate(parts):
            hints = _field_types(cls)
            if part not in hints:
                raise _unknown_key_error(key)
            tp = hints[part]
            last = i == len(parts) - 1
            if _is_dataclass_type(tp):
                if last:
                    raise ConfigError(f"override '{text}': '{key}' is a section; set one of its keys")
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
                cls = tp
            else:
                if not last:
                    raise _unknown_key_error(key)
                node[part] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """YAML preset (optional) + dotted overrides -> validated PretrainConfig."""
    data = load_yaml(path) if path else {}
    return from_dict(apply_overrides(data, overrides))


def save_yaml(cfg: PretrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def diff(a: PretrainConfig | dict, b: PretrainConfig | dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs."""
    da = a if isinstance(a, dict) else to_dict(a)
    db = b if isinstance(b, dict) else to_dict(b)
    out = []
    for k in sorted(set(da) | set(db)):
        va, vb = da.get(k), db.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


# --------------------------------------------------------------------------------------------
# Validation


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: allowed values are {'|'.join(map(str, allowed))}")


def _range(key: str, value: float, lo=None, hi=None, lo_open=False, hi_open=False) -> None:
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
        hi is not None and (value >= hi if hi_open else value > hi)
    )
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise ConfigError(f"{key}={value!r}: must be in {left}{lo_s}, {hi_s}{right}")


def validate(cfg: PretrainConfig) -> None:
    """Raise ConfigError (naming the key, value and what is allowed) for the first bad value."""
    r, d, m, mk, me, pl, rec, o = (
        cfg.run, cfg.data, cfg.model, cfg.mask, cfg.method, cfg.pl, cfg.rec, cfg.optim)
    _choice("run.device", r.device, ("auto", "cpu", "cuda", "mps"))
    _choice("run.precision", r.precision, ("auto", "fp32", "bf16", "fp16"))
    _choice("run.on_nonfinite", r.on_nonfinite, ("stop", "skip"))
    _range("run.max_steps", r.max_steps, 0)
    _range("run.ckpt_every", r.ckpt_every, 0)
    _range("run.keep_ckpts", r.keep_ckpts, 0)
    _range("run.log_every", r.log_every, 1)
    _range("run.num_threads", r.num_threads, 0)

    _choice("data.dataset", d.dataset, ("shapes", "digits", "cifar10", "folder"))
    _choice("data.views", d.views, (1, 2))
    _choice("data.on_bad_image", d.on_bad_image, ("skip", "error"))
    _range("data.num_train", d.num_train, 1)
    _range("data.num_val", d.num_val, 1)
    _range("data.val_fraction", d.val_fraction, 0, 1, lo_open=True, hi_open=True)
    _range("data.num_workers", d.num_workers, 0)
    if d.dataset == "folder" and not d.root:
        raise ConfigError("data.root='': data.dataset=folder needs data.root (an image folder)")
    s = d.shapes
    _range("data.shapes.num_classes", s.num_classes, 2, 12)
    _range("data.shapes.size_min", s.size_min, 0, 1, lo_open=True)
    _range("data.shapes.size_max", s.size_max, s.size_min, 1)
    _range("data.shapes.min_contrast", s.min_contrast, 0, 1)
    _range("data.shapes.clutter", s.clutter, 0, 16)
    _range("data.shapes.noise", s.noise, 0, 1)
    _range("data.shapes.texture", s.texture, 0, 1)
    _range("data.shapes.jitter", s.jitter, 0, 1)
    _choice("data.shapes.palette", s.palette, ("colour", "grey"))
    a = d.aug
    _range("data.aug.crop_scale_min", a.crop_scale_min, 0, 1, lo_open=True)
    _range("data.aug.crop_scale_max", a.crop_scale_max, a.crop_scale_min, 1)
    _range("data.aug.color_jitter", a.color_jitter, 0, 1)
    _range("data.aug.color_jitter_p", a.color_jitter_p, 0, 1)
    _range("data.aug.grayscale_p", a.grayscale_p, 0, 1)
    _range("data.aug.channel_shuffle_p", a.channel_shuffle_p, 0, 1)
    _range("data.aug.invert_p", a.invert_p, 0, 1)

    for key in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "decoder_embed_dim",
                "decoder_depth", "decoder_num_heads", "in_chans"):
        _range(f"model.{key}", getattr(m, key), 1)
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
    _range("model.mlp_ratio", m.mlp_ratio, 0, lo_open=True)
    _range("model.drop_path", m.drop_path, 0, 1, hi_open=True)
    _choice("model.attn_impl", m.attn_impl, ("auto", "sdpa", "math"))

    _range("mask.ratio", mk.ratio, 0, 1, lo_open=True, hi_open=True)
    _choice("mask.strategy", mk.strategy, ("random", "block"))
    _range("mask.block_size", mk.block_size, 1)
    num_patches = (m.img_size // m.patch_size) ** 2
    if int(num_patches * (1 - mk.ratio)) < 1:
        raise ConfigError(f"mask.ratio={mk.ratio}: leaves no visible patch out of {num_patches}")
    if int(num_patches * (1 - mk.ratio)) >= num_patches:
        raise ConfigError(f"mask.ratio={mk.ratio}: masks no patch out of {num_patches}")

    _choice("method.target", me.target, ("pixels", "tokens", "none"))
    _choice("method.pseudo_labels", me.pseudo_labels, ("none", "cls", "patch", "both"))
    _choice("method.teachers", me.teachers, ("single", "dual"))
    if me.target == "none" and me.pseudo_labels == "none":
        raise ConfigError("method.pseudo_labels='none': with method.target=none there is nothing to "
                          "learn; set method.target or method.pseudo_labels")

    _range("pl.num_prototypes", pl.num_prototypes, 2)
    _range("pl.head_hidden_dim", pl.head_hidden_dim, 1)
    _range("pl.head_bottleneck_dim", pl.head_bottleneck_dim, 1)
    _range("pl.head_layers", pl.head_layers, 1)
    _choice("pl.assignment", pl.assignment, ("centering", "sinkhorn"))
    for key in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
        _range(f"pl.{key}", getattr(pl, key), 0, lo_open=True)
    _range("pl.warmup_teacher_temp_epochs", pl.warmup_teacher_temp_epochs, 0)
    _range("pl.center_momentum", pl.center_momentum, 0, 1)
    _range("pl.sinkhorn_iters", pl.sinkhorn_iters, 1)
    _range("pl.freeze_prototypes_epochs", pl.freeze_prototypes_epochs, 0)

    _choice("rec.loss", rec.loss, ("mse", "smooth_l1", "cosine"))
    _choice("rec.target_norm", rec.target_norm, ("layer", "instance", "none"))
    if not 1 <= rec.target_layers <= m.depth:
        raise ConfigError(f"rec.target_layers={rec.target_layers}: must be in [1, model.depth="
                          f"{m.depth}]")

    for name in ("labelling", "reconstruction"):
        t = getattr(cfg.teachers, name)
        _range(f"teachers.{name}.momentum", t.momentum, 0, 1)
        _range(f"teachers.{name}.momentum_end", t.momentum_end, 0, 1)

    for key in ("w_rec", "w_cls", "w_patch"):
        _range(f"loss.{key}", getattr(cfg.loss, key), 0)

    _range("optim.batch_size", o.batch_size, 1)
    _range("optim.epochs", o.epochs, 0, lo_open=True)
    _range("optim.blr", o.blr, 0)
    _range("optim.lr", o.lr, 0)
    _range("optim.min_lr", o.min_lr, 0)
    _range("optim.warmup_epochs", o.warmup_epochs, 0)
    _range("optim.weight_decay", o.weight_decay, 0)
    _range("optim.beta1", o.beta1, 0, 1, hi_open=True)
    _range("optim.beta2", o.beta2, 0, 1, hi_open=True)
    _range("optim.clip_grad", o.clip_grad, 0)
    _range("optim.accum_steps", o.accum_steps, 1)
    if o.blr == 0 and o.lr == 0:
        raise ConfigError("optim.lr=0: set optim.lr or optim.blr to a positive learning rate")

    _range("eval.knn_k", cfg.eval.knn_k, 1)
    _range("eval.knn_t", cfg.eval.knn_t, 0, lo_open=True)
    _range("eval.max_train", cfg.eval.max_train, 1)
    _range("eval.max_val", cfg.eval.max_val, 1)
    _range("eval.batch_size", cfg.eval.batch_size, 1)
