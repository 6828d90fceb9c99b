# The two commands: `make run` (the portal) and `make test` (the whole test suite).
# Both install from the lock files in requirements/ (exact versions, checked by hash), then
# Pier itself without dependencies. `make lock` regenerates the lock files from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The tool that writes the lock files, pinned so every `make lock` resolves the same way.
UV_VERSION ?= 0.13.9
# The lock files are made from PyPI alone, for the one platform Pier runs on (requires-python
# is 3.11; Linux x86_64), whatever the machine running `make lock` and its pip configuration.
LOCK_FLAGS := --generate-hashes --no-config --index-url https://pypi.org/simple \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command "make lock" --quiet

.PHONY: run test bench install lock

$(VENV)/.installed: pyproject.toml requirements/test.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements/test.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m portal.launcher run

test: $(VENV)/.installed
	$(PY) -m portal.launcher test $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m portal.launcher bench $(ARGS)

# Regenerate both lock files after changing the dependencies in pyproject.toml. Pins that still
# fit are kept; newer releases within pyproject's ranges: `make lock LOCK_ARGS=--upgrade`, or one
# package: `make lock LOCK_ARGS="--upgrade-package celery"`. uv runs from a venv of its own (.uv/).
lock:
	test -x .uv/bin/uv || ($(PYTHON) -m venv .uv && .uv/bin/python -m pip install --quiet uv==$(UV_VERSION))
	.uv/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) $(LOCK_ARGS) -o requirements/runtime.lock
	.uv/bin/uv pip compile pyproject.toml --extra test $(LOCK_FLAGS) $(LOCK_ARGS) -o requirements/test.lock
