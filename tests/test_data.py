"""Tests for plaml_lab.data: shapes rendering, dataset builders, the epoch loader, transforms."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from plaml_lab.config import AugConfig, DataConfig, ShapesConfig
from plaml_lab.data import (IMAGENET_MEAN, IMAGENET_STD, SHAPE_NAMES, ArrayDataset, DatasetError, FolderDataset, build_dataset,
                            color_jitter, color_nuisance, epoch_batches, make_views, normalize, random_resized_crop,
                            render_shapes, steps_per_epoch, tone_remap)
from plaml_lab.data.datasets import SHAPES_TEST_OFFSET, SHAPES_VAL_OFFSET, SPLITS


def shapes_knobs(**over) -> ShapesConfig:
    return ShapesConfig(**over)  # the real config section: a misspelt knob is a TypeError here


def data_cfg(**over) -> DataConfig:
    return DataConfig(**{"num_train": 64, "num_val": 32, **over})


# ----------------------------------------------------------------------------- shapes
def test_shapes_deterministic_for_seed_and_index():
    a = render_shapes(torch.arange(16), seed=3)
    b = render_shapes(torch.arange(16), seed=3)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_shapes_sample_independent_of_batch_composition():
    alone = render_shapes(torch.tensor([7, 123456789012]), seed=1)
    mixed = render_shapes(torch.tensor([3, 123456789012, 99, 7, 5]), seed=1)
    for k in ("label", "mask", "box"):
        assert torch.equal(alone[k][0], mixed[k][3]) and torch.equal(alone[k][1], mixed[k][1]), k
    torch.testing.assert_close(alone["image"][0], mixed["image"][3], atol=1e-6, rtol=0)
    torch.testing.assert_close(alone["image"][1], mixed["image"][1], atol=1e-6, rtol=0)


def test_grey_palette_keeps_geometry_and_removes_colour():
    """palette='grey': the same labels, masks and boxes as the colour palette (only colours are
    drawn differently), and with no pixel noise every pixel has R = G = B."""
    idx = torch.arange(64)
    colour = render_shapes(idx, seed=2, noise=0.0)
    grey = render_shapes(idx, seed=2, noise=0.0, palette="grey", clutter=2)
    grey_no_clutter = render_shapes(idx, seed=2, noise=0.0, palette="grey")
    assert torch.equal(colour["label"], grey_no_clutter["label"])
    assert torch.equal(colour["mask"], grey_no_clutter["mask"])
    assert torch.equal(colour["box"], grey_no_clutter["box"])
    for out in (grey, grey_no_clutter):
        img = out["image"]
        assert (img[:, 0] - img[:, 1]).abs().max() < 1e-6 and (img[:, 1] - img[:, 2]).abs().max() < 1e-6
    assert (colour["image"][:, 0] - colour["image"][:, 1]).abs().max() > 0.1
    with pytest.raises(ValueError, match="palette"):
        render_shapes(idx, palette="sepia")


def test_mono_palette_gives_every_image_the_same_two_grey_levels():
    """palette='mono': the geometry of the grey palette, and with no texture, noise or
    distractors every background pixel is MONO_BG and every object pixel MONO_FG, whatever
    the image; the grey palette's levels do vary across images."""
    from plaml_lab.data.synthetic import MONO_BG, MONO_FG
    idx = torch.arange(64)
    flat = dict(seed=3, noise=0.0, texture=0.0, clutter=0)
    grey = render_shapes(idx, palette="grey", **flat)
    mono = render_shapes(idx, palette="mono", **flat)
    for key in ("label", "mask", "box"):
        assert torch.equal(grey[key], mono[key])
    img, inside = mono["image"], (mono["mask"] > 0)[:, None].expand(-1, 3, -1, -1)
    # anti-aliased edge pixels lie between the two levels; the rest sit on them exactly
    assert ((img - MONO_BG).abs() < 1e-6)[~inside].float().mean() > 0.9
    assert ((img - MONO_FG).abs() < 1e-6)[inside].float().mean() > 0.75
    bg_grey = (grey["image"] * ~inside).sum((1, 2, 3)) / (~inside).sum((1, 2, 3))
    assert bg_grey.std() > 0.1


