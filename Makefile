# fedledger — the two commands of the quick start are `make demo` and `make test`.
# Every target installs what is missing first and is quick when nothing is.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.fedledger-installed
NODE_STAMP := node_modules/.fedledger-installed
APT_STAMP := .venv/.fedledger-apt
# Node 22 from the `node` npm package comes first on PATH: Hardhat 3 refuses Node 20.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help install demo test test-solidity test-python lint bench clean

help:
	@echo "make demo   install what is missing, then run a full federated round end to end"
	@echo "make test   install what is missing, then lint, Solidity tests and the pytest suite"
	@echo "make bench  install what is missing, then print every benchmark as JSON"
	@echo "make lint   ruff on everything, mypy on fedledger/ node/ aggregator/ demo/ (pydantic plugin)"
	@echo "make clean  remove build outputs (keeps .venv and node_modules)"

$(PY_STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $@

$(NODE_STAMP): package.json package-lock.json scripts/ensure-edr.sh
	npm install --no-audit --no-fund
	./scripts/ensure-edr.sh
	@node --version | grep -q '^v2[2-9]' || { echo "node from node_modules/.bin is not >= 22" >&2; exit 1; }
	@touch $@

# Debian's ipfs-cid is an independent CID implementation the store tests compare against.
$(APT_STAMP): scripts/ensure-apt.sh | $(PY_STAMP)
	./scripts/ensure-apt.sh
	@touch $@

install: $(PY_STAMP) $(NODE_STAMP) $(APT_STAMP)

lint: $(PY_STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

test-solidity: $(NODE_STAMP)
	hardhat test solidity

test-python: install
	$(PY) -m pytest

test: install lint test-solidity test-python

demo: install
	fedledger demo

# Every benchmark prints JSON with ratios against a baseline measured in the same run.
BENCHES := chain sm9 store crypto secagg fl round
bench: install
	@for b in $(BENCHES); do echo "== fedledger bench $$b"; fedledger bench $$b --json || exit 1; done

clean:
	rm -rf artifacts cache build dist demo-output bench-output .pytest_cache .mypy_cache .ruff_cache
