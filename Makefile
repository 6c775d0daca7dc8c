# streamwreck: `make demo` (set up everything, run the pipeline locally, check it) and `make test` (the whole suite).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
JARS := build/kcl-jars
M2_REPO ?= $(HOME)/.m2/repository
PYTEST_ARGS ?=

.PHONY: help setup system-deps test-deps kcl-jars emulators venv lint test test-unit demo bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

setup: system-deps kcl-jars emulators venv ## what the demo needs: memcached, the KCL jars, the Kinesis emulator, Python deps

system-deps: ## memcached (and Java, Maven, Node.js, python3-venv if missing) from Debian's packages
	@scripts/system-deps.sh python-venv memcached java mvn node npm

test-deps: ## what only the tests need: chromium (Debian) and checkov (its own venv)
	@scripts/system-deps.sh chromium
	@$(MAKE) --no-print-directory iac-tools

$(JARS)/.done: services/processor/pom.xml
	@command -v mvn >/dev/null || { echo "setup: Maven is missing: install it (Debian: apt-get install maven)"; exit 2; }
	@command -v java >/dev/null || { echo "setup: Java 17+ is missing: install it (Debian: apt-get install openjdk-17-jre-headless)"; exit 2; }
	rm -rf $(JARS)
	mvn -q -B -Dmaven.repo.local=$(M2_REPO) -f services/processor/pom.xml dependency:copy-dependencies \
	    -DexcludeTransitive=true -DoutputDirectory=$(CURDIR)/$(JARS)
	touch $@

kcl-jars: $(JARS)/.done ## the KCL MultiLangDaemon jars, fetched by Maven into build/kcl-jars

node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null || { echo "setup: npm is missing: install Node.js 20+ (Debian: apt-get install nodejs npm)"; exit 2; }
	npm ci --no-audit --no-fund --loglevel=error

emulators: node_modules/.package-lock.json ## kinesis-local (npm); moto comes with the Python deps

# amazon-kclpy's build looks for its jars in a Maven repository: point it at the local one Maven just filled.
$(VENV)/.done: pyproject.toml $(JARS)/.done
	test -x $(BIN)/pip || $(PYTHON) -m venv --clear $(VENV)  # --clear: a venv cut short has a python but no pip
	KCL_MVN_REPO_SEARCH_URL=file://$(M2_REPO)/ $(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.done ## the virtual environment in .venv with every extra

lint: venv ## ruff and mypy (mypy reads the streamwreck package laid out by scripts/typecheck_tree.py)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) scripts/typecheck_tree.py build/typecheck
	$(BIN)/mypy

test: setup test-deps lint ## the whole suite: lint, unit, integration (real memcached, emulators, KCL daemon), end to end
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: venv ## the fast tests without servers (tests/unit)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

demo: setup ## the whole pipeline on this machine: 1,000 records, a consumer that skips every 5th, the checker naming them
	scripts/demo.sh

bench: setup ## the benchmarks under bench/
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean: ## remove what setup built
	rm -rf $(VENV) build node_modules .pytest_cache .mypy_cache .ruff_cache

include deploy.mk
include compose.mk
