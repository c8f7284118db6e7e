"""Datasets: the embedded `shapes`, sklearn `digits`, CIFAR-10 and image folders.

Every dataset returns per item a dict ``image`` float32 (3, H, W) in [0, 1] and ``label`` int64
scalar (-1 when unlabeled), plus ``mask`` (H, W) int64 and ``box`` (4,) float32 for `shapes`,
and exposes ``num_classes`` (0 when unlabeled) and ``has_masks``.  Every dataset has three
disjoint splits, train / val / test (SPLITS): val for choosing settings, test for reporting.
Held-out splits are fixed: they never depend on ``seed_data`` or on the training seed.
"""
from __future__ import annotations

import functools
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from plaml_lab.errors import DatasetError

from .stratify import carve
from .synthetic import render_shapes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SPLITS = ("train", "val", "test")
SHAPES_VAL_OFFSET = 10**9  # shapes val indices start here: disjoint from any train size in use
SHAPES_TEST_OFFSET = 2 * 10**9  # and test here (the generator takes indices below 2**32)
_SHAPES_CHUNK_PIXELS = 2048 * 32 * 32  # images per render call scale with 1 / (H W)
_SHAPES_CACHE_SIZE = 4
_shapes_cache: OrderedDict[tuple, "ArrayDataset"] = OrderedDict()


