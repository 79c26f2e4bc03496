# Signet developer entry points. `make run` and `make test` are all the set-up a fresh
# machine needs: every target installs what it is missing (idempotently) first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
STATE_DIR ?= .state
export SIGNET_STATE_DIR := $(abspath $(STATE_DIR))
export SIGNET_CACHE_DIR ?= $(abspath .cache)
MEMBERS := services/common services/identity services/ca-gateway services/signer services/evidence services/notify services/prober sdk
PY_SOURCES := services/common/src services/identity/src services/ca-gateway/src services/signer/src services/evidence/src services/notify/src services/prober/src sdk/src scripts/helm_check.py tests bench

.PHONY: help system-deps venv lock proto proto-check lint fmt test test-unit helm-check run stop status demo bench chaos clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system-deps: ## Debian packages the platform needs (SoftHSM2, Java 17, Maven, PostgreSQL, OpenSSL)
	@bash scripts/system-deps.sh

$(VENV)/.installed: requirements.lock $(foreach m,$(MEMBERS),$(m)/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@$(UV) pip install -q --python $(PY) --require-hashes -r requirements.lock
	@$(UV) pip install -q --python $(PY) --no-deps $(foreach m,$(MEMBERS),-e $(m))
	@touch $@

venv: $(VENV)/.installed ## Python virtualenv from the lock file

lock: ## re-resolve requirements.lock from every member's pyproject
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q uv==$(UV_VERSION); }
	$(PY) scripts/lock.py

proto: venv ## regenerate Python code from proto/ (pinned grpcio-tools + mypy-protobuf)
	@bash scripts/proto.sh

proto-check: venv ## fail when the checked-in generated code is stale
	@bash scripts/proto.sh --check

lint: venv ## ruff (format check + lint) and mypy --strict
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/mypy $(PY_SOURCES)

fmt: venv ## apply ruff format and fixes
	$(VENV)/bin/ruff format $(PY_SOURCES)
	$(VENV)/bin/ruff check --fix $(PY_SOURCES)

test: system-deps venv ## whole suite against real SoftHSM, a real Kafka broker and PostgreSQL
	$(PY) -m pytest

helm-check: system-deps venv ## Helm chart: lint, render + kubernetes-validate, schema, promtool rule tests
	$(PY) scripts/helm_check.py

test-unit: venv ## unit and component tests only (no external parts)
	$(PY) -m pytest tests/unit tests/component

run: system-deps venv ## start SoftHSM token, Kafka and the five services; wait until healthy
	$(PY) -m signet.common.local.platform start

stop: venv ## stop everything `make run` started
	$(PY) -m signet.common.local.platform stop

status: venv ## health of every local process
	$(PY) -m signet.common.local.platform status

demo: run ## the whole flow through the SDK against `make run`: onboarding, signing, evidence, notifications
	$(VENV)/bin/signet demo

bench: system-deps venv ## benchmarks; results under bench/results/
	$(PY) -m bench

chaos: system-deps venv ## two replicas per service under SIGKILLs and a broker outage; availability + reconciliation
	$(PY) -m bench.chaos

clean: stop ## remove local state (keeps the download cache)
	rm -rf $(STATE_DIR)
