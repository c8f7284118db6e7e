"""Export a run's encoder as a safetensors file that timm loads as is, or as a timm model
folder that timm loads by name.

The encoder's attributes already use timm's names (cls_token, pos_embed, patch_embed.proj.*,
blocks.N.*, norm.*), so export is the encoder's state dict, made contiguous, plus metadata
giving the VisionTransformer arguments of its shape. It loads with strict=True into

    timm.models.vision_transformer.VisionTransformer(**timm_kwargs, num_classes=0)

and, for the ViT-B/16 preset, into
    timm.create_model('vit_base_patch16_224', num_classes=0, pretrained=True,
                      pretrained_cfg_overlay=dict(file=PATH))
(a local file: timm reads it without touching any hub). The fixed sin-cos position embedding
becomes timm's (learned) pos_embed; inputs must be normalised with ImageNet mean/std as in
plaml_lab (plaml_lab.data.normalize), not with the 0.5/0.5 of some timm pretrained configs.

The `timm-dir` format writes OUT/config.json (timm's architecture name, the model_args of its
shape and a pretrained_cfg with num_classes=0, input_size and plaml_lab's mean/std) beside
OUT/model.safetensors: the layout timm's own hub export writes (timm.models._hub.save_for_hf), so

    timm.create_model("local-dir:OUT", pretrained=True, num_classes=0)

builds and loads it with nothing else at hand, and a model hub's client can upload the folder as
is. Exported files get the mode the umask gives a new file (0644 under umask 022): atomic_path
sets it, since safetensors itself creates them 0600, which colleagues on shared storage cannot
read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer

from plaml_lab.config import ConfigError
from plaml_lab.data import IMAGENET_MEAN, IMAGENET_STD
from plaml_lab.runs import Run, load_run
from plaml_lab.runs.checkpoint import CheckpointError, atomic_path

METADATA_FORMAT = "plaml_lab.encoder"
FORMATS = ("safetensors", "timm-dir")
DIR_FILES = ("config.json", "model.safetensors")  # what a timm-dir export holds
# timm's registered ViT names by (embed_dim, depth, num_heads): a folder of one of these shapes
# names its own model; any other shape builds from vit_base's entry point with its model_args
TIMM_SIZES = {(192, 12, 3): "tiny", (384, 12, 6): "small", (768, 12, 12): "base",
              (1024, 24, 16): "large"}


def timm_kwargs(model_cfg) -> dict:
    """cfg.model -> keyword arguments of timm's VisionTransformer of the same shape."""
    return {"img_size": int(model_cfg.img_size), "patch_size": int(model_cfg.patch_size),
            "in_chans": int(model_cfg.in_chans), "embed_dim": int(model_cfg.embed_dim),
            "depth": int(model_cfg.depth), "num_heads": int(model_cfg.num_heads),
            "mlp_ratio": float(model_cfg.mlp_ratio)}


