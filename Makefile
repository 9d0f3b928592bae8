# The venv recipe CI trusts. Every target creates or refreshes .venv itself, idempotently:
# the install step reruns only when pyproject.toml, requirements.lock or this Makefile changed.
# .venv gets the exact versions in requirements.lock (`make lock` regenerates it with uv, for every Python
# pyproject allows); pyproject.toml keeps ranges for `pip install` users. The lock leaves out torch,
# torchvision, triton and the nvidia-*/cuda-* packages: they follow the rule below.
# `make test-latest` (by hand) runs the fast tier in .venv-latest with the newest versions pyproject allows.
#
# GPU users: install your CUDA build of torch into .venv first (or override TORCH_SPEC), e.g.
#   python3 -m venv .venv && .venv/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cu128
# An existing torch in .venv is kept as it is.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vlgen-installed
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
LOCK := requirements.lock
# uv only resolves the lock (`make lock`); it lives in its own venv so .venv holds only what the lock says.
UV_SPEC ?= uv==0.13.9
TOOLS_VENV ?= .venv-tools
LATEST_VENV ?= .venv-latest
# Packages the lock leaves out: a CPU or CUDA build of torch is the user's choice (see above).
TORCH_FAMILY := ^(torch|torchvision|triton)==|^(nvidia|cuda)-
DEMO_OUT ?= demo_out
# Tests never reach a model hub: tiny models are built locally (vlgen.testing).
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

.PHONY: venv demo test test-slow test-latest lint lock format clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -r $(LOCK) -e '.[dev]'
	@touch $(STAMP)

# Resolve the newest versions pyproject allows, for every Python it allows (>=3.10), on every platform.
lock:
	@test -x $(TOOLS_VENV)/bin/uv || ($(PYTHON) -m venv $(TOOLS_VENV) && $(TOOLS_VENV)/bin/pip install -q $(UV_SPEC))
	@printf 'torch\ntorchvision\ntriton\n' > $(TOOLS_VENV)/lock-excludes.txt
	$(TOOLS_VENV)/bin/uv pip compile pyproject.toml --all-extras --universal --python-version 3.10 --upgrade \
		--excludes $(TOOLS_VENV)/lock-excludes.txt --custom-compile-command 'make lock' --quiet -o $(LOCK)
	@! grep -inE '$(TORCH_FAMILY)' $(LOCK) || (echo "$(LOCK) must not pin the torch family" >&2; exit 1)

# By hand, not in CI: the fast tier against the newest releases pyproject allows (torch keeps the rule above),
# so a break in a new release is seen here before users see it.
test-latest:
	@test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	@$(LATEST_VENV)/bin/python -c "import torch, torchvision" 2>/dev/null || \
		$(LATEST_VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(LATEST_VENV)/bin/python -m pip freeze | grep -iE '$(TORCH_FAMILY)' > $(LATEST_VENV)/torch-pins.txt
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager \
		-c $(LATEST_VENV)/torch-pins.txt -e '.[dev]'
	@$(LATEST_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(torch|transformers|diffusers|peft|accelerate|huggingface.hub|rich|typer)=='
	$(TEST_ENV) $(LATEST_VENV)/bin/python -m pytest -q

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
	rm -rf $(VENV) $(LATEST_VENV) $(TOOLS_VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
