# kindmesh: the two commands are `make up` (bring up the dev stack) and `make test`.
# Works as a non-root user with the distro Python: nothing here writes outside the project.
SHELL := /bin/bash
STACK ?= dev
PYTHON ?= python3
# The one Python floor (pyproject.toml `requires-python`, README): the dev pins need it
# (hypothesis 6.170 requires Python >= 3.11).
PY_MIN := 3.11
VENV := .venv
PY := $(VENV)/bin/python
PULUMI ?= pulumi
# Stamps live inside the venv (never touch the interpreter: it is a symlink to a root-owned
# file). Their names carry the requirements' contents, so a changed pin reinstalls.
REQ_HASH := $(shell cat requirements.txt 2>/dev/null | cksum | cut -d' ' -f1)
DEV_HASH := $(shell cat requirements.txt requirements-dev.txt 2>/dev/null | cksum | cut -d' ' -f1)
RUNTIME := $(VENV)/.installed-runtime-$(REQ_HASH)
DEV := $(VENV)/.installed-dev-$(DEV_HASH)
# How many steps the engine runs at once. Its default is 4 × CPUs (8 on a 2-CPU host), and most of
# a mesh's steps are waits (kind create, readiness gates): past two clusters they queued behind one
# another (docs/performance.md: modelled and measured). `pulumi` run by hand: set it yourself.
export PULUMI_PARALLEL ?= 64
# Local file backend inside the project (git-ignored): no Pulumi Cloud login.
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
# Passphrase secrets provider; this default is for local labs only. Set your own for anything shared.
# (Not when you use a passphrase file: Pulumi would read this variable first.)
ifeq ($(origin PULUMI_CONFIG_PASSPHRASE)$(origin PULUMI_CONFIG_PASSPHRASE_FILE),undefinedundefined)
export PULUMI_CONFIG_PASSPHRASE := kindmesh-local-lab
endif
export PULUMI_SKIP_UPDATE_CHECK := true
KUBECONFIG_FILE := $(CURDIR)/.kindmesh/$(STACK)/kubeconfig

.PHONY: venv dev-venv test lint typecheck check doctor up preview refresh destroy outputs verify diagnose \
        env kubeconfig new-stack bench e2e integration clean python-check stack-exists stack-create upgrade \
        tools tools-dir tools-smoke mutation

# ------------------------------------------------------------------------ virtualenv
python-check:
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || { \
	  echo "kindmesh: '$(PYTHON)' not found: install Python >= $(PY_MIN) with venv (Debian/Ubuntu: sudo apt install python3 python3-venv)" >&2; exit 1; }; \
	if ! $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= tuple(map(int, "$(PY_MIN)".split("."))) else 1)'; then \
	  echo "kindmesh: Python $$v found ('$(PYTHON)'), but kindmesh needs Python >= $(PY_MIN); install a newer one and run e.g. 'make PYTHON=python3.12 ...' (then 'make clean')" >&2; exit 1; fi

$(RUNTIME): requirements.txt
	@$(MAKE) -s python-check
	@if [ ! -x $(PY) ]; then \
	  $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "kindmesh: creating $(VENV) failed; on Debian/Ubuntu: sudo apt install python3-venv" >&2; exit 1; }; fi
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= tuple(map(int, "$(PY_MIN)".split("."))) else 1)' || { \
	  echo "kindmesh: $(VENV) was made with Python < $(PY_MIN); run 'make clean' and retry" >&2; exit 1; }
	$(PY) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-runtime-*
	@touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	@rm -f $(VENV)/.installed-dev-*
	@touch $@

venv: $(RUNTIME)
dev-venv: $(DEV)

test: $(DEV)
	$(PY) -m pytest -q

lint: $(DEV)
	$(PY) -m ruff check .

typecheck: $(DEV)
	$(PY) -m mypy kindmesh components stacks bench

check: lint typecheck test

# ------------------------------------------------------------------------ host check
doctor: $(RUNTIME)
	@$(PY) -m kindmesh.cli.doctor --stack $(STACK)

