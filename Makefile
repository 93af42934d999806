# cryovault — `make demo` and `make test` work on a fresh clone with only python3 installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

VENDOR := src/cryovault/web/ui/static/vendor
CHROMIUM := /usr/bin/chromium

.PHONY: install demo test lint bench clean browser ldap i18n

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

# Debian's OpenLDAP server for the directory tests (tests/access/test_ldap.py starts its own).
SLAPD := /usr/sbin/slapd
ldap:
	@test -x $(SLAPD) || { echo "installing Debian's slapd for the directory tests"; \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd >/dev/null 2>&1 || \
	   (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd >/dev/null)) || \
	  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd; }

# Portal translations: extract the marked texts of the templates, merge them into each catalog.
LOCALE := src/cryovault/web/ui/locale
i18n: install
	$(BIN)/pybabel extract -F babel.cfg -o $(LOCALE)/messages.pot --omit-header src/cryovault/web/ui
	for lang in fr de; do $(BIN)/pybabel update -i $(LOCALE)/messages.pot -d $(LOCALE) -l $$lang --omit-header --no-fuzzy-matching; done

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/cryovault demo --data-dir demo-data --host 127.0.0.1 --port 8000

# Runs on SQLite always, and on PostgreSQL too when a server answers on 127.0.0.1:5432.
test: install lint browser ldap
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
