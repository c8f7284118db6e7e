"""Frozen-feature evaluation: feature extraction, DINO's weighted kNN, and `evaluate`, which runs
the probes of probes.py on a run's student encoder or one of its teachers (or on a random-init
encoder of the same shape, the baseline every table needs).

Features come from an encoder in eval mode, without gradients, in batches: the class token and
the mean of the data tokens are reported separately, because a pixel MAE's class token gets no
direct training signal. Probes score the dataset's fixed `val` split (for choosing settings,
and the training-time kNN) or its `test` split (for reporting), never both for one choice
(docs/evaluation.md). Every capped subset is a fixed-seed sample stratified by class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from plaml_lab import probes as probes_lib
from plaml_lab.config import PROBES, ConfigError
from plaml_lab.data import SPLITS, build_dataset, get_items, probe_indices
from plaml_lab.data.transforms import normalize
from plaml_lab.runs import load_run, random_init_run
from plaml_lab.method.rules import variant_name


@torch.no_grad()
def extract_features(encoder: torch.nn.Module, dataset, *, device="cpu", batch_size: int = 256,
                     max_items: int | None = None, keep_patches: bool = False,
                     patch_items: int | None = None, progress: bool = False,
                     desc: str = "features") -> dict[str, torch.Tensor]:
    """Run `encoder` over `max_items` items of `dataset`: all of them when they fit, else a
    fixed-seed sample stratified by class (data.probe_indices; a folder lists its files class by
    class, so the first N would be one or two classes).

    Returns index (N,) (the items read, in order), cls (N, D), mean (N, D) (mean-pooled data
    tokens), labels (N,), and with keep_patches patches (P, L, D) for the first P = min(N,
    patch_items) items (all N when patch_items is None: data tokens are L times bigger than class
    tokens, so dense probes keep fewer; every prefix of the sample is stratified too); plus
    masks (N, H, W) / boxes (N, 4) when the dataset has them."""
    n_all = len(dataset) if max_items is None else min(len(dataset), max_items)
    # the dense prefix must be a stratified sample too, not the first items in file order
    index = probe_indices(dataset, max_items, prefix=keep_patches and patch_items is not None
                          and patch_items < n_all)
    n = len(index)
    was_training = encoder.training
    encoder.eval()
    out: dict[str, list] = {"index": [index], "cls": [], "mean": [], "labels": []}
    if keep_patches:
        out["patches"] = []
    starts = range(0, n, batch_size)
    if progress:
        starts = tqdm(starts, desc=desc, leave=False)
    for start in starts:
        batch = get_items(dataset, index[start:start + batch_size])
        x = normalize(batch["image"].to(device))
        tokens = encoder(x).float()
        out["cls"].append(tokens[:, 0].cpu())
        out["mean"].append(tokens[:, 1:].mean(1).cpu())
        out["labels"].append(torch.as_tensor(batch["label"]).cpu())
        if keep_patches and (patch_items is None or start < patch_items):
            stop = None if patch_items is None else patch_items - start
            out["patches"].append(tokens[:stop, 1:].cpu())
        for key, plural in (("mask", "masks"), ("box", "boxes")):
            if key in batch:
                out.setdefault(plural, []).append(torch.as_tensor(batch[key]).cpu())
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


def eval_splits(cfg, split: str = "val"):
    """The fixed (train, held-out) datasets evaluation uses for a config's dataset: the held-out
    one is `split`, val (choosing) or test (reporting)."""
    if split not in SPLITS[1:]:
        raise ConfigError(f"--split {split}: choose val or test")
    return (build_dataset(cfg.data, cfg.model.img_size, "train"),
            build_dataset(cfg.data, cfg.model.img_size, split))


def knn_eval(encoder: torch.nn.Module, cfg, *, device="cpu", progress: bool = False,
             split: str = "val") -> dict:
    """kNN top-1 on the held-out `split` (val during training), class token and mean-pooled
    data tokens."""
    train_set, val_set = eval_splits(cfg, split)
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


# --------------------------------------------------------------------------------------------
# evaluate: every probe on one encoder

DENSE_MAX_TRAIN = 1000  # images whose data tokens train the seg / box probes (L tokens each)


def _not_applicable(notes: dict, probe: str, why: str) -> None:
    notes[probe] = f"not applicable: {why}"


def _pseudo_label_assignments(run, dataset, *, device, e, progress: bool
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The labelling teacher's class-token pseudo labels on eval.max_val items of `dataset`
    (the stratified sample of extract_features), as training forms them (PLAML.pseudo_labels:
    centred or Sinkhorn targets' argmax). Returns (assignments (N,), labels (N,), the items'
    indices (N,))."""
    teacher = run.model.labelling_teacher
    feats = extract_features(teacher.encoder.to(device), dataset, device=device,
                             batch_size=e.batch_size, max_items=e.max_val, progress=progress,
                             desc="labelling teacher (held-out)")
    head = teacher.heads["cls"].to(device)
    with torch.no_grad():
        scores = torch.cat([head(c.to(device)).float().cpu()
                            for c in feats["cls"].split(e.batch_size)])
    return run.model.pseudo_labels(scores, "cls"), feats["labels"], feats["index"]


