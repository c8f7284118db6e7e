"""Tests for the three fixed splits and the probe subsets: `plaml-lab eval --split val|test` on
shapes, an image folder and CIFAR-10 (a fake tiny copy through torchvision's loader), and
stratified, fixed-seed probe subsets on a folder whose files are listed class by class."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from plaml_lab.cli import main as cli_main
from plaml_lab.config import DataConfig
from plaml_lab.data import build_dataset, probe_indices, stratified_order
from plaml_lab.evaluate import extract_features

QUICK = "experiments/configs/quick.yaml"
TINY = ["run.progress=false", "run.num_threads=1", "run.precision=fp32", "data.num_train=64",
        "data.num_val=32", "data.num_test=32", "eval.max_train=64", "eval.max_val=32"]


def _class_sorted_folder(root: Path, counts: dict[str, int], size: int = 6) -> None:
    """root/<class>/imgNN.png, tiny random PNGs: a folder lists its files class by class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                root / name / f"img{i:02d}.png")


def _fake_cifar(root: Path, n_per_batch: int = 12) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "labels": (np.arange(n_per_batch) % 10).tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


class _MeanEncoder(torch.nn.Module):
    """(B, 3, H, W) -> (B, 2, 3) tokens: the channel means as class token and one data token."""

    def forward(self, x):
        m = x.mean((2, 3))
        return torch.stack([m, m], 1)


def test_stratified_order_every_prefix_holds_each_class_in_proportion():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)  # class-sorted, as a folder lists
    order = stratified_order(labels)
    assert sorted(order.tolist()) == list(range(100))
    for n in (1, 7, 10, 33, 64, 100):
        counts = Counter(labels[order[:n]].tolist())
        for c, share in ((0, 0.5), (1, 0.3), (2, 0.2)):
            assert abs(counts.get(c, 0) - n * share) <= 1, (n, c, counts)
    assert torch.equal(order, stratified_order(labels))  # fixed seed


def test_probe_subsets_on_a_class_sorted_folder_hold_every_class_in_proportion(tmp_path):
    """eval.max_train / max_val, the clusters probe and the dense probes' prefix read a
    stratified sample, not the first N files (the first 20 here would be class a only)."""
    _class_sorted_folder(tmp_path, {"a": 20, "b": 20, "c": 20, "d": 20})
    cfg = DataConfig(dataset="folder", root=str(tmp_path), val_fraction=0.1, test_fraction=0.1)
    train = build_dataset(cfg, 8, "train")
    assert train.labels == sorted(train.labels)  # listed class by class
    feats = extract_features(_MeanEncoder(), train, max_items=20, keep_patches=True,
                             patch_items=8, batch_size=6)
    assert Counter(feats["labels"].tolist()) == {0: 5, 1: 5, 2: 5, 3: 5}
    assert Counter(feats["labels"][:8].tolist()) == {0: 2, 1: 2, 2: 2, 3: 2}  # dense prefix
    assert feats["patches"].shape[0] == 8
    assert torch.equal(torch.as_tensor(train.labels)[feats["index"]], feats["labels"])
    assert torch.equal(probe_indices(train, 20), feats["index"])  # the same images every time


@pytest.mark.parametrize("dataset", ["shapes", "folder", "cifar10"])
def test_eval_cli_scores_val_or_test_and_names_the_split(dataset, tmp_path, monkeypatch, capsys):
    extra = []
    if dataset == "folder":
        _class_sorted_folder(tmp_path / "imgs", {"a": 30, "b": 30})
        extra = ["data.dataset=folder", f"data.root={tmp_path / 'imgs'}"]
    elif dataset == "cifar10":
        import torchvision.datasets.cifar as cifar

        _fake_cifar(tmp_path / "cifar")
        monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)  # real md5s
        extra = ["data.dataset=cifar10", f"data.root={tmp_path / 'cifar'}", "data.val_fraction=0.2"]
    out = {}
    for split in ("val", "test"):
        code = cli_main(["eval", "--random-init", "--config", QUICK, "--probes", "knn",
                         "--split", split, "--no-progress", *TINY, *extra])
        assert code == 0
        out[split] = json.loads(capsys.readouterr().out)
    assert out["val"]["split"] == "val" and out["test"]["split"] == "test"
    assert out["val"]["dataset"] == dataset and 0 <= out["test"]["knn_top1"] <= 1
    with pytest.raises(SystemExit) as bad:  # argparse's one-line error, exit 2
        cli_main(["eval", "--random-init", "--config", QUICK, "--split", "train"])
    assert bad.value.code == 2


def test_training_time_knn_scores_the_val_split_and_says_so(tmp_path):
    from plaml_lab.evaluate import evaluate
    from plaml_lab.train import pretrain

    summary = pretrain(QUICK, tmp_path / "run", [*TINY, "run.max_steps=2", "optim.batch_size=16"])
    assert summary["knn_split"] == "val"
    val = evaluate(tmp_path / "run", ["knn"], split="val")
    test = evaluate(tmp_path / "run", ["knn"], split="test")
    assert summary["knn_top1"] == pytest.approx(val["knn_top1"])
    assert test["split"] == "test" and val["split"] == "val"
