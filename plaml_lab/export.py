"""Export a run's encoder as a safetensors file that timm loads as is.

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
from plaml_lab.runs import Run, load_run
from plaml_lab.runs.checkpoint import CheckpointError, atomic_path

METADATA_FORMAT = "plaml_lab.encoder"


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


def check_out_path(out_path: str | Path) -> Path:
    out = Path(out_path)
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


def export_timm(run_or_ckpt, out_path: str | Path, encoder: str = "student") -> Path:
    """A run (plaml_lab.runs.Run), run folder or checkpoint file -> out_path (.safetensors)
    holding the chosen encoder (student | labelling | reconstruction) in timm's layout."""

    check_out_path(out_path)  # fail before loading a large checkpoint
    run = run_or_ckpt if isinstance(run_or_ckpt, Run) else load_run(run_or_ckpt)
    if encoder not in ("student", "labelling", "reconstruction"):
        raise ConfigError(f"--encoder {encoder}: choose student, labelling or reconstruction")
    source = str(run.path) if run.path is not None else str(run_or_ckpt)
    return save_encoder(run.encoder(encoder), out_path, timm_kwargs(run.cfg.model),
                        {"encoder": encoder, "step": run.step, "source": source})


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
    """An exported file -> timm VisionTransformer (num_classes=0, eval mode), loaded strictly."""

    model = VisionTransformer(**read_timm_kwargs(path), num_classes=0)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


# --- CLI --------------------------------------------------------------------------------------


def cmd_export(args) -> int:
    out = export_timm(args.checkpoint, args.out, encoder=args.encoder)
    print(json.dumps({"out": str(out), "encoder": args.encoder,
                      "timm_kwargs": read_timm_kwargs(out)}, indent=2))
    return 0
