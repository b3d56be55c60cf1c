# Two commands for a fresh machine (Python 3.10+):
#   make run        the MNIST lab: train the GAN and LeNet, generate, classify, sort, report
#   make test       install the test dependencies and run the whole test suite
#   make lint       ruff's lint and format check (ruff.toml); `make format` rewrites the tree as ruff formats it
#   make test-fast  the edit loop: everything but the tests marked slow (training, real Stable Diffusion
#                   networks, the bridge's parity, the notebook, several processes)
#   make test-colab the fast tests and one short run of each program on Colab's TensorFlow and Keras,
#                   in a second environment (.venv-colab) without the parity peers
# Offline machines: MNIST_NPZ=/path/to/mnist.npz make run

PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
PYTEST_ARGS ?=
# The fast tests on two workers, a module to a worker (its fixtures built once): they leave a core
# idle (graph building, process start-up). The whole suite runs in one process: its full-sized
# Stable Diffusion tests need the machine's memory one at a time.
FAST_WORKERS ?= -n 2 --dist loadscope
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test test-colab test-fast lint format benchmark clean

$(BIN)/activate: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BIN)/activate

# The test extra adds pytest and the bridge's parity peers (PyTorch CPU, diffusers, transformers).
$(VENV)/.test-deps: $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/activate
	$(BIN)/genlab-mnist-lab --output_dir=runs/lab

# The bridge's parity module runs in a pytest process of its own: TensorFlow keeps what the other
# modules' graphs touched, and parity's conversion programs run beside the process that holds it.
PARITY = tests/xray/formats/test_diffusers_parity.py
test: $(VENV)/.test-deps
	$(BIN)/python -m pytest -m "not programs" --ignore=$(PARITY) $(PYTEST_ARGS); status=$$?; \
	$(BIN)/python -m pytest -m "not programs" $(PARITY) $(PYTEST_ARGS) && exit $$status

test-fast: $(VENV)/.test-deps
	$(BIN)/python -m pytest -m "not slow" $(FAST_WORKERS) $(PYTEST_ARGS)

# Colab's GPU runtimes ship this pair, the oldest setup.py allows; pip keeps it when Colab users install the project.
COLAB_VENV ?= .venv-colab
COLAB_PAIR = tensorflow==2.19.0 keras==3.10.0

$(COLAB_VENV)/.deps: setup.py
	$(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/pip install --quiet --upgrade pip
	$(COLAB_VENV)/bin/pip install --quiet $(COLAB_PAIR) -e . pytest pytest-xdist
	touch $@

test-colab: $(COLAB_VENV)/.deps
	$(COLAB_VENV)/bin/python -m pytest -m "not slow or programs" $(FAST_WORKERS) $(PYTEST_ARGS)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.test-deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: $(BIN)/activate
	$(BIN)/python benchmarks/gan_throughput.py

clean:
	rm -rf $(VENV) $(COLAB_VENV) runs .pytest_cache
