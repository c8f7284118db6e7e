"""Notebook glue: what the notebooks under notebooks/ call (`from plaml_lab import notebook as
nb`). params: parameters -> runs; display: text, figures, dashboards; tour: 00_method_tour's
one batch through the method; demo: `plaml-lab demo`."""

from plaml_lab.notebook.display import (PLOTLY_MAX_BYTES, LiveLoss, Shelf, app_status, collapse_figure,
                                        coarse, comparison, describe_config, loss_figure,
                                        metrics_text, png_bytes,
                                        pseudo_label_gallery, run_files, show, show_app, table)
from plaml_lab.notebook.params import (PRETRAIN_OUT, QUICK, SMOKE_OVERRIDES, as_list,
                                       evaluate_against_baseline, eval_target, load, open_run,
                                       repo_path, repo_root, run_dir, search_file, settings,
                                       shown_path, smoke_run)

__all__ = ["PLOTLY_MAX_BYTES", "PRETRAIN_OUT", "QUICK", "SMOKE_OVERRIDES", "LiveLoss", "Shelf",
           "app_status", "as_list", "coarse", "collapse_figure", "comparison", "describe_config",
           "eval_target", "evaluate_against_baseline", "load", "loss_figure", "metrics_text", "open_run",
           "png_bytes", "pseudo_label_gallery", "repo_path", "repo_root", "run_dir", "run_files",
           "search_file", "settings", "show", "show_app", "shown_path", "smoke_run", "table"]
