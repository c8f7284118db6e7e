# plaml-lab: every target bootstraps .venv from pyproject.toml (re-installed only when it changes).
SHELL := bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0

.PHONY: demo test test-fast test-browser lab bench ablation notebooks clean-runs help

help:
	@echo "make demo      pretrain the paper's variant (lab preset) on the embedded dataset, evaluate, show figures"
	@echo "make test      the whole test suite (unit, CLI, DDP, notebooks via nbval, browser)"
	@echo "make lab       open JupyterLab on notebooks/"
	@echo "make bench     benchmark table (benchmarks/README.md)"
	@echo "make ablation  the miniature paper table (experiments/results/)"
	@echo "make notebooks re-execute and re-save every notebook (the one way to refresh outputs)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing plaml-lab into $(VENV) (first time: a few minutes)"
	@set -o pipefail; $(PY) -m pip install -q -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m plaml_lab.demo

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow and not browser"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) -m plaml_lab bench --csv benchmarks/results/bench_cpu.csv

ablation: $(STAMP)
	$(PY) -m plaml_lab.ablation

clean-runs:
	rm -rf experiments/runs
