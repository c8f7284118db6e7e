"""Epoch iteration with exact mid-epoch resume and DistributedSampler-style sharding.

The batch order is a pure function of (dataset length, batch_size, seed, epoch, rank,
world_size), so a run restarted at (epoch, step) sees exactly the batches it would have seen.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

_MASK64 = (1 << 64) - 1


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Full batches per rank per epoch (drop_last semantics); raises ValueError if fewer than one."""
    if batch_size < 1 or world_size < 1:
        raise ValueError(f"batch_size={batch_size}, world_size={world_size}: both must be >= 1")
    steps = num_samples // (batch_size * world_size)
    if steps < 1:
        raise ValueError(f"num_samples={num_samples} < batch_size={batch_size} x world_size={world_size}: "
                         "an epoch needs at least one full batch per rank")
    return steps


def epoch_seed(seed: int, epoch: int) -> int:
    """(seed, epoch) -> a well-mixed 64-bit generator seed (splitmix64 finaliser)."""
    z = ((seed & _MASK64) * 0x9E3779B97F4A7C15 + (epoch & _MASK64) + 0x632BE59BD9B4E019) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


def epoch_indices(num_samples: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> torch.Tensor:
    """This rank's sample indices for one epoch, (steps, batch_size) int64.

    randperm from a CPU generator seeded with (seed, epoch) -> keep the first
    steps * batch_size * world_size -> perm[rank::world_size] -> rows of batch_size.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    steps = steps_per_epoch(num_samples, batch_size, world_size)
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    perm = torch.randperm(num_samples, generator=gen)[: steps * batch_size * world_size]
    return perm[rank::world_size].view(steps, batch_size)


def collate_drop_none(items: list) -> dict:
    """Stack item dicts, dropping None (unreadable images); adds ``num_bad`` (int).
    A batch where every image was bad has image (0,) and label (0,)."""
    kept = [x for x in items if x is not None]
    num_bad = len(items) - len(kept)
    if kept:
        batch = default_collate(kept)
    else:
        batch = {"image": torch.empty(0), "label": torch.empty(0, dtype=torch.int64)}
    batch["num_bad"] = num_bad
    return batch


def _to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


def get_items(dataset, idx) -> dict[str, torch.Tensor]:
    """Items `idx` of a dataset as one batch dict (image (B, 3, H, W) float, label (B,), and
    mask / box when the dataset has them): ArrayDataset's get_batch fast path, else the items
    stacked (unreadable items, None, left out)."""
    idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
    if hasattr(dataset, "get_batch"):
        batch = dataset.get_batch(idx)
    else:
        items = [it for it in (dataset[int(i)] for i in idx) if it is not None]
        batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
    return {**batch, "image": batch["image"].float(), "label": torch.as_tensor(batch["label"])}


def epoch_batches(dataset: Dataset, batch_size: int, *, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1, start_step: int = 0, num_workers: int = 0,
                  device="cpu") -> Iterator[dict]:
    """Yield this rank's batches of one epoch, from batch ``start_step`` on.

    Each batch: image float32 (B, 3, H, W) in [0, 1] on ``device``, label (B,) int64,
    [mask (B, H, W) int64, box (B, 4)], num_bad (int, images dropped as unreadable).
    Skipped batches are never loaded.  ArrayDataset (anything with ``get_batch``) is indexed
    directly; other datasets go through a DataLoader with ``num_workers`` workers.
    """
    device = torch.device(device)
    batches = epoch_indices(len(dataset), batch_size, seed=seed, epoch=epoch, rank=rank,
                            world_size=world_size)[start_step:]
    if len(batches) == 0:
        return
    if hasattr(dataset, "get_batch"):
        for idx in batches:
            batch = dataset.get_batch(idx)
            batch["num_bad"] = 0
            yield _to_device(batch, device)
        return
    loader = DataLoader(Subset(dataset, batches.reshape(-1).tolist()), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate_drop_none,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    size = getattr(dataset, "img_size", None)
    for batch in loader:
        if batch["image"].dim() == 1 and size is not None:  # every image of the batch was unreadable
            batch["image"] = batch["image"].view(0, 3, size, size)
        yield _to_device(batch, device)
