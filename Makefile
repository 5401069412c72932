# make demo    - run the default scenario on its embedded defaults and print its summary
# make test    - run the whole test suite
# make bench   - run the benchmarks (not part of make test)
# make lab     - open the notebooks in JupyterLab (installs the notebook and export extras)
# make present - the design-review presentation (Voila, no code) on 127.0.0.1, with a token
# make paper   - rebuild every figure and table of the paper into data/figures/ (headless;
#                every core: WORKERS=1 for serial; ALLOW_DIRTY=True from a tree with changes)
# make findings - run data/findings/*.yaml through the store and rewrite the generated
#                sections of docs/findings.md (every core; ALLOW_DIRTY=True as for paper)
# make lock    - write requirements.lock: exact versions of every dependency (pip-compile)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
EXTRAS  ?= dev
STAMP   := $(VENV)/.installed-$(EXTRAS)
LOCK    ?= requirements.lock
FIGURES ?= data/figures
PRESENT ?= notebooks/08-design-review.ipynb
PORT    ?= 8866
NB      := $(VENV)/.installed-notebook,export
WORKERS ?= 0
ALLOW_DIRTY ?= False
TOKEN   ?= $(shell $(PY) -c "import secrets; print(secrets.token_hex(16))")
# JupyterLab refuses to start as root unless told (--allow-root); Voila has no such check
ROOT_OK := $(if $(filter 0,$(shell id -u)),--allow-root,)
# more JupyterLab flags, e.g. LAB_FLAGS="--port=8890 --no-browser"
LAB_FLAGS ?=
# a kernel whose page was closed (no connection left) is shut down after CULL_S idle seconds
# (looked for every CULL_EVERY seconds)
CULL_S  ?= 60
CULL_EVERY ?= 10

.PHONY: demo test bench lab present paper findings lock clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[$*]'
	# papermill runs notebooks on a kernel named python3 that lives in this venv
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $@

# exactly the versions of the lock file, then this package on top without resolving again
$(VENV)/.installed-lock: $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $@

demo: $(STAMP)
	$(BIN)/workbench run lazy-accept-boot

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

lab: $(NB)
	$(BIN)/jupyter lab notebooks/ $(ROOT_OK) $(LAB_FLAGS)

# one token, drawn once in the recipe's shell: the URL printed is the one Voila accepts
present: $(NB)
	@token=$$($(BIN)/python -c "import secrets; print(secrets.token_hex(16))"); \
	echo "presenting $(PRESENT) at http://127.0.0.1:$(PORT)/?token=$$token (Ctrl-C stops)"; \
	exec $(BIN)/voila $(PRESENT) --no-browser --Voila.ip=127.0.0.1 --port=$(PORT) \
	    --token=$$token --strip_sources=True --theme=light \
	    --MappingKernelManager.cull_idle_timeout=$(CULL_S) \
	    --MappingKernelManager.cull_interval=$(CULL_EVERY)

# with a lock file: the locked versions; without: the notebook and export extras
paper: $(if $(wildcard $(LOCK)),$(VENV)/.installed-lock,$(NB))
	@mkdir -p build
	$(BIN)/python -m papermill -k python3 --cwd $(CURDIR) notebooks/05-paper.ipynb \
	    build/05-paper.ipynb -p out $(FIGURES) -p lock $(LOCK) -p workers $(WORKERS) \
	    -p allow_dirty $(ALLOW_DIRTY) >/dev/null
	@$(BIN)/python -c "import json, sys; m = json.load(open('$(FIGURES)/paper.json')); \
	    [print('wrote $(FIGURES)/' + f) for f in m['files'] + ['paper.json']]; \
	    print('lock:', m['lock']['lock'], m['lock'].get('sha256') or m['lock'].get('note'))"

findings: $(STAMP)
	$(BIN)/workbench findings $(if $(filter True true 1,$(ALLOW_DIRTY)),--allow-dirty)

lock: $(VENV)/.installed-dev
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --allow-unsafe \
	    --extra notebook --extra export --extra dist -o $(LOCK) pyproject.toml
	@echo "wrote $(LOCK)"

clean:
	rm -rf $(VENV) build *.egg-info