# ------------------------------------------------------------------------ stacks
.pulumi-state:
	@mkdir -p .pulumi-state

# The one way a stack is created: `make up` with an existing Pulumi.<STACK>.yaml (or
# `make new-stack NAME=...`, which writes that file first).
stack-create: doctor .pulumi-state
	@if [ ! -f "Pulumi.$(STACK).yaml" ]; then \
	  echo "kindmesh: no Pulumi.$(STACK).yaml: create the stack with 'make new-stack NAME=$(STACK)' (or pick one of: $$(ls Pulumi.*.yaml | sed -e 's/^Pulumi\.//' -e 's/\.yaml$$//' | grep -v '^yaml$$' | tr '\n' ' '))" >&2; exit 1; fi
	@$(PULUMI) stack select --create --secrets-provider passphrase $(STACK) >/dev/null

# Every other target acts on an existing stack only: a typo never creates one.
stack-exists: .pulumi-state
	@command -v $(PULUMI) >/dev/null || { echo "kindmesh: pulumi CLI not found: run 'make doctor' (install: https://www.pulumi.com/docs/iac/download-install/)" >&2; exit 1; }
	@err=$$($(PULUMI) stack select $(STACK) 2>&1 >/dev/null) || { \
	  if grep -qi "no stack named" <<<"$$err"; then \
	    echo "kindmesh: stack '$(STACK)' does not exist in $(PULUMI_BACKEND_URL); nothing was done." >&2; \
	    echo "  create it with 'make up STACK=$(STACK)' (needs Pulumi.$(STACK).yaml; 'make new-stack NAME=$(STACK)' writes one)" >&2; \
	  else echo "kindmesh: 'pulumi stack select $(STACK)' failed: $$err" >&2; fi; exit 1; }

# A failed `pulumi up` (a readiness gate, say) ends with the one command that finds the broken
# layer; pulumi's exit code is kept.
up: stack-create
	@echo "$(PULUMI) up --yes --stack $(STACK)"
	@$(PULUMI) up --yes --stack $(STACK) || { rc=$$?; \
	  echo "kindmesh: 'pulumi up' failed (exit $$rc). Find the broken layer of each cluster and what to do: make diagnose STACK=$(STACK)" >&2; \
	  exit $$rc; }
	@echo "kubectl: eval \"\$$(make -s env STACK=$(STACK))\" then kubectl --context <cluster name> ..."

preview: $(RUNTIME) stack-exists
	$(PULUMI) preview --diff --stack $(STACK)

refresh: $(RUNTIME) stack-exists
	$(PULUMI) refresh --yes --stack $(STACK)

destroy: $(RUNTIME) stack-exists
	$(PULUMI) destroy --yes --stack $(STACK)

# Move a running mesh to another Cilium version one cluster (or wave) at a time, checking every
# cluster after each step: make upgrade CILIUM=1.20.0 STACK=dev [CLUSTERS="1 2" | WAVES="1;2,3"]
upgrade: $(RUNTIME) stack-exists
	@[ -n "$(CILIUM)" ] || { echo 'kindmesh: give the version: make upgrade CILIUM=1.20.0 STACK=$(STACK) [CLUSTERS="1 2" | WAVES="1;2,3"]' >&2; exit 2; }
	@PULUMI="$(PULUMI)" $(PY) -m kindmesh.cli.upgrade --stack $(STACK) --cilium "$(CILIUM)" \
	  $(if $(CLUSTERS),--clusters "$(CLUSTERS)") $(if $(WAVES),--waves "$(WAVES)")

outputs: stack-exists
	$(PULUMI) stack output --stack $(STACK)

verify: $(RUNTIME) stack-exists
	@$(PY) -m kindmesh.cli.verify --stack $(STACK)

# Read-only walk of the stack's layers, in any state (never up, half up, up, partly destroyed): one
# table with the first broken layer of each cluster and its fix, an archive in .kindmesh/$(STACK)/.
# Exit 0 healthy, 1 a problem found, 2 could not run. Needs no Pulumi stack: it plans from the file.
diagnose: $(RUNTIME)
	@$(PY) -m kindmesh.cli.diagnose --stack $(STACK)

