# Two commands for a newcomer: `make demo` (the whole job, offline) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN ?= artifacts
MODEL ?= dnn
DATASET ?= mnist5k
PORT ?= auto

.PHONY: demo test train convert install board-sources virtual-board evaluate compare flash bench lint typecheck clean

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The whole job, offline: train -> convert -> virtual board -> evaluate -> compare.
demo: $(VENV)/.installed
	$(PY) -m train --run $(RUN) --model $(MODEL) --dataset $(DATASET)
	$(PY) -m convert --run $(RUN)
	$(PY) -m host_tools evaluate --run $(RUN) --port virtual --restart
	$(PY) -m host_tools compare --run $(RUN)

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q

train: $(VENV)/.installed
	$(PY) -m train --run $(RUN) --model $(MODEL) --dataset $(DATASET)

convert: $(VENV)/.installed
	$(PY) -m convert --run $(RUN)

virtual-board: $(VENV)/.installed
	$(PY) -m host_tools virtual-board --run $(RUN)

evaluate: $(VENV)/.installed
	$(PY) -m host_tools evaluate --run $(RUN) --port $(PORT)

compare: $(VENV)/.installed
	$(PY) -m host_tools compare --run $(RUN)

# Puts RUN's generated model files into firmware/, where PlatformIO builds from.
install: $(VENV)/.installed
	$(PY) -m convert.install --run $(RUN)

# The board's TFLM library and Arduino core as PlatformIO fetches them (needs internet once):
# the host build of the board's TFLM, the cross-compile checks and the emulator use them.
board-sources: $(VENV)/.installed
	$(VENV)/bin/pio pkg install -e nano33ble

flash: install
	$(VENV)/bin/pio run -e nano33ble -t upload $(if $(filter-out auto,$(PORT)),--upload-port $(PORT),)

bench: $(VENV)/.installed
	$(PY) -m bench

lint: $(VENV)/.installed
	$(PY) -m ruff check .

# mypy --strict on the product packages (pyproject.toml [tool.mypy]); part of `make test`.
typecheck: $(VENV)/.installed
	$(PY) -m mypy

clean:
	rm -rf $(RUN) build .pytest_cache
