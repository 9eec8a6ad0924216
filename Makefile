# Two entry points, both from a fresh clone:
#   make run   — virtual environment + install + the main study at quick scale + Pareto report
#   make test  — virtual environment + install + the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/bench run specs/mnist_width_dct.toml --quick
	$(BIN)/bench report --spec mnist_width_dct --pareto

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/compare_baseline.py

clean:
	rm -rf $(VENV) .asv .pytest_cache
