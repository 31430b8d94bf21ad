# Two entry points: `make test` and `make demo`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, from the machine's wheel files where they exist; override for other platforms,
# e.g. `make test TORCH="torch torchvision"`.
TORCH ?= torch==2.14.1 torchvision==0.29.1
DATA ?= datasets/ispad-synth
# demo dataset size: 40 patches per split keeps `make demo` to minutes on 2 cores (200: ~30 min)
PATCHES ?= 40
PYTEST_ARGS ?=
# CI smoke sweep: every method x modality on a 20-patch generated set (git-ignored folders).
SMOKE_DATA ?= datasets/ispad-smoke20
SMOKE_OUT ?= results/runs/smoke-ci
# `make test SMOKE=0`: pytest only
SMOKE ?= 1

.PHONY: install test lint test-slow smoke demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

test: install
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	test "$(SMOKE)" = 0 || $(MAKE) --no-print-directory smoke

# The smoke sweep from scratch (the out folder is removed first, so every job really runs); prints
# its wall time and fails on a non-zero exit (any failed job).
smoke: install
	test -d $(SMOKE_DATA) || { rm -rf $(SMOKE_DATA).part && \
	  $(BIN)/ispad-bench data synth --root $(SMOKE_DATA).part --patches 20 --seed 0 && mv $(SMOKE_DATA).part $(SMOKE_DATA); }
	rm -rf $(SMOKE_OUT)
	@start=$$(date +%s); rc=0; \
	$(BIN)/ispad-bench sweep --all --profile smoke --data-root $(SMOKE_DATA) --out $(SMOKE_OUT) || rc=$$?; \
	echo "smoke sweep: wall time $$(( $$(date +%s) - start )) s, exit code $$rc ($(SMOKE_OUT)/tables.md)"; \
	exit $$rc

lint: install
	$(BIN)/ruff check src tests

test-slow: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

demo: install
	test -d $(DATA) || { rm -rf $(DATA).part && \
	  $(BIN)/ispad-bench data synth --root $(DATA).part --patches $(PATCHES) --seed 0 && mv $(DATA).part $(DATA); }
	$(BIN)/ispad-bench data check --root $(DATA)
	$(BIN)/python -m ispad_bench.demo --root $(DATA)

clean:
	rm -rf $(VENV) results/runs $(SMOKE_DATA)