def test_shapes_differs_across_seeds():
    a = render_shapes(torch.arange(32), seed=0)
    b = render_shapes(torch.arange(32), seed=1)
    assert (a["image"] - b["image"]).abs().mean() > 0.05
    assert not torch.equal(a["label"], b["label"])


def test_shapes_mask_and_box_shapes_match_images():
    out = render_shapes(torch.arange(8), img_size=40)
    assert out["image"].shape == (8, 3, 40, 40) and out["image"].dtype == torch.float32
    assert out["label"].shape == (8,) and out["label"].dtype == torch.int64
    assert out["mask"].shape == (8, 40, 40) and out["mask"].dtype == torch.int64
    assert out["box"].shape == (8, 4) and out["box"].dtype == torch.float32
    assert out["image"].min() >= 0 and out["image"].max() <= 1


def test_mask_is_background_or_label_plus_one():
    out = render_shapes(torch.arange(64), num_classes=12)
    for m, y in zip(out["mask"], out["label"]):
        values = set(m.unique().tolist())
        assert values == {0, int(y) + 1}


def test_box_encloses_mask():
    out = render_shapes(torch.arange(64))
    for m, (x0, y0, x1, y1) in zip(out["mask"], out["box"].tolist()):
        ys, xs = m.nonzero(as_tuple=True)
        assert xs.min() == x0 and xs.max() + 1 == x1 and ys.min() == y0 and ys.max() + 1 == y1


def test_all_classes_occur_roughly_balanced():
    labels = render_shapes(torch.arange(1200), num_classes=12, clutter=0, img_size=16)["label"]
    counts = torch.bincount(labels, minlength=12)
    assert len(SHAPE_NAMES) == 12 and counts.min() > 100 * 0.6


def test_image_sizes_64_96_224_render():
    for size in (64, 96, 224):
        out = render_shapes(torch.arange(2), img_size=size, clutter=2)
        assert out["image"].shape == (2, 3, size, size) and out["mask"].shape == (2, size, size)
        assert (out["mask"] > 0).float().mean() > 0.05  # the object scales with the image


def test_shapes_object_contrasts_with_background_without_nuisances():
    out = render_shapes(torch.arange(64), clutter=0, noise=0.0, texture=0.0, min_contrast=0.4)
    img, inside = out["image"], out["mask"] > 0
    for x, m in zip(img, inside):
        fg = x[:, m].mean(dim=1)
        bg = x[:, ~m].mean(dim=1)
        assert (fg - bg).norm() / 3 ** 0.5 > 0.35


def test_shapes_rotation_off_keeps_square_axis_aligned():
    idx = torch.arange(200)
    out = render_shapes(idx, rotation=False, clutter=0, noise=0.0, texture=0.0)
    sq = out["label"] == SHAPE_NAMES.index("square")
    box_area = (out["box"][sq, 2] - out["box"][sq, 0]) * (out["box"][sq, 3] - out["box"][sq, 1])
    mask_area = (out["mask"][sq] > 0).flatten(1).sum(1)
    assert sq.any() and torch.all(mask_area >= 0.9 * box_area)


# ----------------------------------------------------------------------------- builders
def test_shapes_train_val_test_fixed_disjoint_and_cached():
    cfg = data_cfg(num_train=40, num_val=20, num_test=10)
    train, val = build_dataset(cfg, 32, "train"), build_dataset(cfg, 32, "val")
    test = build_dataset(cfg, 32, "test")
    assert len(train) == 40 and len(val) == 20 and len(test) == 10
    assert train.has_masks and train.num_classes == 10
    assert build_dataset(cfg, 32, "val") is val  # in-process cache
    direct = render_shapes(torch.arange(SHAPES_VAL_OFFSET, SHAPES_VAL_OFFSET + 20))
    assert torch.equal(val.labels, direct["label"])
    assert (val.images.float() / 255 - direct["image"]).abs().max() <= 0.5 / 255 + 1e-6
    direct = render_shapes(torch.arange(SHAPES_TEST_OFFSET, SHAPES_TEST_OFFSET + 10))
    assert torch.equal(test.labels, direct["label"])  # its own index range: new images
    assert not torch.equal(test.images, val.images[:10])
    item = train[0]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (32, 32) and item["box"].shape == (4,)


