# One-command environment: `make setup` (idempotent), `make test`, `make demo`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := $(shell find src launch config -type f -not -path '*/__pycache__/*' 2>/dev/null)
ACTIVATE := source $(BIN)/activate && source install/setup.bash

.PHONY: setup test test-core lint bench demo lock clean

setup: $(VENV)/.installed install/.built

$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	touch $@

install/.built: $(VENV)/.installed $(SOURCES)
	source $(BIN)/activate && colcon build --symlink-install --event-handlers console_cohesion- summary- \
		--base-paths src
	touch $@

test: setup
	$(ACTIVATE) && python -m pytest

lint: setup
	$(BIN)/ruff check src test launch

bench: setup
	$(ACTIVATE) && for b in test/benchmarks/bench_*.py; do python $$b || exit 1; done

demo: setup
	$(ACTIVATE) && ros2_bringup_missing=1 python -m sim_bridge_sim.simulator_node --help >/dev/null

lock:
	$(PYTHON) tools/lock.py

clean:
	rm -rf build install log $(VENV)
