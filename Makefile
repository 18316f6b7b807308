# pgclip: `make demo` and `make test` set up everything they need (see README).
SHELL := /bin/bash
# PG=18 (or 17): that PostgreSQL major, built from source into a cache the first time
# (scripts/postgres.sh); without PG=, the server pg_config reports.
PG ?=
ifneq ($(PG),)
PG_CONFIG := $(shell bash scripts/postgres.sh path $(PG))
endif
PG_CONFIG ?= pg_config
export PG PG_CONFIG
VENV ?= $(or $(PGCLIP_VENV),$(CURDIR)/.venv)
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
MAKEFLAGS += --no-print-directory

.PHONY: setup install install-upgrade-source start stop psql demo gallery test test-core unit tiny-model tiny-multilingual bench fuzz lint clean

setup:  ## system packages, pgvector, venv
	@PGCLIP_VENV=$(VENV) bash scripts/setup.sh

install: setup  ## PGXS install of the extension into the server pg_config reports
	@$(MAKE) -C extension PG_CONFIG=$(PG_CONFIG) PGCLIP_VENV=$(VENV) PYTHON=$(PY) >/dev/null
	@$(SUDO) $(MAKE) -C extension install PG_CONFIG=$(PG_CONFIG) PGCLIP_VENV=$(VENV) PYTHON=$(PY) >/dev/null
	@echo "[install] pgclip installed into $$($(PG_CONFIG) --sharedir)/extension"

start: install  ## start (or reuse) the embedded cluster (PG=18: a PostgreSQL 18 one); prints its URL last
	@bash scripts/cluster.sh start

stop:
	@bash scripts/cluster.sh stop

psql: start
	@bash scripts/cluster.sh psql

demo: start  ## sample images, text->image search
	@$(PY) scripts/demo.py "$$(bash scripts/cluster.sh url)"

gallery: $(if $(GALLERY_DB_URL),setup,start)  ## the gallery page on the embedded cluster (GALLERY_DB_URL=...: another database); prints its URL last
	@bash scripts/gallery.sh serve

# The core subset: install, embedding, auto-embed, search, extension and major-version upgrades.
CORE_TESTS := tests/extension/test_build_sql.py tests/extension/test_embed.py \
	tests/extension/test_auto_embed.py tests/extension/test_search.py \
	tests/extension/test_upgrade.py tests/extension/test_major_upgrade.py

test: lint install install-upgrade-source  ## lint, then the whole suite against real PostgreSQL clusters the tests start (PG=18: on 18)
	@bash scripts/gallery.sh setup --test
	@bash scripts/test.sh $(PYTEST_ARGS)

test-core: lint install install-upgrade-source  ## the core subset (CORE_TESTS); make test-core PG=17
	@bash scripts/test.sh $(CORE_TESTS) $(PYTEST_ARGS)

# test_major_upgrade moves a database from Debian's server into PG=N's: pgclip must be there too.
install-upgrade-source:
	@if [ -n "$(PG)" ]; then $(MAKE) install PG= PG_CONFIG=pg_config; fi

unit: setup  ## only the tests that need no PostgreSQL
	@bash scripts/test.sh tests/plpython $(PYTEST_ARGS)

bench:  ## pgclip against raw open_clip; writes bench/results/latest.{json,md} (BENCH_ARGS=--help)
	@bash bench/run.sh $(BENCH_ARGS)

fuzz: setup  ## atheris fuzzing of image decoding + preprocessing outside PostgreSQL (FUZZ_SECONDS=60; see fuzz/README.md)
	@PGCLIP_VENV=$(VENV) bash fuzz/run.sh

tiny-model: setup  ## retrain the committed test model (pgclip-tiny) from generated images
	@cd plpython && $(PY) -m pgclip.train_tiny

tiny-multilingual: setup  ## retrain pgclip-tiny-multilingual (tokenizer + model, English and Chinese)
	@cd plpython && HF_HUB_OFFLINE=1 $(PY) -m pgclip.train_multilingual

lint: setup  ## ruff (ruff.toml) and the release rules of extension/releases.toml
	@$(VENV)/bin/ruff check --quiet plpython tests bench scripts fuzz extension gallery
	@$(PY) extension/build_sql.py --check
	@echo "[lint] clean"

clean:
	@bash scripts/cluster.sh stop || true
	@rm -rf .pgclip extension/pgclip--*.sql extension/pgclip.control extension/build.stamp
