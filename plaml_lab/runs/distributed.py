"""torchrun integration: process-group setup from the environment, rank helpers.

Every collective elsewhere is guarded by `dist.is_initialized()`, so a plain single-process run
(a notebook kernel, the CLI) never touches torch.distributed."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def setup(device_type: str) -> bool:
    """Initialise the default process group when launched by torchrun (WORLD_SIZE > 1).
    NCCL on CUDA, gloo otherwise. Returns True when this call created the group."""
    if env_world_size() <= 1 or is_initialized():
        return False
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def cleanup(created: bool) -> None:
    if created and is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj):
    """Rank 0's object on every rank (used to agree on resume decisions)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
