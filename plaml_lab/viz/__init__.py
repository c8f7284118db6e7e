"""Visualisation: pure figure builders (figures.py: matplotlib; plots.py: plotly) and the
ipywidgets dashboards (dashboards.py, monitors.py) over what inspect.py computes from a run.

The figure builders import without ipywidgets; the apps load on first use:

    from plaml_lab.viz import mask_explorer
    mask_explorer("experiments/runs/lab")      # a run folder, a checkpoint, a Run, or None
"""

import importlib

from plaml_lab.viz.figures import loss_curves, mask_grid, pseudo_label_grid

APP_NAMES = ("mask_explorer", "token_map_viewer", "cluster_explorer", "attention_viewer",
             "training_monitor", "teacher_compare")


def __getattr__(name):  # the apps load ipywidgets, plotly and torch: only when asked for
    if name in APP_NAMES or name == "APPS":
        return getattr(importlib.import_module("plaml_lab.viz.dashboards"), name)
    raise AttributeError(f"module 'plaml_lab.viz' has no attribute {name!r}")


__all__ = ["APP_NAMES", "loss_curves", "mask_grid", "pseudo_label_grid", *APP_NAMES]
