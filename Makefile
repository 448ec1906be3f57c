# The two commands a user types: `make test` and `make reproduce`. Both set up .venv first, from the
# lock files (every package and version, with hashes), when it is missing or older than them.
# pyproject.toml holds the allowed ranges; `make lock` turns them into the lock files (uv pip
# compile), `make check-latest` installs the newest allowed versions into .venv-latest and runs the
# tests there, so an upstream change is found by us before a user meets it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LOCK_NODEPS := requirements-nodeps.lock
PROFILE ?= demo
ARGS ?=
# The no-deps packages (pyproject.toml [tool.dmtrack] no-deps), one per line, for `make lock`.
NODEPS_IN = $$($(PYTHON) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['tool']['dmtrack']['no-deps']))")

.PHONY: setup setup-image test reproduce lab bench clean lock check-latest

setup: $(STAMP)

# --no-deps: the lock is complete, so pip installs exactly its lines; --no-build-isolation: the
# project itself builds with the locked setuptools instead of fetching an unpinned one.
$(STAMP): $(LOCK) $(LOCK_NODEPS) pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK_NODEPS)
	$(PY) -m ipykernel install --user --name dmtrack --display-name "dmtrack (.venv)" > /dev/null
	touch $(STAMP)

# A GPU image's own Python (PYTHON=python): the lock without torch, torchvision, triton and the CUDA
# libraries, which the image provides built for its CUDA; a lock entry is its first line plus the
# indented hash lines under it.
GPU_IMAGE_SKIP := ^(torch|torchvision|triton|nvidia-|cuda-)
setup-image:
	awk '/^[^ #]/ { skip = ($$0 ~ /$(GPU_IMAGE_SKIP)/) } !skip' $(LOCK) > .lock-image.txt
	$(PYTHON) -m pip install --quiet --require-hashes --no-deps -r .lock-image.txt -r $(LOCK_NODEPS)
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f .lock-image.txt

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

# Refresh the lock files from pyproject.toml's ranges: the newest versions the registry serves today,
# for every platform and Python >= 3.11 (--universal), with every file's hash.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet uv
	.venv-lock/bin/uv pip compile pyproject.toml --upgrade --universal --python-version 3.11 --generate-hashes \
		--no-header --quiet -o $(LOCK)
	echo "$(NODEPS_IN)" | .venv-lock/bin/uv pip compile - --upgrade --no-deps --universal --python-version 3.11 \
		--generate-hashes --no-header --quiet -o $(LOCK_NODEPS)
	rm -rf .venv-lock

# The newest allowed versions (not the lock's) in a separate venv, then the whole suite there.
check-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e .
	.venv-latest/bin/python -m pip install --quiet --upgrade --no-deps $$(echo "$(NODEPS_IN)")
	.venv-latest/bin/python -m pip freeze --exclude-editable > .venv-latest/versions.txt
	.venv-latest/bin/python -m pytest -q

clean:
	rm -rf $(VENV) .venv-latest .venv-lock runs reports/runs reports/index.html