class ArrayDataset(Dataset):
    """In-memory dataset.

    images uint8 (N, 3, H, W); labels int64 (N,) (-1 = unlabeled); optional masks (N, H, W)
    int64/uint8 and boxes (N, 4) float xyxy pixels.  ``get_batch`` is the loader's fast path.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None = None,
                 boxes: torch.Tensor | None = None, num_classes: int | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.masks = masks
        self.boxes = None if boxes is None else boxes.to(torch.float32)
        if num_classes is None:
            num_classes = int(self.labels.max()) + 1 if len(self.labels) and self.labels.min() >= 0 else 0
        self.num_classes = int(num_classes)
        self.has_masks = masks is not None and boxes is not None

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        out = {"image": self.images[i].float().div_(255.0), "label": self.labels[i]}
        if self.has_masks:
            out["mask"] = self.masks[i].long()
            out["box"] = self.boxes[i]
        return out

    def get_batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """idx (B,) int64 -> dict image (B, 3, H, W) float32 in [0, 1], label (B,)[, mask (B, H, W), box (B, 4)]."""
        idx = idx.to(self.images.device)
        out = {"image": self.images[idx].float().div_(255.0), "label": self.labels[idx]}
        if self.has_masks:
            out["mask"] = self.masks[idx].long()
            out["box"] = self.boxes[idx]
        return out


class FolderDataset(Dataset):
    """Images loaded lazily with PIL: RGB, short side resized to img_size, centre crop.

    files: image paths; labels: one int per file (-1 = unlabeled); classes: class names
    (index = label).  A corrupt file raises DatasetError (on_bad_image="error") or warns once
    and yields None (on_bad_image="skip"; the loader's collate drops it and counts it).
    """

    def __init__(self, files: list[Path], labels: list[int], img_size: int, classes: list[str],
                 on_bad_image: str = "skip"):
        if on_bad_image not in ("skip", "error"):
            raise ValueError(f"on_bad_image={on_bad_image!r}: choose 'skip' or 'error'")
        self.files = [Path(f) for f in files]
        self.labels = list(labels)
        self.img_size = int(img_size)
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.has_masks = False
        self.on_bad_image = on_bad_image
        self._warned: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor] | None:
        path = self.files[i]
        try:
            image = _load_image(path, self.img_size)
        except Exception as exc:  # PIL raises several types for truncated / non-image files
            if self.on_bad_image == "error":
                raise DatasetError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
            if path not in self._warned:
                self._warned.add(path)
                warnings.warn(f"{path}: skipping unreadable image ({type(exc).__name__}: {exc})",
                              stacklevel=2)
            return None
        return {"image": image, "label": torch.tensor(self.labels[i], dtype=torch.int64)}

    def check_readable(self, tries: int = 32) -> None:
        """Read up to `tries` files spread over the set; DatasetError naming them when none
        reads. Skipping a few bad files is what on_bad_image=skip is for; a folder of them
        would only train on empty batches."""
        if not self.files:
            return
        step = max(1, len(self.files) // tries)
        tried = self.files[::step][:tries]
        for path in tried:
            try:
                _load_image(path, self.img_size)
                return
            except Exception:  # noqa: BLE001 - PIL raises several types for bad files
                continue
        names = ", ".join(p.name for p in tried[:3]) + (", ..." if len(tried) > 3 else "")
        raise DatasetError(f"{_common_folder(tried)}: none of {len(tried)} images tried could be "
                           f"read as an image ({names})")


def _common_folder(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def not_images(folder: Path, most: int = 3) -> str:
    """', not read as images: a.txt, b.doc (+N more)' for the files under `folder` without an
    image extension, '' when there are none: what a user expected to be read is named."""
    other = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")
                   and f.suffix.lower() not in IMAGE_EXTENSIONS)
    if not other:
        return ""
    more = f" (+{len(other) - most} more)" if len(other) > most else ""
    return f"; not read as images: {', '.join(f.name for f in other[:most])}{more}"


def _load_image(path: Path, img_size: int) -> torch.Tensor:
    """path -> float32 (3, img_size, img_size) in [0, 1]."""

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = img_size / min(w, h)
        nw, nh = max(img_size, round(w * scale)), max(img_size, round(h * scale))
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - img_size) // 2, (nh - img_size) // 2
        im = im.crop((left, top, left + img_size, top + img_size))
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return data.view(img_size, img_size, 3).permute(2, 0, 1).float().div_(255.0)


# ----------------------------------------------------------------------------- builders
def build_dataset(data_cfg, img_size: int, split: str) -> Dataset:
    """Build the train, val or test split of ``data_cfg.dataset`` (shapes|digits|cifar10|folder)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose {', '.join(SPLITS)}")
    name = data_cfg.dataset
    if name == "shapes":
        return _build_shapes(data_cfg, img_size, split)
    if name == "digits":
        return _build_digits(data_cfg, img_size, split)
    if name == "cifar10":
        return _build_cifar10(data_cfg, img_size, split)
    if name == "folder":
        return _build_folder(data_cfg, img_size, split)
    raise DatasetError(f"data.dataset={name!r}: unknown dataset (choose shapes, digits, cifar10, folder)")


def shapes_indices(data_cfg, split: str) -> torch.Tensor:
    """The fixed sample indices of a shapes split: train [0, num_train), val [1e9, 1e9 +
    num_val), test [2e9, 2e9 + num_test): three disjoint ranges of the generator's index."""
    if split == "train":
        if int(data_cfg.num_train) > SHAPES_VAL_OFFSET:
            raise ValueError(f"data.num_train={data_cfg.num_train} exceeds the train index range")
        return torch.arange(int(data_cfg.num_train), dtype=torch.int64)
    offset, key = ((SHAPES_VAL_OFFSET, "num_val") if split == "val"
                   else (SHAPES_TEST_OFFSET, "num_test"))
    n = int(getattr(data_cfg, key))
    if n > SHAPES_VAL_OFFSET:
        raise ValueError(f"data.{key}={n} exceeds the {split} index range")
    return torch.arange(offset, offset + n, dtype=torch.int64)


def _shapes_knobs(shapes_cfg) -> dict:
    names = ("num_classes", "size_min", "size_max", "min_contrast", "clutter", "noise", "texture",
             "rotation", "jitter", "palette")
    return {n: getattr(shapes_cfg, n) for n in names}


def _build_shapes(data_cfg, img_size: int, split: str) -> ArrayDataset:
    knobs = _shapes_knobs(data_cfg.shapes)
    indices = shapes_indices(data_cfg, split)
    key = (int(data_cfg.seed_data), int(img_size), split, len(indices), tuple(sorted(knobs.items())))
    if key in _shapes_cache:
        _shapes_cache.move_to_end(key)
        return _shapes_cache[key]
    ds = generate_shapes(indices, int(data_cfg.seed_data), img_size, **knobs)
    _shapes_cache[key] = ds
    while len(_shapes_cache) > _SHAPES_CACHE_SIZE:
        _shapes_cache.popitem(last=False)
    return ds


def clear_shapes_cache() -> None:
    """Free the in-process cache of generated shapes datasets."""
    _shapes_cache.clear()


def generate_shapes(indices: torch.Tensor, seed: int, img_size: int, **knobs) -> ArrayDataset:
    """Render shapes samples in chunks into an ArrayDataset (uint8 images, masks, boxes)."""

    n = len(indices)
    chunk = max(1, _SHAPES_CHUNK_PIXELS // (img_size * img_size))
    images = torch.empty(n, 3, img_size, img_size, dtype=torch.uint8)
    masks = torch.empty(n, img_size, img_size, dtype=torch.uint8)  # uint8: labels + 1 <= 12
    labels = torch.empty(n, dtype=torch.int64)
    boxes = torch.empty(n, 4, dtype=torch.float32)
    # delay: the bar only appears when generation takes more than a couple of seconds
    for start in tqdm(range(0, n, chunk), desc=f"shapes {img_size}px", unit="chunk", delay=2.0,
                      leave=False):
        out = render_shapes(indices[start:start + chunk], seed, img_size, **knobs)
        end = start + out["label"].shape[0]
        images[start:end] = out["image"].mul_(255.0).round_()
        masks[start:end] = out["mask"]
        labels[start:end] = out["label"]
        boxes[start:end] = out["box"]
    return ArrayDataset(images, labels, masks, boxes, num_classes=knobs.get("num_classes", 10))


def _carved(labels, data_cfg, split: str, held: tuple[str, ...] = ("val", "test"),
            where: str = "the dataset") -> torch.Tensor:
    """Indices of `split` in a pool that `held` splits are carved from: data.val_fraction /
    data.test_fraction of each class, fixed seed (stratify.carve). An empty carved split is a
    DatasetError naming the key to raise."""
    fractions = {h: float(getattr(data_cfg, f"{h}_fraction")) for h in held}
    try:
        parts = carve(labels, fractions)
    except ValueError as exc:
        raise DatasetError(f"data.val_fraction / data.test_fraction: {exc}") from None
    if split in held and len(parts[split]) == 0:
        raise DatasetError(f"{where}: data.{split}_fraction={fractions[split]} leaves the "
                           f"{split} split empty; raise it")
    return parts[split]


def _resize_uint8(images: torch.Tensor, img_size: int) -> torch.Tensor:
    """uint8 (N, 3, h, w) -> uint8 (N, 3, img_size, img_size), bilinear (antialiased when shrinking)."""
    if images.shape[-1] == img_size and images.shape[-2] == img_size:
        return images
    out = torch.empty(images.shape[0], 3, img_size, img_size, dtype=torch.uint8)
    chunk = max(1, _SHAPES_CHUNK_PIXELS // (img_size * img_size))
    for s in range(0, images.shape[0], chunk):
        x = images[s:s + chunk].float()
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False,
                          antialias=img_size < images.shape[-1])
        out[s:s + chunk] = x.clamp_(0, 255).round_()
    return out


@functools.lru_cache(maxsize=1)
def _digits_8x8() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's digits as uint8 (1797, 3, 8, 8) and int64 labels; parsed once per process."""
    from sklearn.datasets import load_digits  # seconds to import: only the digits dataset pays

    digits = load_digits()
    grey = torch.as_tensor(digits.images, dtype=torch.float32) * (255.0 / 16.0)  # values 0..16
    images = grey.round().to(torch.uint8)[:, None].expand(-1, 3, -1, -1).contiguous()
    return images, torch.as_tensor(digits.target, dtype=torch.int64)


def _build_digits(data_cfg, img_size: int, split: str) -> ArrayDataset:
    images, labels = _digits_8x8()
    keep = _carved(labels, data_cfg, split, where="digits")
    return ArrayDataset(_resize_uint8(images[keep], img_size), labels[keep], num_classes=10)


def _build_cifar10(data_cfg, img_size: int, split: str) -> ArrayDataset:
    import torchvision  # seconds to import: only CIFAR-10 pays

    root = Path(data_cfg.root).expanduser()
    try:  # test: the official 10,000 test images; val: carved from the 50,000 training images
        ds = torchvision.datasets.CIFAR10(str(root), train=(split != "test"),
                                          download=bool(data_cfg.download))
    except (RuntimeError, OSError) as exc:  # OSError: a download without network
        if data_cfg.download:
            raise DatasetError(f"{root}: could not download CIFAR-10 ({type(exc).__name__}: {exc})") from exc
        raise DatasetError(f"{root}: CIFAR-10 not found or corrupted (expected {root / 'cifar-10-batches-py'}); "
                           f"set data.download=true to fetch it") from exc
    images = torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    if split != "test":
        keep = _carved(labels, data_cfg, split, held=("val",), where=str(root))
        images, labels = images[keep], labels[keep]
    return ArrayDataset(_resize_uint8(images, img_size), labels, num_classes=10)


def _list_images(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in files if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                  and not f.name.startswith("."))


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _labelled_tree(folder: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """folder/<class>/** -> (files, labels, classes); classes fixed by the caller for a val tree."""
    dirs = {d.name: d for d in _class_dirs(folder) if _list_images(d, recursive=True)}
    if classes is None:
        classes = sorted(dirs)
    unknown = sorted(set(dirs) - set(classes))
    if unknown:
        raise DatasetError(f"{folder}: classes {unknown} are not in the train tree")
    files, labels = [], []
    for label, name in enumerate(classes):
        if name in dirs:
            found = _list_images(dirs[name], recursive=True)
            files += found
            labels += [label] * len(found)
    return files, labels, classes


def _no_images(path: Path) -> DatasetError:
    return DatasetError(f"{path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})"
                        f"{not_images(path)}")


def _build_folder(data_cfg, img_size: int, split: str) -> FolderDataset:
    """root/train/<class>/* with root/val/ and root/test/ where they exist; or root/<class>/*;
    or a flat root/* of unlabeled images (label -1, num_classes 0). A split with no folder of
    its own is carved from the training pool, stratified by class (data.val_fraction,
    data.test_fraction, fixed seed)."""
    root = Path(data_cfg.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root does not exist or is not a directory")
    on_bad = data_cfg.on_bad_image

    if (root / "train").is_dir():
        pool = root / "train"
        files, labels, classes = _labelled_tree(pool)
        if not files:
            raise _no_images(pool)
        own = {s: root / s for s in ("val", "test") if (root / s).is_dir()}
        if split in own:
            files, labels, _ = _labelled_tree(own[split], classes)
            if not files:
                raise _no_images(own[split])
            return FolderDataset(files, labels, img_size, classes, on_bad)
        held = tuple(s for s in ("val", "test") if s not in own)
    else:
        pool = root
        files, labels, classes = _labelled_tree(root)
        if not files:  # no class folders with images: a flat folder of unlabeled images
            files = _list_images(root, recursive=False)
            labels, classes = [-1] * len(files), []
        if not files:
            raise _no_images(root)
        held = ("val", "test")
    keep = _carved(labels, data_cfg, split, held, where=str(pool)).tolist()
    return FolderDataset([files[i] for i in keep], [labels[i] for i in keep], img_size, classes, on_bad)


__all__ = ["ArrayDataset", "DatasetError", "FolderDataset", "IMAGE_EXTENSIONS", "SHAPES_TEST_OFFSET",
           "SHAPES_VAL_OFFSET", "SPLITS",
           "build_dataset", "clear_shapes_cache", "generate_shapes", "shapes_indices"]
