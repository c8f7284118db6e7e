"""Kept so that `python -m plaml_lab.ablation` still works: it is `plaml-lab ablation` (the code is in
plaml_lab/lab/ablation.py)."""
