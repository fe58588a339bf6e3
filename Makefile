# Two entry points for a fresh machine with Python 3.11:  `make run`  and  `make test`.
# Both set up .venv first (torch pinned, the compiled ops built); a second call only re-runs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := pyproject.toml setup.py $(wildcard csrc/*.h csrc/*.cpp csrc/*/*.h csrc/*/*.cpp csrc/*/*.cu csrc/*/*.cuh)
export MAX_JOBS ?= 2
# The one pin of torch; pyproject.toml only states the oldest versions that work.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup run test compare bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q setuptools wheel pybind11 ninja
	$(BIN)/python -m pip install -q --no-build-isolation -e '.[test,tensorboard,postgres]'
	touch $@

run: setup  ## train MTAdamV2 on the embedded data set
	$(BIN)/mtbench run --optimizer mtadamv2

test: setup  ## the test suite
	$(BIN)/python -m pytest

compare: setup  ## all eight optimizers side by side on the embedded data set
	$(BIN)/mtbench compare

bench: setup  ## the optimizer-step benchmark
	$(BIN)/mtbench bench

clean:
	rm -rf build *.egg-info mtbench/_C*.so
