# Two commands: `make run` and `make test`. Each creates .venv when missing and installs into
# it (uv when it is on PATH, else pip), only again when pyproject.toml or the constraints change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
UV := $(shell command -v uv 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: run test check lint typecheck pytest install lock docs bench-store clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Skyline needs Python >= 3.11; set PYTHON=python3.11 or newer")'
ifdef UV
	@test -x $(PY) || $(UV) venv --python $(PYTHON) $(VENV)
	$(UV) pip install --python $(PY) -c $(CONSTRAINTS) -e '.[dev]'
else
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[dev]'
endif
	@touch $(STAMP)

run: install
	$(VENV)/bin/skyline run

test: install check

check: lint typecheck pytest

lint: install
	$(VENV)/bin/ruff check src tests bench scripts

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(PY) -m pytest tests/unit tests/integration tests/e2e tests/security $(PYTEST_ARGS)

# Refresh the pinned constraints from the current venv (after changing pyproject.toml).
lock: install
	$(PY) -m pip freeze --exclude-editable --disable-pip-version-check | grep -v '^skyline' > $(CONSTRAINTS)

bench-store: install
	$(PY) bench/store.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Regenerate the settings reference tables in docs/settings.md from the code.
docs: install
	$(PY) scripts/settings_docs.py
