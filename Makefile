# plaml-lab: every target bootstraps .venv from pyproject.toml (re-installed only when it changes).
SHELL := bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0

.PHONY: demo test test-fast test-browser test-notebooks test-other-class lab bench ablation notebooks clean-runs help

# nbval over the committed notebooks: cells marked NBVAL_CHECK_OUTPUT are compared (sanitized),
# every cell must run; CI=true selects the notebooks' SMOKE settings, which made those outputs.
NBVAL := -p no:cacheprovider --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg

help:
	@echo "make demo      pretrain the paper's variant (demo preset) on the embedded dataset, evaluate, show figures"
	@echo "make test      the whole test suite (unit, CLI, DDP, notebooks via nbval, browser)"
	@echo "make test-fast the quick tier for the edit loop: no slow or browser tests (a few minutes)"
	@echo "make lab       open JupyterLab on notebooks/"
	@echo "make bench     benchmark table (benchmarks/README.md)"
	@echo "make ablation  the miniature paper table (experiments/results/)"
	@echo "make notebooks re-execute and re-save every notebook (the one way to refresh outputs)"
	@echo "make test-notebooks  nbval over notebooks/ only"
	@echo "make test-browser    the dashboards in JupyterLab + Chromium (needs: apt-get install chromium)"
	@echo "make test-other-class  the precision/ISA-sensitive tests and nbval as the other CPU class (.ci/run)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing plaml-lab into $(VENV) (first time: a few minutes)"
	@set -o pipefail; $(PY) -m pip install -q -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	@$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null  # the notebooks' kernel
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m plaml_lab demo

test: $(STAMP)
	$(PY) -m pytest -q tests
	CI=$${CI:-true} $(PY) -m pytest -q $(NBVAL) notebooks

test-notebooks: $(STAMP)
	CI=$${CI:-true} $(PY) -m pytest -q $(NBVAL) notebooks

# bench, DDP, engine resume, hardware and nbval once more as the CPU class this one is not:
# capped at AVX2 on a CPU with native bf16, with the SMOKE runs in bf16 on one without
test-other-class: $(STAMP)
	PY=$(PY) tools/test_other_class.sh

# sync each notebook with its source (notebooks/jupytext.toml), then execute and save outputs
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/src/[0-9][0-9]_*.py
	$(PY) tools/execute_notebooks.py

# JupyterLab + Debian's Chromium end to end (docs/browser.md); also part of `make test`
test-browser: $(STAMP)
	$(PY) -m pytest -q -m browser tests/browser

test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow and not browser"

# Loopback only and the printed token (jupyter's defaults, pinned here); --allow-root only when
# run as root (containers, cloud notebooks); no terminals: a notebook workbench needs no shell in
# the browser, and one would be a shell for anyone holding the token (docs/reliability.md).
LAB_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ --ServerApp.ip=127.0.0.1 \
		--ServerApp.terminals_enabled=False $(LAB_ROOT)

bench: $(STAMP)
	$(PY) -m plaml_lab bench --csv benchmarks/results/bench_cpu.csv

ablation: $(STAMP)
	$(PY) -m plaml_lab ablation

clean-runs:
	rm -rf experiments/runs
