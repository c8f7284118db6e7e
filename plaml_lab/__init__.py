"""plaml_lab: a research workbench for Pseudo Labelling for Enhanced Masked Autoencoders.

Public API: PretrainConfig, load_config, pretrain, load_run, evaluate, export_timm."""

import importlib

__version__ = "0.1.0"


# Loaded on first use: most import torch, and `import plaml_lab` (as `plaml-lab --help` does)
# must stay cheap; and importing the method package (plaml_lab.method), which runs this file
# first, must load no other module of plaml_lab.
_LAZY = {"ConfigError": "plaml_lab.errors", "PretrainConfig": "plaml_lab.config",
         "load_config": "plaml_lab.config", "pretrain": "plaml_lab.train",
         "load_run": "plaml_lab.runs", "evaluate": "plaml_lab.evaluate",
         "export_timm": "plaml_lab.export"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'plaml_lab' has no attribute {name!r}")


__all__ = ["ConfigError", "PretrainConfig", "evaluate", "export_timm", "load_config", "load_run",
           "pretrain"]
