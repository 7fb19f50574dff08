# Two commands: `make demo` (set up and run the demo) and `make test`
# (set up everything the tests need, including Prometheus, promtool and
# Alertmanager, and run the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=

.PHONY: demo test setup setup-dev system-deps bench dashboards lint clean

demo: setup
	$(BIN)/mlx-otel demo $(DEMO_ARGS)

test: system-deps setup-dev
	$(BIN)/python -m pytest

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# mlx-tune's datasets<4 pin cannot be met beside mlx-vlm 0.7 (pyproject.toml
	# says more); its trainers run with the datasets installed above.
	$(BIN)/python -m pip install --quiet --no-deps 'mlx-tune>=0.6.0' 'mlx-embeddings>=0.1.0'
	touch $(VENV)/.installed $@

system-deps:
	scripts/install-system-deps.sh

bench: setup-dev
	$(BIN)/python benchmarks/run_all.py

# Regenerate grafana/dashboards/*.json from their grafanalib sources. The
# wheel takes them (and prometheus/, provisioning, runbooks, compose file)
# from where they are: there is no copy to refresh.
dashboards: setup
	$(BIN)/mlx-otel dashboards

lint: setup-dev
	$(BIN)/ruff check mlx_otel tests benchmarks grafana

clean:
	rm -rf $(VENV) outputs wandb .pytest_cache
