"""Tooling around the method: the grid files (grids.py) and what runs them (sweep.py: papermill
over a notebook; ablation.py: the paper table), and the benchmark harness (bench.py)."""
