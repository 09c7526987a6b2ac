# dropship's commands. Quick start: `make up`, then `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := venv
PY := $(VENV)/bin/python
export DROPSHIP_CACHE ?= $(HOME)/.cache/dropship
# The local stack: file backend in the repo, documented development passphrase.
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
export PULUMI_CONFIG_PASSPHRASE ?= dropship-local-development
LOCAL_STACK := local
TAG ?=
N ?= 3
MODULES ?=
PULUMI := . offline/pulumi-env.sh && pulumi

.PHONY: help deps venv toolchain engine-info check lint test test-unit test-system test-e2e up release down bench reliability flake-hunt

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

deps: ## Debian packages the project and its tests use (apt)
	@bash dev/apt-deps.sh

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## the project's virtualenv (runtime and dev requirements)

toolchain: venv ## the Pulumi CLI, Python language host and command provider (built once, cached)
	@bash offline/toolchain.sh >/dev/null

engine-info: toolchain ## which Pulumi engine and command provider are in use (official or offline/)
	@bash offline/toolchain.sh --describe

check: venv ## the fast loop, needing only Python and the venv: ruff, mypy, shellcheck, unit tier (< 60 s)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	git ls-files '*.sh' | xargs $(VENV)/bin/shellcheck -x
	$(MAKE) --no-print-directory test-unit

lint: venv ## ruff, mypy, shellcheck, and actionlint on the workflows (built with Go)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	git ls-files '*.sh' | xargs $(VENV)/bin/shellcheck -x
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash dev/lint-workflows.sh

test-unit: venv ## the unit tier: settings, components under Pulumi mocks, host scripts, docs (venv only)
	$(PY) -m pytest -m "not e2e and not system"

test-system: venv deps toolchain ## the system tier: the offline command provider against a throwaway sshd, actionlint
	$(PY) -m pytest -m system

test-e2e: venv deps toolchain ## the end-to-end tier: real engine, real test host, real registry
	$(PY) -m pytest -m e2e

test: engine-info lint ## everything: lint, unit, system and end-to-end tiers
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory test-system
	$(MAKE) --no-print-directory test-e2e

up: venv deps engine-info ## deploy the example app to the local test host and print its URL
	@bash dev/local.sh up

release: venv deps toolchain ## build and push the example images as TAG and deploy them: make release TAG=v2
	@test -n "$(TAG)" || { echo "usage: make release TAG=<tag>" >&2; exit 2; }
	@bash dev/local.sh release "$(TAG)"

down: venv toolchain ## destroy the local stack, remove the test host and the registry
	@bash dev/local.sh down

bench: venv deps engine-info ## time fresh, no-op and release `up`s on the local stack
	@$(PY) dev/bench.py

reliability: venv deps toolchain ## faults, bad input and secret leaks against the real engine: prints a table
	@$(PY) dev/reliability.py

flake-hunt: venv deps ## the timing-sensitive e2e modules N times each on a clean clone of HEAD: make flake-hunt N=3 MODULES="shop:5 day_two:5 faults"
	@FLAKE_RUNS="$(N)" FLAKE_MODULES="$(MODULES)" $(PY) dev/flake_hunt.py
