# Targets match the README. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# checkov has a virtualenv of its own: its dependencies conflict with requirements-dev.txt's pins.
SCAN_VENV := .venv-scan
SCAN_BIN := $(SCAN_VENV)/bin
# sam build checks that the functions' runtime (python3.13) is on PATH; pyenv provides it here.
SAM_PYTHON_PATH := $(shell command -v pyenv >/dev/null 2>&1 && echo "$$(pyenv root)/versions/3.13.0/bin:")
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv test lint security demo local-up local-down document build deploy deploy-prod clean bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/pytest: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(SCAN_BIN)/checkov: requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_BIN)/pip install --quiet --upgrade pip
	$(SCAN_BIN)/pip install --quiet -r requirements-scan.txt
	touch $@

venv: $(BIN)/pytest $(SCAN_BIN)/checkov ## Create the virtualenvs with pinned dev and scanner dependencies

test: venv ## Run every test: static checks, unit, host script, wrapper, end to end
	$(BIN)/pytest --numprocesses auto --dist loadgroup

lint: venv ## Linters only (also part of `make test`)
	$(BIN)/pytest tests/static

security: venv ## Security gates only: scanners, least privilege, hostile input, secrecy (also in `make test`)
	$(BIN)/pytest --numprocesses 2 tests/security

demo: venv ## Run one real job end to end on the local stack, then take it down
	$(BIN)/python -m local_stack demo

local-up: venv ## Bring the local stack up and leave it running (last line: its JSON)
	@$(BIN)/python -m local_stack up

local-down: venv ## Take the local stack down
	$(BIN)/python -m local_stack down

bench: venv ## Benchmarks on a local stack of their own (bench/README.md): callback vs polling, costs, fan-out
	$(BIN)/python -m bench all

document: venv ## Embed src/host/*.sh into template.yaml's SSM documents
	$(BIN)/python scripts/embed_host_scripts.py

build: venv ## sam build (functions for python3.13, arm64)
	PATH="$(SAM_PYTHON_PATH)$$PATH" $(BIN)/sam build

deploy: build ## Deploy the default environment (samconfig.toml)
	$(BIN)/sam deploy

deploy-prod: build ## Deploy the prod environment (samconfig.toml)
	$(BIN)/sam deploy --config-env prod

clean: ## Remove build output and local stack state
	-$(BIN)/python -m local_stack down
	rm -rf .aws-sam .local-stack .pytest_cache .mypy_cache .ruff_cache
