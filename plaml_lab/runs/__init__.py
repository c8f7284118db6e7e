"""Everything about a run on disk: the run folder (folder.py: load_run, metrics), checkpoints
(checkpoint.py: atomic save, weights-only load, RNG state) and the torch.distributed helpers the
training loop needs (distributed.py)."""

from plaml_lab.runs.folder import (Run, load_run, random_init_run, read_json, read_metrics,
                                   resolve_checkpoint)

__all__ = ["Run", "load_run", "random_init_run", "read_json", "read_metrics", "resolve_checkpoint"]