def test_digits_three_splits_disjoint_stratified_and_fixed():
    from plaml_lab.data.datasets import _digits_8x8
    from plaml_lab.data.stratify import carve

    _, labels = _digits_8x8()
    parts = carve(labels, {"val": 0.2, "test": 0.2})
    sets = [set(parts[s].tolist()) for s in SPLITS]
    assert sum(map(len, sets)) == 1797 and len(set().union(*sets)) == 1797  # disjoint, complete
    for c in range(10):  # every class in proportion in every held-out split
        n_c = int((labels == c).sum())
        for s in ("val", "test"):
            assert int((labels[parts[s]] == c).sum()) == round(n_c * 0.2)
    cfg = data_cfg(dataset="digits", seed_data=5)
    val, test = build_dataset(cfg, 16, "val"), build_dataset(cfg, 16, "test")
    assert len(val) == len(parts["val"]) and val.num_classes == 10 and not val.has_masks
    again = build_dataset(data_cfg(dataset="digits", seed_data=9), 16, "val")
    assert torch.equal(val.images, again.images) and torch.equal(val.labels, again.labels)
    assert val.images.shape[1:] == (3, 16, 16) and len(test) == len(parts["test"])


def _write_images(folder: Path, n: int, size=(12, 10), seed=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"img{i}.png")


def test_folder_own_split_trees(tmp_path):
    for cls, n in (("cat", 3), ("dog", 2)):
        _write_images(tmp_path / "train" / cls, n)
    _write_images(tmp_path / "val" / "dog", 2)
    _write_images(tmp_path / "test" / "cat", 1)
    cfg = data_cfg(dataset="folder", root=str(tmp_path))
    train, val = build_dataset(cfg, 8, "train"), build_dataset(cfg, 8, "val")
    assert len(build_dataset(cfg, 8, "test")) == 1
    assert len(train) == 5 and len(val) == 2 and train.num_classes == 2 and not train.has_masks
    assert val[0]["label"].item() == 1 and val[0]["image"].shape == (3, 8, 8)
    assert 0 <= val[0]["image"].min() and val[0]["image"].max() <= 1


def test_folder_single_tree_split(tmp_path):
    for cls in ("a", "b", "c"):
        _write_images(tmp_path / cls, 4)
    cfg = data_cfg(dataset="folder", root=str(tmp_path), val_fraction=0.25, test_fraction=0.25)
    train, val = build_dataset(cfg, 8, "train"), build_dataset(cfg, 8, "val")
    test = build_dataset(cfg, 8, "test")
    assert len(train) == 6 and len(val) == 3 and len(test) == 3 and train.classes == ["a", "b", "c"]
    assert sorted(val.labels) == sorted(test.labels) == [0, 1, 2]  # one of each class
    assert not set(train.files) & set(val.files) and not set(test.files) & (set(train.files) | set(val.files))
    assert build_dataset(cfg, 8, "val").files == val.files


def test_folder_flat_unlabeled(tmp_path):
    _write_images(tmp_path, 5)
    cfg = data_cfg(dataset="folder", root=str(tmp_path), val_fraction=0.2)
    train = build_dataset(cfg, 8, "train")
    assert len(train) == 3 and train.num_classes == 0 and train[0]["label"].item() == -1


def test_folder_missing_root_error_names_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere"):
        build_dataset(data_cfg(dataset="folder", root=str(missing)), 8, "train")


def test_folder_empty_root_error_names_extensions(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match=r"no images found.*\.png"):
        build_dataset(data_cfg(dataset="folder", root=str(tmp_path)), 8, "train")


def test_folder_corrupt_image_skipped_with_warning(tmp_path):
    _write_images(tmp_path / "train" / "a", 3)
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"not a png")
    for held in ("val", "test"):  # own held-out trees: all four files stay in train
        _write_images(tmp_path / held / "a", 1)
    ds = build_dataset(data_cfg(dataset="folder", root=str(tmp_path)), 8, "train")
    with pytest.warns(UserWarning, match="broken.png"):
        batches = list(epoch_batches(ds, 4, seed=0, epoch=0))
    assert len(batches) == 1 and batches[0]["num_bad"] == 1 and batches[0]["image"].shape == (3, 3, 8, 8)


