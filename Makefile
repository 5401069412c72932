# make demo   - run the default scenario on its embedded defaults and print its summary
# make test   - run the whole test suite
# make bench  - run the benchmarks (not part of make test)
# make lab    - open the notebooks in JupyterLab
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
EXTRAS  ?= dev
STAMP   := $(VENV)/.installed-$(EXTRAS)

.PHONY: demo test bench lab clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	# papermill runs notebooks on a kernel named python3 that lives in this venv
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $@

demo: $(STAMP)
	$(BIN)/workbench run lazy-accept-boot

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

lab:
	$(MAKE) EXTRAS=dev,notebook $(VENV)/.installed-dev,notebook
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) build *.egg-info
