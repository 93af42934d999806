# cryovault — `make demo` and `make test` work on a fresh clone with only python3 installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

VENDOR := src/cryovault/web/ui/static/vendor
CHROMIUM := /usr/bin/chromium

.PHONY: install demo test lint bench clean browser

install: $(STAMP) $(VENDOR)/.installed

# Browser libraries from npm (package-lock.json), copied into the served static folder.
$(VENDOR)/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/
	cp node_modules/openseadragon/build/openseadragon/openseadragon.min.js $(VENDOR)/
	rm -rf $(VENDOR)/openseadragon-images
	cp -r node_modules/openseadragon/build/openseadragon/images $(VENDOR)/openseadragon-images
	touch $@

# Debian's Chromium for the browser tests (never a downloaded browser).
browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
	  (apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	   (apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null)) || \
	  sudo apt-get install -y --no-install-recommends chromium; }

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/cryovault demo --data-dir demo-data --host 127.0.0.1 --port 8000

# Runs on SQLite always, and on PostgreSQL too when a server answers on 127.0.0.1:5432.
test: install lint browser
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
	rm -rf $(VENV) $(VENDOR) node_modules demo-data .pytest_cache .ruff_cache .hypothesis
