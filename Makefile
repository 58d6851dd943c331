# kairo_ros: `make demo` runs the whole loop, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup test test-kilted lint demo bench clean

# ROS 2 from the PyPI wheels: ROS_DISTRO_WHEELS=jazzy (the default: .venv,
# build/, install/, log/) or kilted (.venv-kilted, build-kilted/ ...), e.g.
# `make test ROS_DISTRO_WHEELS=kilted`; the scripts read it (scripts/distro.sh).
# Left unset by default: on a robot the sourced ROS_DISTRO decides.
wheels_distro := $(or $(ROS_DISTRO_WHEELS),jazzy)

help:
	@echo "make setup  install ROS 2 Jazzy (wheels), torch, onnxruntime; colcon build"
	@echo "make test   setup when needed, lint, every test of every package"
	@echo "make test-kilted  the same as 'make test ROS_DISTRO_WHEELS=kilted': set up"
	@echo "            ROS 2 Kilted in .venv-kilted, run the ROS package's tests on it"
	@echo "make lint   ruff and mypy"
	@echo "make demo   the whole loop on this machine: train, promote, infer, hot swap"
	@echo "make bench  the benchmarks under bench/"
	@echo "make clean  remove every distro's build, install and log trees (keeps the venvs)"
	@echo "setup, test, demo and bench take ROS_DISTRO_WHEELS=jazzy (default) or kilted"

setup:
	@bash scripts/setup.sh

lint: setup
	@bash scripts/lint.sh

# Lint and the tests of kairo_backend and kairo_features (no ROS) do not depend
# on the ROS distro: they run with Jazzy; another distro runs the ROS
# package's tests (scripts/test.sh).
test: setup
	@if [ "$(wheels_distro)" = jazzy ]; then bash scripts/lint.sh; fi
	@bash scripts/test.sh

test-kilted:
	@$(MAKE) --no-print-directory test ROS_DISTRO_WHEELS=kilted

demo: setup
	@bash -c 'source env.sh && kairo_demo'

# Each prints its figures and a ratio against a baseline measured in the same run.
BENCHMARKS := backend_epoch backend_list_models backend_list_models_pg backend_train_latency inference_latency inference_guard_cost inference_image inference_detection inference_swap inference_shadow features_read dataset_import record_rate ui_pages backend_ray_dispatch

bench: setup
	@bash -c 'source env.sh && for b in $(BENCHMARKS); do echo "== bench/$$b.py"; python bench/$$b.py || exit 1; done'

clean:
	rm -rf build install log build-kilted install-kilted log-kilted