def test_folder_corrupt_image_error_mode_raises_naming_file(tmp_path):
    _write_images(tmp_path / "a", 1)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    ds = FolderDataset(sorted((tmp_path / "a").iterdir()), [0, 0], 8, ["a"], on_bad_image="error")
    with pytest.raises(DatasetError, match="broken.jpg"):
        [ds[i] for i in range(len(ds))]


def _write_fake_cifar(root: Path, n_per_batch: int = 4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, n_per_batch).tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def test_cifar10_fake_three_splits_disjoint_fixed_and_val_carved_from_train(tmp_path, monkeypatch):
    """test is the test batch; val a fixed, class-stratified data.val_fraction of the training
    batches; train the rest: no image in two splits, the same images on every build."""
    import torchvision.datasets.cifar as cifar

    _write_fake_cifar(tmp_path, n_per_batch=20)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)  # md5s of the real files
    cfg = data_cfg(dataset="cifar10", root=str(tmp_path), val_fraction=0.2)
    train, val, test = (build_dataset(cfg, 32, s) for s in SPLITS)
    assert len(train) + len(val) == 100 and len(test) == 20 and train.num_classes == 10
    assert 15 <= len(val) <= 25 and train.images.shape[1:] == (3, 32, 32)
    rows = [{bytes(im.flatten().tolist()) for im in ds.images} for ds in (train, val, test)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert torch.equal(build_dataset(cfg, 32, "val").images, val.images)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())["data"][0]
    assert torch.equal(test.images[0].flatten(), torch.as_tensor(raw))  # CHW order preserved
    assert build_dataset(cfg, 16, "test").images.shape == (20, 3, 16, 16)


def test_cifar10_missing_without_download_names_root_and_option(tmp_path):
    with pytest.raises(DatasetError, match=r"(?s)nocifar.*data\.download=true"):
        build_dataset(data_cfg(dataset="cifar10", root=str(tmp_path / "nocifar")), 32, "train")


def test_unknown_dataset_name_is_an_error():
    with pytest.raises(DatasetError, match="imagenet"):
        build_dataset(data_cfg(dataset="imagenet"), 32, "train")


# ----------------------------------------------------------------------------- loader
def _index_dataset(n: int) -> ArrayDataset:
    """ArrayDataset whose label is the sample index, so batches reveal their indices."""
    return ArrayDataset(torch.zeros(n, 3, 2, 2, dtype=torch.uint8), torch.arange(n), num_classes=n)


def test_steps_per_epoch_drop_last_and_error_names_sizes():
    assert steps_per_epoch(100, 8) == 12 and steps_per_epoch(100, 8, world_size=3) == 4
    with pytest.raises(ValueError, match=r"num_samples=10.*batch_size=8.*world_size=2"):
        steps_per_epoch(10, 8, world_size=2)


def test_epoch_batches_ranks_partition_epoch():
    ds = _index_dataset(103)
    per_rank = [torch.cat([b["label"] for b in epoch_batches(ds, 5, seed=1, epoch=2, rank=r, world_size=3)])
                for r in range(3)]
    assert all(len(x) == steps_per_epoch(103, 5, 3) * 5 for x in per_rank)
    everything = torch.cat(per_rank)
    assert len(everything.unique()) == len(everything) == 90  # disjoint, tail of 13 dropped


def test_epoch_batches_resume_skips_exact_batches():
    ds = _index_dataset(50)
    full = [b["label"] for b in epoch_batches(ds, 4, seed=7, epoch=1)]
    resumed = [b["label"] for b in epoch_batches(ds, 4, seed=7, epoch=1, start_step=5)]
    assert len(resumed) == len(full) - 5 and all(torch.equal(a, b) for a, b in zip(full[5:], resumed))


