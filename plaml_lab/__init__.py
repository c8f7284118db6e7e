"""plaml_lab: a research workbench for Pseudo Labelling for Enhanced Masked Autoencoders.

Public API: PretrainConfig, load_config, pretrain, load_run, evaluate, export_timm."""

import importlib

from plaml_lab.config import ConfigError, PretrainConfig, load_config

__version__ = "0.1.0"


# Loaded on first use: these import torch, and `import plaml_lab` (as `plaml-lab --help` does)
# must stay cheap.
_LAZY = {"pretrain": "plaml_lab.train", "load_run": "plaml_lab.runs",
         "evaluate": "plaml_lab.evaluate", "export_timm": "plaml_lab.export"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'plaml_lab' has no attribute {name!r}")


__all__ = ["ConfigError", "PretrainConfig", "evaluate", "export_timm", "load_config", "load_run",
           "pretrain"]
