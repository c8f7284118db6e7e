"""What this machine runs fast: the device (`run.device`) and the precision (`run.precision`).

`run.precision: auto` (the default everywhere) is resolved once, at start-up, from the device:
- CUDA: bf16 where the GPU supports it, else fp16 with the grad scaler;
- CPU: bf16 only where the CPU has it natively (AVX512-BF16 or AMX tiles, and oneDNN able to use
  them), else fp32. Without native support every bf16 matmul is emulated: on an AVX2-only CPU a
  512 x 512 bf16 matmul ran ~40x slower than fp32 (benchmarks/README.md, precision);
- MPS: fp16 autocast where torch supports autocast on MPS (Apple GPUs run half precision at about
  twice the fp32 rate), else fp32.
A forced reduced precision is kept, with a one-line warning when the CPU would emulate it.

The capability probes are separate functions so that tests can patch each of them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import torch

from plaml_lab.config import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class PrecisionWarning(UserWarning):
    """A forced precision this device can only emulate (it will be slow)."""


# --- capability probes (patched in tests) --------------------------------------------------

def cpu_capability() -> str:
    """The widest vector ISA torch dispatches to on this CPU, e.g. 'AVX2', 'AVX512'."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def cpu_has_native_bf16() -> bool:
    """True where bf16 matmuls run in hardware: AVX512-BF16 or AMX tiles, usable by oneDNN."""
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        isa = bool(torch.cpu._is_avx512_bf16_supported()) or bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False
    return onednn and isa


def cpu_has_native_fp16() -> bool:
    """True where fp16 matmuls run in hardware on the CPU (AMX-FP16 / AVX512-FP16)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_has_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def mps_has_autocast() -> bool:
    try:
        return bool(torch.amp.autocast_mode.is_autocast_available("mps"))
    except (AttributeError, RuntimeError):
        return False


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


# --- resolution ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` in fp32|bf16|fp16 and, in one line, why it was chosen."""

    name: str
    reason: str
    requested: str = "auto"

    @property
    def dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.name)

    @property
    def uses_scaler(self) -> bool:
        return self.name == "fp16"


def resolve_precision(requested: str, device: torch.device | str) -> Precision:
    """The precision a run on `device` uses for `requested` (run.precision). Pure: it reads
    only the capability probes; warnings are `precision_warning`'s job."""
    if requested not in PRECISIONS:
        raise ValueError(f"run.precision={requested!r}: allowed values are {'|'.join(PRECISIONS)}")
    kind = torch.device(device).type
    if requested != "auto":
        return Precision(requested, f"run.precision={requested} (forced)", requested)
    if kind == "cuda":
        if cuda_has_bf16():
            return Precision("bf16", "auto: the GPU supports bf16")
        return Precision("fp16", "auto: the GPU has no bf16; fp16 with the grad scaler")
    if kind == "mps":
        if mps_has_autocast():
            return Precision("fp16", "auto: fp16 autocast on MPS")
        return Precision("fp32", "auto: this torch has no autocast on MPS")
    if kind == "cpu":
        isa = cpu_capability()
        if cpu_has_native_bf16():
            return Precision("bf16", f"auto: the CPU has native bf16 ({isa}, AVX512-BF16/AMX)")
        return Precision("fp32", f"auto: the CPU has no native bf16 ({isa}); bf16 would be "
                                 "emulated, far slower than fp32")
    return Precision("fp32", f"auto: fp32 on {kind}")


def precision_warning(precision: Precision, device: torch.device | str) -> str | None:
    """A one-line warning when a forced reduced precision would be emulated on this CPU."""
    if torch.device(device).type != "cpu" or precision.requested == "auto":
        return None
    if precision.name == "bf16" and not cpu_has_native_bf16():
        return (f"run.precision=bf16 on a CPU without native bf16 ({cpu_capability()}): every "
                "bf16 matmul is emulated and training will be many times slower than "
                "run.precision=fp32 (use auto)")
    if precision.name == "fp16" and not cpu_has_native_fp16():
        return (f"run.precision=fp16 on a CPU without native fp16 ({cpu_capability()}): it is "
                "emulated and slower than run.precision=fp32 (use auto)")
    return None


def warn_if_emulated(precision: Precision, device: torch.device | str) -> None:
    msg = precision_warning(precision, device)
    if msg:
        warnings.warn(msg, PrecisionWarning, stacklevel=2)


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, precision: str):
    """Autocast for a resolved precision (fp32: no autocast at all)."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --- devices -----------------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu. Under torchrun each rank takes cuda:LOCAL_RANK."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif mps_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("run.device='cuda': no CUDA device is available (use auto or cpu)")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if name == "mps" and not mps_available():
        raise ConfigError("run.device='mps': MPS is not available (use auto or cpu)")
    if name not in ("cpu", "mps"):  # `--device` flags reach here unchecked by the config tree
        raise ConfigError(f"device {name!r}: allowed values are auto|cpu|cuda|mps")
    return torch.device(name)


def try_compile(module: torch.nn.Module) -> torch.nn.Module:
    """torch.compile(module), or module itself with a warning where compiling is unavailable
    or fails (run.compile=true never stops a run)."""
    if not hasattr(torch, "compile"):
        warnings.warn("run.compile=true: torch.compile is not available; running eagerly")
        return module
    try:
        return torch.compile(module)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"run.compile=true: torch.compile failed ({e}); running eagerly")
        return module