def encoder_state_dict(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """fp32, contiguous, unshared copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone()
            for k, v in encoder.state_dict().items()}


def check_out_path(out_path: str | Path, fmt: str = "safetensors") -> Path:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose {' or '.join(FORMATS)}")
    out = Path(out_path)
    if fmt == "timm-dir":
        return check_out_dir(out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder, expected a .safetensors file name")
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {out}: expected a .safetensors file name")
    return out


def save_encoder(encoder: torch.nn.Module, out_path: str | Path, kwargs: dict,
                 extra_metadata: dict | None = None) -> Path:
    """Write `encoder`'s weights to out_path (.safetensors) with its timm kwargs as metadata."""

    out = check_out_path(out_path)
    meta = {"format": METADATA_FORMAT, "timm_kwargs": json.dumps(kwargs)}
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:  # a half-written file never carries the final name
            save_file(encoder_state_dict(encoder), str(tmp), metadata=meta)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write ({e.strerror or e})") from None
    except SafetensorError as e:  # its I/O errors (a read-only folder) are of its own type
        reason = re.search(r"I/O error: (.*?)( \(os error \d+\))?( at path|$)", str(e))
        raise ConfigError(f"--out {out}: cannot write "
                          f"({reason.group(1) if reason else str(e).splitlines()[0]})") from None
    return out


def check_out_dir(out: Path) -> Path:
    """A timm-dir --out: a new or empty folder, or an earlier export (whose two files are
    replaced); a file, or a folder holding anything else, is refused (nothing of it is lost)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, expected a folder for --format timm-dir")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in DIR_FILES)
        if other:
            raise ConfigError(f"--out {out}: folder holds {other[0]}, not an earlier timm-dir "
                              "export; choose a new or empty folder")
    return out


def timm_architecture(kwargs: dict) -> str:
    """The timm model name of this shape (vit_small_patch16_224, ...), else vit_base_patch16_224:
    the config's model_args set every shape argument, so the name only picks the entry point."""
    size = TIMM_SIZES.get((kwargs["embed_dim"], kwargs["depth"], kwargs["num_heads"]))
    name = f"vit_{size}_patch{kwargs['patch_size']}_{kwargs['img_size']}"
    if size and kwargs["mlp_ratio"] == 4.0 and kwargs["in_chans"] == 3:
        import timm  # noqa: PLC0415 - only to ask whether timm registers the name

        if timm.is_model(name):
            return name
    return "vit_base_patch16_224"


def timm_config(kwargs: dict, provenance: dict | None = None) -> dict:
    """config.json of a timm-dir export, in the form timm's save_config_for_hf writes:
    architecture, num_classes, num_features, global_pool, model_args, pretrained_cfg; plus a
    `plaml_lab` entry (which encoder, step, source run) that timm ignores."""
    size = (kwargs["in_chans"], kwargs["img_size"], kwargs["img_size"])
    return {
        "architecture": timm_architecture(kwargs),
        "num_classes": 0,
        "num_features": kwargs["embed_dim"],
        "global_pool": "token",
        "model_args": dict(kwargs),
        "pretrained_cfg": {
            "tag": "plaml_lab", "custom_load": False, "input_size": list(size),
            "fixed_input_size": True, "interpolation": "bicubic", "crop_pct": 1.0,
            "crop_mode": "center",
            # plaml_lab normalises with ImageNet's statistics (plaml_lab.data.normalize)
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "num_classes": 0, "pool_size": None, "first_conv": "patch_embed.proj",
            "classifier": "head",
        },
        "plaml_lab": {k: v for k, v in (provenance or {}).items()},
    }


def save_timm_dir(encoder: torch.nn.Module, out_dir: str | Path, kwargs: dict,
                  provenance: dict | None = None) -> Path:
    """Write `encoder` as a timm model folder: out_dir/config.json + out_dir/model.safetensors."""
    out = check_out_dir(Path(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(encoder_state_dict(encoder), str(tmp), metadata={"format": "pt"})
    # config last: a folder with a config.json is a complete export
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(json.dumps(timm_config(kwargs, provenance), indent=2) + "\n")
    return out


def export_timm(run_or_ckpt, out_path: str | Path, encoder: str = "student",
                fmt: str = "safetensors") -> Path:
    """A run (plaml_lab.runs.Run), run folder or checkpoint file -> out_path holding the chosen
    encoder (student | labelling | reconstruction) in timm's layout: a .safetensors file
    (fmt="safetensors") or a folder timm.create_model("local-dir:OUT") loads (fmt="timm-dir")."""

    check_out_path(out_path, fmt)  # fail before loading a large checkpoint
    run = run_or_ckpt if isinstance(run_or_ckpt, Run) else load_run(run_or_ckpt)
    if encoder not in ("student", "labelling", "reconstruction"):
        raise ConfigError(f"--encoder {encoder}: choose student, labelling or reconstruction")
    source = str(run.path) if run.path is not None else str(run_or_ckpt)
    provenance = {"encoder": encoder, "step": run.step, "source": source}
    save = save_timm_dir if fmt == "timm-dir" else save_encoder
    return save(run.encoder(encoder), out_path, timm_kwargs(run.cfg.model), provenance)


def read_timm_kwargs(path: str | Path) -> dict:
    """The VisionTransformer arguments stored in an exported file's metadata."""

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"exported encoder not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != METADATA_FORMAT:
        raise CheckpointError(f"{path}: not a plaml_lab encoder export (no '{METADATA_FORMAT}' "
                              "metadata)")
    return json.loads(meta["timm_kwargs"])


def load_timm(path: str | Path) -> torch.nn.Module:
    """An exported file or timm-dir folder -> timm VisionTransformer (num_classes=0, eval mode),
    loaded strictly."""

    if Path(path).is_dir():
        import timm  # noqa: PLC0415

        return timm.create_model(f"local-dir:{path}", pretrained=True, num_classes=0).eval()
    model = VisionTransformer(**read_timm_kwargs(path), num_classes=0)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


# --- CLI --------------------------------------------------------------------------------------


def cmd_export(args) -> int:
    out = export_timm(args.checkpoint, args.out, encoder=args.encoder, fmt=args.format)
    if args.format == "timm-dir":
        config = json.loads((out / "config.json").read_text())
        kwargs = config["model_args"]
        extra = {"format": args.format, "load": f'timm.create_model("local-dir:{out}", '
                 'pretrained=True, num_classes=0)'}
    else:
        kwargs, extra = read_timm_kwargs(out), {}
    print(json.dumps({"out": str(out), "encoder": args.encoder, **extra,
                      "timm_kwargs": kwargs}, indent=2))
    return 0
