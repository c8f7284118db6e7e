"""Checkpoint files: atomic writes, safe loads, and the RNG states that make resume exact.

A checkpoint is a dict of tensors and plain data (no pickled objects), loaded with
`torch.load(..., weights_only=True)`; anything else is refused with a one-line CheckpointError
naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plaml_lab.errors import CheckpointError

FORMAT = "plaml_lab.checkpoint"
VERSION = 1


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only
    be read by setting it, which would race with files other threads create meanwhile)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path beside `path`; when the block ends without error, the file written
    there (flushed to disk) is renamed over `path`: a kill mid-write leaves the previous file
    intact. The one way plaml_lab replaces a file (checkpoints, summaries, tables, exports).
    The file gets the mode a plain open() would give it (0666 less the umask: 0644 under umask
    022), whatever the writer used for the temporary file (safetensors writes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:  # a full disk says so without a name: name the file being replaced
        if e.filename is None or str(e.filename) == str(tmp):
            e.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_atomic(path: str | Path, text: str) -> None:
    """Replace a text file atomically (see atomic_path)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class _KeepWriteError:
    """A file whose failed write (a full disk) is remembered: torch.save reports it only as a
    RuntimeError about zip positions."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save `obj` atomically (see atomic_path); a failed write is an OSError naming
    `path` (ENOSPC on a full disk)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        out = _KeepWriteError(f)
        try:
            torch.save(obj, out)
        except RuntimeError:
            if out.error is None:
                raise
            raise OSError(out.error.errno, out.error.strerror, str(path)) from None


def copy_atomic(src: str | Path, path: str | Path) -> None:
    """Copy a file atomically (see atomic_path): a kill mid-copy leaves no 0-byte step_*.pt."""
    with atomic_path(path) as tmp:
        shutil.copyfile(src, tmp)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the `.NAME.tmp-PID` files atomic_path leaves when a process is killed mid-write;
    only for a folder whose writer holds the run lock (no one else writes there). Returns them."""
    stale = []
    for tmp in Path(folder).glob(".*.tmp-*"):
        if tmp.is_file() and tmp.name.rsplit("-", 1)[-1] != str(os.getpid()):
            tmp.unlink(missing_ok=True)
            stale.append(tmp)
    return stale


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating tensors of a state dict holding a NaN or an infinity. One host
    sync for all of them (a checkpoint is saved or loaded, not a training step)."""
    names = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()]
    if not names:
        return []
    bad = torch.stack([~torch.isfinite(state[k]).all() for k in names]).cpu().tolist()
    return [k for k, b in zip(names, bad) if b]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and sanity-check a plaml_lab checkpoint (weights_only: no code is ever unpickled)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (.pt)")
    with open(path, "rb") as f:  # torch.save writes a zip archive: it starts with a zip header
        if f.read(4) != b"PK\x03\x04":
            raise CheckpointError(f"{path}: not a checkpoint (not a file torch.save wrote)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            problem = "holds pickled code or objects, refused (only tensors and plain data load)"
        elif isinstance(e, (EOFError, RuntimeError)) and ("zip" in text.lower() or "EOF" in text
                                                          or "central directory" in text):
            problem = "truncated or corrupt file"
        else:
            problem = f"not a readable checkpoint ({text[:120]})"
        raise CheckpointError(f"{path}: {problem}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a plaml_lab checkpoint (no '{FORMAT}' marker)")
    for key in ("config", "model", "step"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: plaml_lab checkpoint without '{key}'")
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict, path: str | Path) -> None:
    """load_state_dict(strict) with a one-line error on a shape or key mismatch, or on
    non-finite weights (a NaN loaded would only resurface as chance accuracy, or in an export)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        names = (missing or unexpected)[:3]
        what = "missing" if missing else "unexpected"
        raise CheckpointError(f"{path}: model from another configuration ({what} keys "
                              f"{', '.join(names)}{'...' if len(missing or unexpected) > 3 else ''})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{path}: model of another shape ({k}: checkpoint "
                                  f"{tuple(v.shape)}, config {tuple(own[k].shape)})")
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(f"{path}: holds non-finite weights (NaN or inf in {len(bad)} "
                              f"tensors, e.g. {bad[0]}); refused")
    model.load_state_dict(state, strict=True)


# --- RNG state as plain data -------------------------------------------------------------------

def rng_state() -> dict:
    """Every global RNG a training step may touch (drop-path uses torch's)."""
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
