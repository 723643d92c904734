# The two commands of the README: `make demo` (the main job) and `make test` (all tests).
# Both run the idempotent `make setup` first.
SHELL := /bin/bash
VENV ?= .venv
ENV := . scripts/env.sh &&
PYTEST_ARGS ?=

.PHONY: setup setup-devkit setup-onnx demo test test-fast clean-venv

setup:
	@bash scripts/setup.sh

# Optional: the official nuscenes-devkit as a test oracle (tests that need it skip without it).
setup-devkit: setup
	@bash scripts/setup_devkit.sh

# Optional: onnx + onnxruntime for the ONNX export and its parity test (tests that need them skip without them).
setup-onnx: setup
	@bash scripts/setup_onnx.sh

demo: setup
	@$(ENV) python -m sparsedrive_ros.tools.demo $(DEMO_ARGS)

test: setup
	@$(ENV) python -m pytest $(PYTEST_ARGS)

# Everything except the tests marked slow (for quick local iterations; CI runs `make test`).
test-fast: setup
	@$(ENV) python -m pytest -m "not slow" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
