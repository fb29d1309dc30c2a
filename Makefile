# kindmesh: the two commands are `make up` (bring up the dev stack) and `make test`.
SHELL := /bin/bash
STACK ?= dev
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PULUMI ?= pulumi
# Local file backend inside the project (git-ignored): no Pulumi Cloud login.
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
# Passphrase secrets provider; this default is for local labs only. Set your own for anything shared.
export PULUMI_CONFIG_PASSPHRASE ?= kindmesh-local-lab
export PULUMI_SKIP_UPDATE_CHECK := true

.PHONY: venv test lint typecheck check up preview refresh destroy outputs verify bench e2e clean

$(PY): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(PY)

venv: $(PY)

test: $(PY)
	$(PY) -m pytest -q

lint: $(PY)
	$(PY) -m ruff check .

typecheck: $(PY)
	$(PY) -m mypy stacks components

check: lint typecheck test

.pulumi-state:
	mkdir -p .pulumi-state

stack: $(PY) .pulumi-state
	$(PULUMI) stack select --create --secrets-provider passphrase $(STACK)

up: stack
	$(PULUMI) up --yes --stack $(STACK)

preview: stack
	$(PULUMI) preview --diff --stack $(STACK)

refresh: stack
	$(PULUMI) refresh --yes --stack $(STACK)

destroy: stack
	$(PULUMI) destroy --yes --stack $(STACK)

outputs: stack
	$(PULUMI) stack output --stack $(STACK)

verify: stack
	$(PY) -m stacks.verify --stack $(STACK)

bench: $(PY)
	$(PY) bench/bench.py

e2e: $(PY) .pulumi-state
	KINDMESH_E2E=1 $(PY) -m pytest -q tests/e2e -rs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
