# meshlab entry points. Each target installs what it needs first (`make setup` is idempotent).
SHELL := /bin/bash
# The venv's Python: the system's when it is new enough, because on a hub every learner runs this .venv and
# must be able to read its interpreter (a Python under root's home, e.g. pyenv's, is not readable by them).
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.meshlab-setup

# `make setup BACKEND=kind` installs only what the kind backend needs (no Debian packages at all).
BACKEND ?= all
# lib/pyproject.toml's extras: the labs, the room's hub, the tools that check the hosting files (the image skips those)
EXTRAS ?= lab,hub,hosting-checks

.PHONY: setup system-packages labs test lab unit integration bench filters down clean handout handout-deps

FILTERS_STAMP := $(VENV)/.meshlab-filters
FILTER_SOURCES := $(shell find wasm-filters -type f -not -path '*/build/*' -not -path '*/node_modules/*' 2>/dev/null)

setup: system-packages $(STAMP) $(FILTERS_STAMP)

## Debian packages (the one list: lib/meshlab/system_packages.py): installed as root, else with `sudo -n`,
## else print the exact command and stop. Instant when everything is present.
system-packages:
	@$(PYTHON) lib/meshlab/system_packages.py $(BACKEND)

$(STAMP): lib/pyproject.toml hub/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e './lib[$(EXTRAS)]'
	$(BIN)/python -m meshlab.otlp --repair-protos  # xds-protos ships an older copy of opentelemetry's protos over them
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (meshlab)" >/dev/null
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/npm ci --prefix hub --no-audit --no-fund --loglevel=error  # the room hub's proxy
	$(BIN)/meshlab version
	@touch $@

## Every Wasm filter built, and so every npm dependency installed: after `make setup` no lab fetches anything.
$(FILTERS_STAMP): $(STAMP) $(FILTER_SOURCES)
	$(BIN)/python -m meshlab.wasm.cli build-all
	@touch $@

## Run every lab notebook headless on the local backend (exercise solutions on) into build/labs/; print a table.
## Labs run in parallel, each in its own state directory; JOBS=N sets how many at once (default: what the
## machine's cores and memory allow).
JOBS ?= 0
labs: setup
	$(BIN)/python tests/labs/run_labs.py --backend local --out build/labs --jobs $(JOBS)

## The whole test suite: unit, integration (real Envoy), notebooks (papermill + nbval).
test: setup handout-deps
	$(BIN)/python -m pytest tests

## What `meshlab export` needs to draw the handout's diagrams offline: Chromium (Debian) and Mermaid (npm, pinned).
handout-deps: setup
	@$(PYTHON) lib/meshlab/system_packages.py handout
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -c 'from meshlab.handout import install_mermaid; install_mermaid()'

## The handout: every lab run headless, then rendered to HTML with its diagrams drawn (build/handout/).
handout: labs handout-deps
	$(BIN)/meshlab export

unit: setup
	$(BIN)/python -m pytest tests/unit

integration: setup
	$(BIN)/python -m pytest tests/integration

## Open JupyterLab on your working copy of the labs, my-labs/ (git-ignored: labs/ stays pristine; `meshlab reset`
## offers to restore it). As root too: the netns network mode needs it. LAB_PORT=N picks the port;
## by default a free one, so several learners on one host never collide.
LAB_PORT ?=
lab: setup
	@$(BIN)/meshlab my-labs
	@token=$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(16))'); \
	 port=$${LAB_PORT:-$$($(BIN)/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}; \
	 extra=""; if [ "$$(id -u)" = 0 ]; then extra="--allow-root --no-browser"; fi; \
	 echo "JupyterLab on my-labs/: open http://127.0.0.1:$$port/lab?token=$$token (Ctrl-C stops it)"; \
	 MESHLAB_LABS=$(CURDIR)/my-labs $(BIN)/jupyter lab --notebook-dir=my-labs --ServerApp.port=$$port \
	   --ServerApp.port_retries=0 --IdentityProvider.token=$$token $$extra

bench: setup
	$(BIN)/meshlab bench
	$(BIN)/meshlab bench --wasm

## Build every WebAssembly filter in wasm-filters/ (reproducible: same input, same bytes).
filters: setup
	$(BIN)/python -m meshlab.wasm.cli build-all

## Remove everything a lab left running (processes, network namespaces, temp files).
down:
	@test -x $(BIN)/meshlab && $(BIN)/meshlab down || true

clean: down
	rm -rf build $(VENV)
