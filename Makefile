# One-command environment: `make setup` (idempotent), `make test`, `make demo`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := $(shell find src launch config -type f -not -path '*/__pycache__/*' 2>/dev/null)
ACTIVATE := source $(BIN)/activate && source install/setup.bash
# ROS 2 launch and CLI tooling (`ros2 launch`, `ros2 topic/param/service` ...), which is not on
# PyPI: a sourced ROS 2 install (ROS_DISTRO set) has it; otherwise it is installed from this
# folder of wheels, if there is one. `make test` then requires the tests that run it to run.
ROS_TOOLING_WHEELS ?= ../shared/wheels
TOOLING_WHEELS := $(if $(ROS_DISTRO),,$(wildcard $(ROS_TOOLING_WHEELS)/*.whl))
REQUIRE_TOOLING := $(if $(ROS_DISTRO)$(TOOLING_WHEELS),SIM_BRIDGE_REQUIRE_ROS_TOOLING=1)

.PHONY: setup test lint bench demo lock clean

setup: $(VENV)/.installed $(VENV)/.tooling install/.built

$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	touch $@

# Unmodified upstream wheels whose metadata names ROS packages, not their PyPI names: no resolving.
$(VENV)/.tooling: $(VENV)/.installed $(TOOLING_WHEELS) $(wildcard $(ROS_TOOLING_WHEELS))
	$(if $(TOOLING_WHEELS),$(BIN)/python -m pip install --quiet --no-deps $(TOOLING_WHEELS))
	touch $@

# src/composition_interfaces (which launch_ros imports) is generated here from the lock's rosidl
# generators, with CMake and the machine's C/C++ compiler; a ROS 2 install has its own.
install/.built: $(VENV)/.installed $(SOURCES)
	source $(BIN)/activate && colcon build --symlink-install --event-handlers console_cohesion- summary- \
		--base-paths src $(if $(ROS_DISTRO),--packages-skip composition_interfaces)
	touch $@

test: lint
	$(ACTIVATE) && $(REQUIRE_TOOLING) python -m pytest

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(ACTIVATE) && for b in test/benchmarks/bench_*.py; do python $$b || exit 1; done

# Train arm7 reach with PPO (config/training.yaml: fused transport, default randomization, a
# recorded rollout bag); extra arguments: make demo ARGS="num_envs:=1024 max_wall_s:=120".
demo: setup
	$(ACTIVATE) && export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
		&& install/sim_bridge/lib/sim_bridge/bringup training $(ARGS)

lock:
	$(PYTHON) tools/lock.py

clean:
	rm -rf build install log $(VENV)
