"""Frozen-feature evaluation: feature extraction and kNN (DINO's weighted cosine kNN).

Features come from an encoder in eval mode, without gradients, in batches: the class token and
the mean of the data tokens are reported separately, because a pixel MAE's class token gets no
direct training signal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plaml_lab.data import build_dataset
from plaml_lab.data.transforms import normalize


@torch.no_grad()
def extract_features(encoder: torch.nn.Module, dataset, *, device="cpu", batch_size: int = 256,
                     max_items: int | None = None, keep_patches: bool = False,
                     progress: bool = False, desc: str = "features") -> dict[str, torch.Tensor]:
    """Run `encoder` over the first `max_items` items of `dataset`.

    Returns cls (N, D), mean (N, D) (mean-pooled data tokens), labels (N,), and with keep_patches
    patches (N, L, D); plus masks (N, H, W) / boxes (N, 4) when the dataset has them."""
    n = len(dataset) if max_items is None else min(len(dataset), max_items)
    was_training = encoder.training
    encoder.eval()
    out: dict[str, list] = {"cls": [], "mean": [], "labels": []}
    if keep_patches:
        out["patches"] = []
    fetch = getattr(dataset, "get_batch", None)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=desc, leave=False)
    for start in starts:
        idx = torch.arange(start, min(n, start + batch_size))
        if fetch is not None:
            batch = fetch(idx)
        else:
            items = [dataset[int(i)] for i in idx]
            items = [it for it in items if it is not None]
            batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
        x = normalize(batch["image"].to(device).float())
        tokens = encoder(x).float()
        out["cls"].append(tokens[:, 0].cpu())
        out["mean"].append(tokens[:, 1:].mean(1).cpu())
        out["labels"].append(torch.as_tensor(batch["label"]).cpu())
        if keep_patches:
            out["patches"].append(tokens[:, 1:].cpu())
        for key in ("mask", "box"):
            if key in batch:
                out.setdefault(key + "s", []).append(torch.as_tensor(batch[key]).cpu())
    encoder.train(was_training)
    return {k: torch.cat(v) for k, v in out.items() if v}


def knn_classify(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                 chunk: int = 1024) -> torch.Tensor:
    """DINO's weighted kNN: cosine similarity, top-k neighbours, votes exp(sim / T).
    Returns predicted labels (N_test,)."""
    num_classes = int(train_labels.max()) + 1 if num_classes is None else num_classes
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    k = min(k, train.shape[0])
    preds = []
    for start in range(0, test.shape[0], chunk):
        sim = test[start:start + chunk] @ train.t()
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes)
        votes.scatter_add_(1, train_labels[top_idx], (top_sim / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int = 20,
                 temperature: float = 0.07, num_classes: int | None = None) -> float:
    pred = knn_classify(train_feats, train_labels, test_feats, k, temperature, num_classes)
    return float((pred == test_labels).float().mean())


def eval_splits(cfg):
    """The fixed (train, held-out) datasets evaluation uses for a config's dataset."""
    return (build_dataset(cfg.data, cfg.model.img_size, "train"),
            build_dataset(cfg.data, cfg.model.img_size, "val"))


def knn_eval(encoder: torch.nn.Module, cfg, *, device="cpu", progress: bool = False) -> dict:
    """kNN top-1 on the held-out split, class token and mean-pooled data tokens."""
    train_set, val_set = eval_splits(cfg)
    e = cfg.eval
    tr = extract_features(encoder, train_set, device=device, batch_size=e.batch_size,
                          max_items=e.max_train, progress=progress, desc="features (train)")
    va = extract_features(encoder, val_set, device=device, batch_size=e.batch_size,
                          max_items=e.max_val, progress=progress, desc="features (held-out)")
    if (tr["labels"] < 0).all():
        return {}
    nc = getattr(train_set, "num_classes", None)
    return {
        "knn_top1": knn_accuracy(tr["cls"], tr["labels"], va["cls"], va["labels"], e.knn_k,
                                 e.knn_t, nc),
        "knn_top1_mean": knn_accuracy(tr["mean"], tr["labels"], va["mean"], va["labels"],
                                      e.knn_k, e.knn_t, nc),
    }


PROBES = ("knn",)


def evaluate(checkpoint=None, probes=("knn",), *, encoder: str = "student",
             random_init: bool = False, config=None, overrides=None, device="cpu",
             progress: bool = False) -> dict:
    """Evaluate a run's frozen encoder (or a random-init one of the same shape) with probes.

    checkpoint: run folder or checkpoint file (optional with random_init + config)."""
    from plaml_lab.config import ConfigError
    from plaml_lab.runs import load_run, random_init_run

    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ConfigError(f"--probes: unknown probe '{unknown[0]}'; available: {', '.join(PROBES)}")
    if checkpoint is not None:
        run = load_run(checkpoint, overrides)
        if random_init:
            run = random_init_run(run.cfg)
    else:
        run = random_init_run(config, overrides)
    enc = run.encoder(encoder).to(device)
    result = {"checkpoint": str(checkpoint) if checkpoint else None, "encoder": encoder,
              "random_init": bool(random_init), "step": run.step}
    if "knn" in probes:
        result.update(knn_eval(enc, run.cfg, device=device, progress=progress))
    return result
