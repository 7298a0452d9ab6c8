# Two commands on a fresh machine:
#   make demo   set up, generate a small synthetic LHC data set, train lhc_cnn, evaluate
#   make test   set up and run the whole test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv demo test lint clean
venv:
	bash scripts/setup_env.sh

demo: venv
	$(PY) -m modelzoo.cli data lhc --output runs/demo/events.h5 --signal 1500 --background 1500 --processes 2
	$(PY) -m modelzoo.cli train lhc_cnn --data runs/demo/events.h5 --output runs/demo/lhc_cnn --epochs 6 --verbose 2
	$(PY) -m modelzoo.cli evaluate --run runs/demo/lhc_cnn --data runs/demo/events.h5 --split val

test: venv
	$(VENV)/bin/ruff check modelzoo tests benchmarks scripts setup.py
	$(PY) -m pytest -q --nbmake tests notebooks

lint: venv
	$(VENV)/bin/ruff check modelzoo tests benchmarks scripts setup.py

clean:
	rm -rf runs .pytest_cache
