# Gatehouse: `make run` serves the portal on http://127.0.0.1:8000; `make test` runs the whole suite.
# `make run BACKEND=llama` serves a real small model (llama.cpp's llama-server) instead of the simulator.
PYTHON ?= python3
BACKEND ?=
# The suite's pytest-xdist workers: each runs whole test modules (their live servers are per module).
TEST_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	@bash scripts/bootstrap-python.sh $(PYTHON) $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-run
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

run: $(VENV)/.installed-run
	@bash scripts/ensure-redis.sh
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensureadmin
	$(BIN)/python manage.py runstack $(if $(BACKEND),--backend $(BACKEND))

# First what the suite needs outside Python (Debian packages, tests/node's packages), then the venv,
# then the real llama-server and small model the suite runs (cached outside the repository; silent once there).
test:
	@bash scripts/ensure-test-deps.sh
	@$(MAKE) --no-print-directory $(VENV)/.installed-dev
	@$(BIN)/python scripts/fetch-llama.py
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/scheduling.py
	$(BIN)/python bench/ratelimit.py
	$(BIN)/python bench/storms.py
	$(BIN)/python -m pip install -q -e '.[bench]' && $(BIN)/python bench/scale_sim.py
	$(BIN)/python scripts/fetch-llama.py
	$(BIN)/python bench/engines.py

clean:
	rm -rf $(VENV) .run db.sqlite3 .test-db.sqlite3
