# One command sets everything up (a virtual environment in .venv with the local CPU torch wheel)
# and runs the job: `make demo` evaluates the default model, `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest workers: one per core (the suite is sized for 2 cores)
WORKERS ?= 2

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: the local CPU wheel; nothing else may pull another torch or CUDA
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev,onnx]" "torch==2.13.0"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/advrobust evaluate

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(WORKERS) --dist loadfile -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
