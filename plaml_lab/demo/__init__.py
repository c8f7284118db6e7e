"""Kept so that `python -m plaml_lab.demo` still works: it is `plaml-lab demo` (the code is in
plaml_lab/notebook/demo.py)."""
