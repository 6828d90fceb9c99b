# The two commands: `make run` (the portal) and `make test` (the whole test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench install

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m portal.launcher run

test: $(VENV)/.installed
	$(PY) -m portal.launcher test $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m portal.launcher bench $(ARGS)