def run_probes(enc: torch.nn.Module, run, probes, *, device="cpu", progress: bool = False,
               dense_max_train: int = DENSE_MAX_TRAIN, split: str = "val") -> dict:
    """Run `probes` on the frozen encoder `enc` (a module of `run`, or of a random-init run),
    scored on the held-out `split` (val or test): returns the metrics, the split, and a
    `notes` dict saying why a probe was not applicable."""
    cfg = run.cfg
    e = cfg.eval
    train_set, val_set = eval_splits(cfg, split)
    notes: dict[str, str] = {}
    result: dict = {"dataset": cfg.data.dataset, "split": split}
    num_classes = int(getattr(train_set, "num_classes", 0) or 0)
    has_masks = bool(getattr(train_set, "has_masks", False))
    labelled = num_classes > 0

    want_global = [p for p in ("knn", "linear") if p in probes]
    want_dense = [p for p in ("seg", "box") if p in probes]
    if want_dense and not has_masks:
        for p in want_dense:
            _not_applicable(notes, p, f"data.dataset={cfg.data.dataset} has no masks/boxes")
        want_dense = []
    if want_global and not labelled:
        for p in want_global:
            _not_applicable(notes, p, f"data.dataset={cfg.data.dataset} has no labels")
        want_global = []

    tr = va = None
    if want_global or want_dense:
        n_train = e.max_train if want_global else min(e.max_train, dense_max_train)
        tr = extract_features(enc, train_set, device=device, batch_size=e.batch_size,
                              max_items=n_train, keep_patches=bool(want_dense),
                              patch_items=dense_max_train, progress=progress,
                              desc="features (train)")
        va = extract_features(enc, val_set, device=device, batch_size=e.batch_size,
                              max_items=e.max_val, keep_patches=bool(want_dense),
                              progress=progress, desc="features (held-out)")
        result.update(num_train=int(tr["cls"].shape[0]), num_val=int(va["cls"].shape[0]))

    if "knn" in want_global:
        for key, suffix in (("cls", ""), ("mean", "_mean")):
            result["knn_top1" + suffix] = knn_accuracy(tr[key], tr["labels"], va[key],
                                                       va["labels"], e.knn_k, e.knn_t,
                                                       num_classes)
    if "linear" in want_global:
        for key, suffix in (("cls", ""), ("mean", "_mean")):
            result["linear_top1" + suffix] = probes_lib.linear_probe_accuracy(
                tr[key], tr["labels"], va[key], va["labels"], num_classes)
    if want_dense:
        n_dense = tr["patches"].shape[0]
        result["num_train_dense"] = n_dense
        patch_size = cfg.model.patch_size
        if "seg" in want_dense:
            result.update(probes_lib.seg_probe(tr["patches"], tr["masks"][:n_dense],
                                               va["patches"], va["masks"], patch_size,
                                               num_classes + 1))
        if "box" in want_dense:
            result.update(probes_lib.box_probe(tr["patches"], tr["masks"][:n_dense],
                                               va["patches"], va["boxes"], patch_size))

    if "clusters" in probes:
        teacher = run.model.labelling_teacher
        if teacher is None or teacher.heads is None or "cls" not in teacher.heads:
            _not_applicable(notes, "clusters", "no class-token pseudo labels in this run "
                            f"(method.pseudo_labels={cfg.method.pseudo_labels})")
        else:
            assign, labels, index = _pseudo_label_assignments(run, val_set, device=device,
                                                              e=e, progress=progress)
            labels = labels if labelled else None
            result.update(probes_lib.cluster_metrics(assign, labels, cfg.pl.num_prototypes))
            if has_masks:  # what else the pseudo labels follow: NMI per nuisance factor
                factors = probes_lib.nuisance_factors(val_set.images[index],
                                                      val_set.masks[index])
                result["nmi_nuisance"] = {name: probes_lib.nmi_ari(assign, f)["nmi"]
                                          for name, f in factors.items()}
            if labels is None:
                notes["clusters"] = "no labels: NMI / ARI left out"
    if notes:
        result["notes"] = notes
    return result


def evaluate(checkpoint=None, probes=PROBES, *, encoder: str = "student",
             random_init: bool = False, config=None, overrides=None, device="cpu",
             progress: bool = False, split: str = "val") -> dict:
    """Evaluate a run's frozen encoder (or a random-init one of the same shape) with probes.

    checkpoint: run folder or checkpoint file (optional with random_init + config).
    probes: any of PROBES. encoder: student | labelling | reconstruction. The clusters probe
    always uses the labelling teacher (its pseudo labels); with random_init, that of the
    random-init model. split: the held-out split the probes score, val (for choosing
    settings) or test (for reporting). Returns one flat dict of metrics (with `split`) plus
    `notes` for skipped probes."""

    probes = [probes] if isinstance(probes, str) else list(probes)
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ConfigError(f"--probes: unknown probe '{unknown[0]}'; available: {', '.join(PROBES)}")
    if encoder not in ("student", "labelling", "reconstruction"):
        raise ConfigError(f"--encoder {encoder}: choose student, labelling or reconstruction")
    if split not in SPLITS[1:]:
        raise ConfigError(f"--split {split}: choose val or test")
    if checkpoint is not None:
        run = load_run(checkpoint, overrides)
        if random_init:
            run = random_init_run(run.cfg)
    else:
        if not random_init:
            raise ConfigError("--checkpoint: required (or --random-init with --config)")
        run = random_init_run(config, overrides)
    device = torch.device(device)
    run.model.to(device)
    enc = run.encoder(encoder)
    result = {"checkpoint": str(checkpoint) if checkpoint else None, "encoder": encoder,
              "random_init": bool(random_init), "step": 0 if random_init else run.step,
              "variant": variant_name(run.cfg), "probes": probes}
    with probes_lib.num_threads(run.cfg.run.num_threads):  # run.num_threads, as pretrain
        result.update(run_probes(enc, run, probes, device=device, progress=progress,
                                 split=split))
    return result

