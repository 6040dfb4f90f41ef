# The two set-up commands from the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch/torchvision pinned to the releases on this kind of machine's disk; pyproject keeps torch>=2.10.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
RUN_DIR := runs/quickstart/demo

.PHONY: demo test venv clean bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m compileall -q dlcli  # bytecode up front: start-up stays fast where PYTHONDONTWRITEBYTECODE is set
	touch $@

venv: $(VENV)/.installed

demo: venv
	rm -rf $(RUN_DIR)
	$(VENV)/bin/dlcli train configs/quickstart.yaml --run-version demo
	$(VENV)/bin/dlcli eval $(RUN_DIR)/checkpoints/best.pt
	$(VENV)/bin/dlcli infer $(RUN_DIR)/checkpoints/best.pt examples/digits --top-k 3

test: venv
	$(VENV)/bin/ruff check dlcli tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -n auto --maxprocesses 4 --dist loadfile  # one module per worker: its fixtures built once

bench: venv
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/op_count.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/checkpoint_digest.py
	$(PY) benchmarks/generation.py

clean:
	rm -rf $(VENV) runs .pytest_cache
