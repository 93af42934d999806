# cryovault — `make demo` and `make test` work on a fresh clone with only python3 installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/cryovault demo --data-dir demo-data --host 127.0.0.1 --port 8000

# Runs on SQLite always, and on PostgreSQL too when a server answers on 127.0.0.1:5432.
test: install lint
	@if $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5432), 2)" 2>/dev/null; then \
	  echo "PostgreSQL answers on 127.0.0.1:5432: running the suite on SQLite and PostgreSQL"; \
	  CRYOVAULT_TEST_POSTGRES_URL=$(PG_URL) $(BIN)/pytest; \
	else \
	  echo "no PostgreSQL on 127.0.0.1:5432: running the suite on SQLite only"; \
	  $(BIN)/pytest; \
	fi

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_hierarchy.py

clean:
	rm -rf $(VENV) demo-data .pytest_cache .ruff_cache .hypothesis