# Exports for plain `pulumi`/`kubectl`/`cilium` in this directory: eval "$(make -s env)"
env:
	@printf 'export PULUMI_BACKEND_URL=%q\n' "$(PULUMI_BACKEND_URL)"
	@if [ -n "$(PULUMI_CONFIG_PASSPHRASE_FILE)" ]; then printf 'export PULUMI_CONFIG_PASSPHRASE_FILE=%q\n' "$(PULUMI_CONFIG_PASSPHRASE_FILE)"; \
	  else printf 'export PULUMI_CONFIG_PASSPHRASE=%q\n' "$(PULUMI_CONFIG_PASSPHRASE)"; fi
	@printf 'export PULUMI_SKIP_UPDATE_CHECK=true\n'
	@printf 'export PULUMI_PARALLEL=%q\n' "$(PULUMI_PARALLEL)"
	@printf 'export KUBECONFIG=%q\n' "$(KUBECONFIG_FILE)"
	@[ -f "$(KUBECONFIG_FILE)" ] || echo "kindmesh: $(KUBECONFIG_FILE) does not exist yet (run 'make up STACK=$(STACK)')" >&2

# Rewrite .kindmesh/$(STACK)/kubeconfig from the stack's outputs (if you deleted it).
kubeconfig: $(RUNTIME) stack-exists
	@set -o pipefail; $(PULUMI) stack output kubeconfigs --show-secrets --json --stack $(STACK) \
	  | $(PY) -m kindmesh.deploy.context_file write --stack $(STACK) --stdin

new-stack: $(RUNTIME)
	@$(PY) -m kindmesh.cli.doctor --new-stack "$(NAME)"

# ------------------------------------------------------------------------ real tools (integration tier)
# The Pulumi CLI, its Python language host, the provider plugins and the Kubernetes control plane,
# built from their Go modules into a cache outside the checkout keyed by the pinned versions
# (KINDMESH_TOOLS_CACHE, default ~/.cache/kindmesh/tools). A second run builds nothing.
TOOLS_SCRIPT := tests/integration/build-tools.sh
tools:
	@bash $(TOOLS_SCRIPT)

# Print the ready tools directory (exit 1 with one line if it is not built).
tools-dir:
	@bash $(TOOLS_SCRIPT) --print-dir

# Prove the built CLI + language host + plugins work offline on a throwaway project.
tools-smoke: $(RUNTIME)
	@bash tests/integration/smoke-tools.sh "$$(bash $(TOOLS_SCRIPT) --print-dir)" "$(CURDIR)/$(PY)"

# ------------------------------------------------------------------------ other
bench: $(DEV)
	$(PY) bench/bench.py

# The real-engine tier (docs/integration.md): `make tools` once, then this. STACK_FILE=path runs
# one stack file's lifecycle; SCENARIOS="ci dev" picks shipped scenarios.
integration: $(DEV)
	$(PY) -m tests.integration.lifecycle $(if $(STACK_FILE),--stack-file $(STACK_FILE)) $(foreach s,$(SCENARIOS),--scenario $(s))

# Mutation testing (not part of CI; slow: hours for everything on 2 cores). mutmut mutates the pure core
# and the upgrade, preflight and doctor checks ([tool.mutmut] in pyproject.toml) and runs their fast
# tests against every mutant. MUTANTS="kindmesh.core.naming*" runs a subset; the results stay in
# mutants/ (git-ignored): `$(PY) -m mutmut browse`, `$(PY) -m mutmut show <name>`.
MUTANTS ?=
MUTATION_JOBS ?= 2
mutation: $(DEV)
	$(PY) -m mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(PY) -m mutmut export-cicd-stats
	@$(PY) -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); print("kindmesh mutation:", ", ".join(f"{k} {v}" for k, v in s.items()))'

e2e: $(DEV) .pulumi-state
	KINDMESH_E2E=1 $(PY) -m pytest -q tests/e2e -rs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