def test_epoch_batches_deterministic_and_reshuffled_each_epoch():
    ds = _index_dataset(40)
    e0 = torch.cat([b["label"] for b in epoch_batches(ds, 8, seed=0, epoch=0)])
    assert torch.equal(e0, torch.cat([b["label"] for b in epoch_batches(ds, 8, seed=0, epoch=0)]))
    assert not torch.equal(e0, torch.cat([b["label"] for b in epoch_batches(ds, 8, seed=0, epoch=1)]))


def test_epoch_batches_dataloader_path_matches_fast_path(tmp_path):
    class Wrapped(torch.utils.data.Dataset):  # no get_batch: forces the DataLoader path
        def __init__(self, inner):
            self.inner, self.num_classes, self.has_masks = inner, inner.num_classes, False

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, i):
            return self.inner[i]

    ds = _index_dataset(30)
    fast = [b["label"] for b in epoch_batches(ds, 4, seed=3, epoch=0, start_step=2)]
    slow = [b for b in epoch_batches(Wrapped(ds), 4, seed=3, epoch=0, start_step=2)]
    assert all(torch.equal(a, b["label"]) and b["num_bad"] == 0 for a, b in zip(fast, slow))
    assert len(fast) == len(slow) == 5


# ----------------------------------------------------------------------------- transforms
def test_random_resized_crop_full_scale_identity():
    x = torch.rand(4, 3, 16, 16)
    y = random_resized_crop(x, 16, scale=(1, 1), ratio=(1, 1), flip_p=0.0)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_random_resized_crop_flip_mirrors_width():
    x = torch.rand(2, 3, 8, 8)
    y = random_resized_crop(x, 8, scale=(1, 1), ratio=(1, 1), flip_p=1.0)
    torch.testing.assert_close(y, x.flip(-1), atol=1e-5, rtol=0)


def test_random_resized_crop_matches_crop_then_resize():
    import torch.nn.functional as F

    # interior equals interpolate on the sliced crop; in the outer half-pixel margin
    # grid_sample reads the image beyond the crop where interpolate clamps to the crop's edge
    x = torch.rand(1, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    from plaml_lab.data.transforms import _crop_boxes
    box = _crop_boxes(1, 16, 16, (0.25, 0.25), (1, 1), gen, x.device)[0]
    i, j, h, w = (int(v) for v in box)
    y = random_resized_crop(x, 16, scale=(0.25, 0.25), ratio=(1, 1), flip_p=0.0,
                            generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x[:, :, i:i + h, j:j + w], size=(16, 16), mode="bilinear", align_corners=False)
    assert h == w == 8
    torch.testing.assert_close(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_views_reproducible_with_same_generator_seed():
    aug = AugConfig(crop_scale_min=0.3, crop_scale_max=1.0, flip=True, color_jitter=0.4,
                          color_jitter_p=0.8, grayscale_p=0.2)
    x = torch.rand(6, 3, 16, 16)
    a = make_views(x, aug, 2, 12, generator=torch.Generator().manual_seed(5))
    b = make_views(x, aug, 2, 12, generator=torch.Generator().manual_seed(5))
    c = make_views(x, aug, 2, 12, generator=torch.Generator().manual_seed(6))
    assert len(a) == 2 and a[0].shape == (6, 3, 12, 12)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], c[0])


