"""Fixed-seed, class-stratified index sets: the val / test splits carved from a training pool,
and the probe subsets (eval.max_train, eval.max_val, clusters, dense probes).

A folder dataset lists its files class by class, so "the first N items" of it is one or two
classes; every subset here keeps each class in proportion instead, and depends only on the
labels and a fixed seed (never on the run's seed).
"""
from __future__ import annotations

import torch

SPLIT_SEED = 0  # carved val / test splits: fixed so held-out sets never move
PROBE_SEED = 0  # probe subsets: the same images for every run and every variant


def dataset_labels(dataset) -> torch.Tensor | None:
    """A dataset's labels (N,) int64 without loading its images, or None when it keeps none."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    return torch.as_tensor(labels, dtype=torch.int64).reshape(-1)


def stratified_order(labels: torch.Tensor, seed: int = PROBE_SEED) -> torch.Tensor:
    """A permutation of range(N) whose every prefix holds each class (label value, -1
    included) in proportion to its share of `labels`, up to one item per class.

    Each class's items are shuffled by a generator seeded `seed`; the j-th of a class of n_c
    items gets the position (j + 0.5) / n_c, and the permutation sorts by that position (ties:
    lower label first), so the first n items take about n * n_c / N of each class."""
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    gen = torch.Generator().manual_seed(seed)
    keys = torch.empty(len(labels), dtype=torch.float64)
    for c in torch.unique(labels).tolist():  # sorted: the same shuffles for the same labels
        idx = torch.nonzero(labels == c).flatten()
        perm = idx[torch.randperm(len(idx), generator=gen)]
        keys[perm] = (torch.arange(len(idx), dtype=torch.float64) + 0.5) / len(idx)
    # stable sort on (position, label): label breaks ties between classes of equal size
    order = torch.argsort(labels.double(), stable=True)
    return order[torch.argsort(keys[order], stable=True)]


def probe_indices(dataset, max_items: int | None, seed: int = PROBE_SEED,
                  prefix: bool = False) -> torch.Tensor:
    """The items a probe reads from `dataset`: the first `max_items` of `stratified_order` (a
    fixed-seed permutation when the dataset keeps no labels); all items in order when
    `max_items` covers the dataset, unless `prefix` (a caller that reads only a prefix of the
    result, which must be stratified as well)."""
    n = len(dataset)
    take = n if max_items is None else min(n, max_items)
    if take == n and not prefix:
        return torch.arange(n)
    labels = dataset_labels(dataset)
    if labels is None:
        labels = torch.zeros(n, dtype=torch.int64)
    return stratified_order(labels, seed)[:take]


def carve(labels: torch.Tensor, fractions: dict[str, float],
          seed: int = SPLIT_SEED) -> dict[str, torch.Tensor]:
    """Split range(N) into "train" plus one held-out set per entry of `fractions` (name ->
    fraction of each class), stratified by class and fixed by `seed`.

    Per class of n_c items: a seeded shuffle, then round(n_c * fraction) items for each
    held-out set in the order given, the rest to train (at least one per class stays in
    train). Returns sorted int64 index tensors, keys "train" and those of `fractions`."""
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    for name, f in fractions.items():
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name} fraction {f}: must be in [0, 1)")
    if sum(fractions.values()) >= 1.0:
        raise ValueError(f"held-out fractions {fractions} leave nothing to train on")
    gen = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {"train": [], **{k: [] for k in fractions}}
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        start = 0
        for name, f in fractions.items():
            take = min(round(len(idx) * f), max(0, len(idx) - 1 - start))
            parts[name].append(idx[start:start + take])
            start += take
        parts["train"].append(idx[start:])
    return {k: torch.sort(torch.cat(v)).values if v else torch.empty(0, dtype=torch.int64)
            for k, v in parts.items()}


__all__ = ["PROBE_SEED", "SPLIT_SEED", "carve", "dataset_labels", "probe_indices",
           "stratified_order"]
