# kubequake: `make demo` and `make test` work on a fresh Debian machine with nothing installed by hand.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KQ := $(BIN)/kubequake
# haproxy: the LB; iptables: partitions and power-off black-holing; openssh-server: the SSH transport's
# tests; curl: HAProxy stats read on an LB node over SSH (the existing provider's tests); chromium:
# opening the Allure report in tests; vagrant, vagrant-libvirt, ruby, shellcheck: checking the
# Vagrantfile and provisioning scripts. Java (for the Allure 2 command line) and Node.js
# with npm are taken from the machine when present, else from Debian.
DEB_PACKAGES := haproxy iptables iproute2 openssh-server openssh-client curl procps psmisc ca-certificates \
	chromium vagrant vagrant-libvirt ruby shellcheck
NPM_DIR := harness/report/npm
NPM_STAMP := $(NPM_DIR)/node_modules/.installed
STAMP := $(VENV)/.installed

.PHONY: help setup system-packages venv binaries npm-tools test unit integration lint demo bench false-alarms clean down

help:
	@echo "make demo   - set up, start the local HA cluster, run the resilience suites under traffic, report, tear down"
	@echo "make test   - set up and run the project's own tests (unit + integration against real components)"
	@echo "make setup  - only install: Debian packages, Python venv, pinned Go builds (cached per machine)"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - performance figures (cluster up/down, memory, ...) into benchmarks/results/"
	@echo "make false-alarms - the default suite 10 times on a healthy cluster (about an hour)"

setup: system-packages venv binaries npm-tools

# Debian packages: installed only when missing, so a warm machine skips apt entirely.
system-packages:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v java >/dev/null || missing="$$missing default-jre-headless"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v go >/dev/null || { echo "Go 1.26+ is required to build the pinned Kubernetes, etcd and KWOK: install it (e.g. apt-get install golang-go from a release that ships 1.26) and re-run"; exit 2; }

venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The Allure command line, pinned by package-lock.json, from the npm registry.
npm-tools: $(NPM_STAMP)
$(NPM_STAMP): $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	npm ci --prefix $(NPM_DIR) --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

# Go builds land in ~/.cache/kubequake/<component>/<version>: once per machine, shared by every clone.
binaries: venv
	$(KQ) binaries

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy harness fixtures scenarios benchmarks

unit: venv
	$(BIN)/pytest tests/unit -q

integration: setup
	$(BIN)/pytest tests/integration -q

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy harness fixtures scenarios
	$(BIN)/pytest tests -q -p no:cacheprovider

demo: setup
	$(BIN)/python -m harness.demo

bench: setup
	$(BIN)/python benchmarks/cluster_lifecycle.py
	$(BIN)/python benchmarks/etcd_bootstrap.py
	$(BIN)/python benchmarks/traffic_throughput.py

# About an hour: its own target, never part of bench.
false-alarms: setup
	$(BIN)/python benchmarks/false_alarms.py

down: venv
	$(KQ) down

clean: down
	rm -rf reports/allure-results reports/allure-report reports/allure-report.html reports/junit.xml \
		reports/demo-progress.jsonl reports/demo-pytest.log reports/report-test reports/gate-junit.xml
