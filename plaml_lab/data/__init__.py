"""Data: the embedded `shapes` dataset, dataset builders, the epoch loader and batched augmentation."""
from .datasets import SPLITS, ArrayDataset, DatasetError, FolderDataset, build_dataset, clear_shapes_cache
from .loader import collate_drop_none, epoch_batches, get_items, steps_per_epoch
from .stratify import probe_indices, stratified_order
from .synthetic import SHAPE_NAMES, render_shapes
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, color_jitter, color_nuisance, make_views, normalize,
                         random_resized_crop, tone_remap, unnormalize)

__all__ = [
    "SHAPE_NAMES", "render_shapes",
    "SPLITS", "ArrayDataset", "DatasetError", "FolderDataset", "build_dataset", "clear_shapes_cache",
    "probe_indices", "stratified_order",
    "collate_drop_none", "epoch_batches", "get_items", "steps_per_epoch",
    "IMAGENET_MEAN", "IMAGENET_STD", "normalize", "random_resized_crop", "color_jitter", "color_nuisance", "tone_remap", "make_views", "unnormalize",
]
