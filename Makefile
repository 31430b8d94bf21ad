# Two entry points: `make test` and `make demo`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, from the machine's wheel files where they exist; override for other platforms,
# e.g. `make test TORCH="torch torchvision"`.
TORCH ?= torch==2.14.1 torchvision==0.29.1
DATA ?= datasets/ispad-synth
PATCHES ?= 200
PYTEST_ARGS ?=

.PHONY: install test test-slow demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

demo: install
	test -d $(DATA) || $(BIN)/ispad-bench data synth --root $(DATA) --patches $(PATCHES) --seed 0
	$(BIN)/ispad-bench data check --root $(DATA)
	$(BIN)/python -m ispad_bench.demo --root $(DATA)

clean:
	rm -rf $(VENV) results/runs
