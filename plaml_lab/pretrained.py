"""Start pretraining from existing weights (`model.init_from`).

Two forms of the key:
    model.init_from=PATH.safetensors        a timm ViT state dict: ours (`plaml-lab export`) or
                                            anyone's VisionTransformer of the same shape
    model.init_from=TIMM_NAME@LOCAL_FILE    timm.create_model(TIMM_NAME, pretrained=True) reading
                                            LOCAL_FILE (any format timm reads, converted by its
                                            own checkpoint filter; no hub access)

The weights go into the student's encoder strictly by name: the encoder already uses timm's
names, so every tensor must be present with the same shape. A classifier head (`head.*`) is
not part of an encoder and is left out. The teachers are copies of the student, so they start
from the same weights. A resumed run never reads the file again: its checkpoint wins.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from plaml_lab.errors import ConfigError

KEY = "model.init_from"


def _read_safetensors(path: Path, key: str = KEY) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"{key}={path}: not a readable safetensors file "
                          f"({str(e).splitlines()[0][:120]})") from None


def _read_timm(name: str, path: Path, key: str = KEY) -> dict[str, torch.Tensor]:
    if not timm.is_model(name):
        raise ConfigError(f"{key}={name}@{path}: '{name}' is not a timm model name")
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay=dict(file=str(path)))
    except Exception as e:  # noqa: BLE001 - timm / torch raise many types for a bad file
        raise ConfigError(f"{key}={name}@{path}: timm could not load it "
                          f"({str(e).splitlines()[0][:160]})") from None
    return model.state_dict()


def read_encoder_weights(spec: str, key: str = KEY) -> dict[str, torch.Tensor]:
    """model.init_from (or `key`, a config key of the same form) -> a state dict in timm's
    VisionTransformer names (head.* dropped)."""
    name, sep, file = spec.rpartition("@")
    path = Path(file if sep else spec)
    if not path.is_file():
        raise ConfigError(f"{key}={spec}: file not found: {path}")
    if sep:
        state = _read_timm(name, path, key)
    else:
        if path.suffix != ".safetensors":
            raise ConfigError(f"{key}={spec}: expected a .safetensors file, or "
                              "TIMM_NAME@FILE for timm's other formats")
        state = _read_safetensors(path, key)
    return {k: v for k, v in state.items() if not k.startswith("head.")}


def load_into_encoder(encoder: nn.Module, state: dict[str, torch.Tensor], spec: str,
                      key: str = KEY) -> None:
    """Copy `state` into `encoder` strictly by name; a one-line ConfigError naming the first
    missing / unexpected tensor or both shapes of the first mismatch."""
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what, names = ("missing", missing) if missing else ("unexpected", unexpected)
        raise ConfigError(f"{key}={spec}: not an encoder of this model ({len(names)} {what} "
                          f"tensors, e.g. {', '.join(names[:3])})")
    for k in own:  # the encoder's order: the first mismatch is the most telling (cls_token)
        if tuple(state[k].shape) != tuple(own[k].shape):
            raise ConfigError(f"{key}={spec}: encoder of another shape ({k}: file "
                              f"{tuple(state[k].shape)}, model {tuple(own[k].shape)}; set "
                              "model.* to the file's shape)")
    encoder.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


@torch.no_grad()
def init_from(model: nn.Module, spec: str) -> None:
    """Load `spec` into model.student.encoder and copy it into every teacher's encoder (a
    PLAML fresh from its constructor: the teachers are the student's copies)."""
    load_into_encoder(model.student.encoder, read_encoder_weights(spec), spec)
    student = model.student.encoder.state_dict()
    for teacher in model.teachers.values():
        teacher.encoder.load_state_dict(student, strict=True)


@torch.no_grad()
def init_teacher_from(model: nn.Module, role: str, spec: str) -> None:
    """Load `spec` into the encoder of teacher `role` alone (teachers.<role>.init_from); its
    heads, if any, stay the student's copies. Call after init_from: the student's weights are
    what the other teachers start from."""
    key = f"teachers.{role}.init_from"
    load_into_encoder(model.teachers[role].encoder, read_encoder_weights(spec, key), spec, key)
