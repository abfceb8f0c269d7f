# The README's commands. Everything installs itself on a clean machine (venv, torch CPU wheel, npm packages,
# Debian chromium for the browser tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
BUNDLE := rldk_widget/static/widget.js
JS_SOURCES := $(wildcard js/src/*) js/package.json js/package-lock.json js/tsconfig.json
PYTEST_ARGS ?=

.PHONY: install js chromium demo test test-fast test-ppo bench lab clean

$(STAMP): pyproject.toml js/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[test,test-remote]"
	touch $(STAMP)

install: $(STAMP) $(BUNDLE)

# The bench extra (trackio, for benchmarks/single_call.py) only for make bench: make test runs that script's quick
# mode without it (trackio rows are printed as skipped).
$(BENCH_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[test,test-remote,bench]"
	touch $(BENCH_STAMP)

# The wheel build runs the same npm build; this rule rebuilds the bundle after a change in js/ during development.
$(BUNDLE): $(JS_SOURCES)
	cd js && npm ci --no-audit --no-fund && npm run build

js: $(BUNDLE)

chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

demo: install
	$(BIN)/python examples/demo.py --output-dir demo_output
	@echo "open demo_output/dashboard.html in a browser"

test: install chromium
	cd js && npm run typecheck
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -m "not training and not browser" $(PYTEST_ARGS)

# PPO lives in trl.experimental.ppo only in TRL 0.26-1.12: a separate venv with trl 1.12 and just what
# tests/test_ppo.py needs (the test extra asks for trl>=1.16).
test-ppo: install
	test -x .venv-ppo/bin/python || $(PYTHON) -m venv .venv-ppo
	.venv-ppo/bin/pip install --quiet torch==2.13.0
	.venv-ppo/bin/pip install --quiet -e ".[trl]" "trl==1.12.*" "pytest>=8" "pytest-timeout>=2.3" "datasets>=3.0" "tokenizers>=0.20"
	.venv-ppo/bin/python -m pytest -q -m ppo -o addopts="" tests/test_ppo.py

bench: install chromium $(BENCH_STAMP)
	$(BIN)/python benchmarks/run_all.py

lab: install
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .venv-ppo js/node_modules rldk_widget/static build dist *.egg-info
