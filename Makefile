# The venv recipe CI trusts. Every target creates or refreshes .venv itself, idempotently:
# the install step reruns only when pyproject.toml or this Makefile changed.
#
# GPU users: install your CUDA build of torch into .venv first (or override TORCH_SPEC), e.g.
#   python3 -m venv .venv && .venv/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cu128
# An existing torch in .venv is kept as it is.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vlgen-installed
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo_out
# Tests never reach a model hub: tiny models are built locally (vlgen.testing).
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

.PHONY: venv demo test test-slow lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/vlgen demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

test: $(STAMP) lint
	$(TEST_ENV) $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
