# The two commands a user types: `make test` and `make reproduce`. Both set up .venv first
# when it is missing or older than pyproject.toml (the one source of dependency versions).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= demo
ARGS ?=

.PHONY: setup test reproduce lab bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	$(PY) -m pip install --quiet --no-deps $$($(PY) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['tool']['dmtrack']['no-deps']))")
	$(PY) -m ipykernel install --user --name dmtrack --display-name "dmtrack (.venv)" > /dev/null
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# ARGS: anything `dmtrack report` takes, e.g. ARGS="--set pretrained=/w/OSTrack_ep0300.pth.tar --set text_encoder=/w/bert-base-uncased"
reproduce: $(STAMP)
	$(PY) -m dmtrack report --profile $(PROFILE) $(ARGS)

# JupyterLab rooted at the repo (notebooks/ and the executed ones under reports/runs/), opened on notebooks/.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks

bench: $(STAMP)
	$(PY) -m dmtrack bench all

clean:
	rm -rf $(VENV) runs reports/runs reports/index.html
