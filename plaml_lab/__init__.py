"""plaml_lab: a research workbench for Pseudo Labelling for Enhanced Masked Autoencoders.

Public API: PretrainConfig, load_config, pretrain, load_run, evaluate, export_timm."""

from plaml_lab.config import ConfigError, PretrainConfig, load_config

__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing the package stays cheap for `plaml-lab --help`
    if name == "pretrain":
        from plaml_lab.train import pretrain
        return pretrain
    if name == "load_run":
        from plaml_lab.runs import load_run
        return load_run
    if name == "evaluate":
        from plaml_lab.evaluate import evaluate
        return evaluate
    if name == "export_timm":
        from plaml_lab.export import export_timm
        return export_timm
    raise AttributeError(f"module 'plaml_lab' has no attribute {name!r}")


__all__ = ["ConfigError", "PretrainConfig", "evaluate", "export_timm", "load_config", "load_run",
           "pretrain"]
