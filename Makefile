# The two commands a newcomer needs: `make demo` and `make test`. Both set up everything first:
# the system packages (scripts/system_deps.sh: Python's venv; for the tests chromium and
# PostgreSQL), then .venv with the project installed. CI runs exactly `make test` (.ci/run).
PYTHON ?= python3.11
export PYTHON
VENV := .venv
BIN := $(VENV)/bin
SHARED_WHEELS ?= ../shared/wheels
DEMO_DIR ?= demo-out

.PHONY: demo test docs install install-mmdet lint clean

$(BIN)/python:
	bash scripts/system_deps.sh python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade "pip>=24" "setuptools>=68,<81" wheel

# Installed = the stamp is newer than the files that say what to install.
$(VENV)/.installed: pyproject.toml scripts/install_mmcv.sh | $(BIN)/python
	$(BIN)/pip install -e ".[dev]"
	bash scripts/install_mmcv.sh $(BIN)/pip "$(SHARED_WHEELS)"
	$(BIN)/pip install -e ".[dev,mmdet]"
	touch $@

install: $(VENV)/.installed

install-mmdet: $(VENV)/.installed

test: $(VENV)/.installed
	bash scripts/system_deps.sh test
	$(BIN)/ruff check harness strategies leaderboard tests benchmarks
	$(BIN)/python -m pytest -q

demo: $(VENV)/.installed
	$(BIN)/python scripts/demo.py --out $(DEMO_DIR)

# The documentation site (docs/ -> site-docs/); the generated reference pages (CLI, store) first.
docs: $(VENV)/.installed
	$(BIN)/python -m harness.docs_reference docs/reference
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(VENV)/.installed
	$(BIN)/ruff check harness strategies leaderboard tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache site-docs