def test_color_jitter_keeps_range():
    x = torch.rand(16, 3, 8, 8)
    y = color_jitter(x, strength=0.8, p=1.0, grayscale_p=0.3, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and not torch.equal(x, y)


def test_color_jitter_zero_strength_is_identity():
    x = torch.rand(4, 3, 8, 8)
    y = color_jitter(x, strength=0.0, p=1.0, grayscale_p=0.0)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_color_nuisance_permutes_channels_and_inverts():
    """p=1 shuffling keeps each pixel's multiset of channel values (a permutation of RGB, the
    same one over the whole image); invert_p=1 gives exactly 1 - x; p=0 leaves images alone."""
    x = torch.rand(32, 3, 6, 6)
    g = torch.Generator().manual_seed(0)
    y = color_nuisance(x, shuffle_p=1.0, generator=g)
    torch.testing.assert_close(y.sort(dim=1).values, x.sort(dim=1).values, atol=0, rtol=0)
    perms = {tuple(int((y[b, c] == x[b]).all(dim=(1, 2)).nonzero()[0]) for c in range(3))
             for b in range(32)}
    assert len(perms) > 1  # random per sample, not one fixed permutation
    torch.testing.assert_close(color_nuisance(x, invert_p=1.0), 1 - x, atol=0, rtol=0)
    assert torch.equal(color_nuisance(x, 0.0, 0.0), x)


def _grey_images(levels: torch.Tensor) -> torch.Tensor:
    """(B,) grey levels -> (B, 3, 2, 2) flat grey images."""
    return levels.view(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone()


def test_tone_remap_leaves_two_views_no_shared_grey_level():
    """Two tone-remapped views of the same flat grey images: across the batch neither their
    grey levels nor their distances from mid-grey are correlated (knots 1 and 4); brightness/
    contrast jitter with negatives keeps the distance from mid-grey (a negative only mirrors
    it), the cue the pseudo labels clustered by."""
    g = torch.Generator().manual_seed(0)
    x = _grey_images(torch.rand(4000, generator=g))

    def shared(a, b):
        a, b = a[:, 0, 0, 0], b[:, 0, 0, 0]
        return max(abs(torch.corrcoef(torch.stack([u, v]))[0, 1].item())
                   for u, v in ((a, b), ((a - 0.5).abs(), (b - 0.5).abs())))

    for knots in (1, 4):
        assert shared(*(tone_remap(x, 1.0, knots, generator=g) for _ in range(2))) < 0.06, knots
    jittered = (color_nuisance(color_jitter(x, 0.8, p=1.0, grayscale_p=0.0, generator=g), 0.0, 0.5,
                               generator=g) for _ in range(2))
    assert shared(*jittered) > 0.3


def test_tone_remap_curves():
    """knots=1 is a straight line per sample (f(1/2) is the mean of f(0) and f(1)); every curve
    maps into [0, 1], keeps grey grey, and with knots=K passes through its K+1 knot values at
    i/K; p=0 leaves the images alone and p=0.5 remaps about half of them."""
    g = torch.Generator().manual_seed(1)
    ends = tone_remap(_grey_images(torch.tensor([0.0, 0.5, 1.0]).repeat(1)), 1.0, 1,
                      generator=torch.Generator().manual_seed(3))
    line = [tone_remap(_grey_images(torch.tensor([v])), 1.0, 1,
                       generator=torch.Generator().manual_seed(3))[0, 0, 0, 0] for v in (0.0, 0.5, 1.0)]
    torch.testing.assert_close(line[1], (line[0] + line[2]) / 2)
    assert ends.shape == (3, 3, 2, 2)
    x = torch.rand(64, 3, 8, 8, generator=g)
    x[:, 1:] = x[:, :1]
    y = tone_remap(x, 1.0, 5, generator=g)
    assert y.min() >= 0 and y.max() <= 1 and torch.equal(y[:, 1], y[:, 0])
    knots = torch.arange(6) / 5
    curve = [tone_remap(_grey_images(knots[i:i + 1]), 1.0, 5,
                        generator=torch.Generator().manual_seed(7))[0, 0, 0, 0] for i in range(6)]
    values = torch.rand(1, 7, generator=torch.Generator().manual_seed(7))[0, :6]
    torch.testing.assert_close(torch.stack(curve), values)
    assert torch.equal(tone_remap(x, 0.0, 4, generator=g), x)
    changed = (tone_remap(x, 0.5, 4, generator=g) != x).flatten(1).any(1).float().mean()
    assert 0.3 < changed < 0.7


def test_make_views_without_nuisance_draws_as_before():
    """Zero channel_shuffle_p / invert_p draw no random numbers, so runs from before the knobs
    existed resume with identical views."""
    base = dict(crop_scale_min=0.3, crop_scale_max=1.0, flip=True, color_jitter=0.4,
                color_jitter_p=0.8, grayscale_p=0.2)
    x = torch.rand(6, 3, 16, 16)
    a = make_views(x, AugConfig(**base), 2, 12, generator=torch.Generator().manual_seed(5))
    b = make_views(x, AugConfig(**base, channel_shuffle_p=0.0, invert_p=0.0, tone_remap_p=0.0), 2, 12,
                   generator=torch.Generator().manual_seed(5))
    c = make_views(x, AugConfig(**base, channel_shuffle_p=1.0, invert_p=0.5), 2, 12,
                   generator=torch.Generator().manual_seed(5))
    d = make_views(x, AugConfig(**base, tone_remap_p=1.0), 2, 12,
                   generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], d[0])


def test_shared_crop_views_differ_in_colour_only():
    """shared_crop: every view has the same geometry; without colour ops the views are equal,
    with channel shuffling they are channel permutations of each other."""
    base = dict(crop_scale_min=0.3, crop_scale_max=1.0, flip=True, color_jitter=0.0,
                color_jitter_p=0.8, grayscale_p=0.0, shared_crop=True)
    x = torch.rand(8, 3, 16, 16)
    a, b = make_views(x, AugConfig(**base), 2, 12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    a, b = make_views(x, AugConfig(**base, channel_shuffle_p=1.0), 2, 12,
                      generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)
    unnorm = [v * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
              for v in (a, b)]
    torch.testing.assert_close(unnorm[0].sort(dim=1).values, unnorm[1].sort(dim=1).values,
                               atol=1e-5, rtol=0)


def test_normalize_matches_torchvision():
    from torchvision.transforms.functional import normalize as tv_normalize

    x = torch.rand(2, 3, 4, 4)
    ref = tv_normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    torch.testing.assert_close(normalize(x), ref)


# ----------------------------------------------------------------------------- accelerator
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_shapes_on_cuda_match_cpu():
    idx = torch.arange(256) + 5 * SHAPES_VAL_OFFSET
    cpu, gpu = render_shapes(idx, seed=2), render_shapes(idx.cuda(), seed=2)
    assert gpu["image"].is_cuda and torch.equal(cpu["label"], gpu["label"].cpu())
    torch.testing.assert_close(gpu["image"].cpu(), cpu["image"], atol=1e-4, rtol=0)
    assert (gpu["mask"].cpu() != cpu["mask"]).float().mean() < 1e-3  # ulp-level sdf ties at edges
    assert (gpu["box"].cpu() - cpu["box"]).abs().max() <= 1


@cuda
def test_views_on_cuda_reproducible_with_cuda_generator():
    aug = AugConfig(crop_scale_min=0.3, crop_scale_max=1.0, flip=True, color_jitter=0.4,
                          color_jitter_p=0.8, grayscale_p=0.2)
    x = torch.rand(8, 3, 16, 16, device="cuda")
    a = make_views(x, aug, 2, 16, generator=torch.Generator(device="cuda").manual_seed(1))
    b = make_views(x, aug, 2, 16, generator=torch.Generator(device="cuda").manual_seed(1))
    assert a[0].is_cuda and all(torch.equal(u, v) for u, v in zip(a, b))
    y = random_resized_crop(x, 16, scale=(1, 1), ratio=(1, 1), flip_p=0.0)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


@cuda
def test_epoch_batches_deliver_on_cuda(tmp_path):
    ds = build_dataset(data_cfg(num_train=32), 32, "train")
    batch = next(epoch_batches(ds, 8, seed=0, epoch=0, device="cuda"))
    assert batch["image"].is_cuda and batch["mask"].is_cuda and batch["num_bad"] == 0


def test_a_misspelt_augmentation_key_is_refused_not_silently_off():
    """make_views reads every augmentation knob by name from an AugConfig, with no fallbacks:
    a misspelt key cannot turn an augmentation off unnoticed."""
    from plaml_lab.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="unknown config key 'data.aug.colour_jitter'"):
        load_config("experiments/configs/quick.yaml", ["data.aug.colour_jitter=0.8"])
    with pytest.raises(TypeError, match="colour_jitter"):
        AugConfig(colour_jitter=0.8)
    with pytest.raises(AttributeError, match="channel_shuffle_p"):
        make_views(torch.rand(2, 3, 8, 8), _Without("channel_shuffle_p"), 1, 8)


class _Without:
    """An AugConfig without one field (what a renamed field looks like to make_views)."""

    def __init__(self, missing: str):
        self.__dict__.update({k: v for k, v in vars(AugConfig()).items() if k != missing})
