# vz-traffic-exporter: make demo | make test (see README.md)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: all demo demo-stop demo-fleet demo-fleet-stop demo-fleet-deps test quick lint typecheck unit integration bench deps demo-deps venv clean package binary sdist fuzz

all: test

deps:
	@./scripts/install-deps test

demo-deps:
	@./scripts/install-deps demo

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' || { echo "pip builds python-iptables, which needs gcc, python3-dev and python3-venv (apt-get install gcc python3-dev python3-venv)" >&2; exit 1; }
	@touch $@

venv: $(BIN)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/vz-traffic-exporter --config config.example.yaml check-config

typecheck: venv
	$(BIN)/mypy

# Tests run in TEST_JOBS processes (most of their time is waiting on namespace labs and servers), one
# file at a time each (a module's costly fixture is made once), the files with slow tests first.
TEST_JOBS ?= 4
PYTEST := $(BIN)/pytest -q -rs -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder

unit: venv
	$(PYTEST) tests/unit

integration: deps venv
	$(PYTEST) tests/integration

test: deps venv lint typecheck
	$(PYTEST)

# The suite without the tests marked slow (ten seconds or more each), for a quick round while editing.
quick: venv
	$(PYTEST) -m "not slow"

# Hostile inputs: many more cases than make test runs (docs/fuzz.md has the last run's figures).
FUZZ_SEED  ?= 1
FUZZ_CASES ?= 20000
fuzz: venv
	$(BIN)/python -m tests.fuzz --seed $(FUZZ_SEED) --cases $(FUZZ_CASES)

bench: deps venv
	$(BIN)/python bench/state_bench.py
	$(BIN)/python bench/store_bench.py
	$(BIN)/python bench/netfilter_bench.py
	$(BIN)/python bench/fleet_bench.py

package: venv
	./scripts/build-packages

# The exporter as one static binary (no Python, no glibc of the host's): dist/vz-traffic-exporter-<version>-x86_64.
binary:
	./scripts/build-binary

# A source archive for pip on a host without a checkout (docs/install.md): the committed tree.
sdist:
	@mkdir -p dist
	git archive --format=tar.gz --prefix=vz-traffic-exporter/ -o dist/vz-traffic-exporter.tar.gz HEAD
	@echo dist/vz-traffic-exporter.tar.gz


demo: demo-deps venv
	$(BIN)/python -m netlab.demo

demo-stop: venv
	$(BIN)/python -m netlab.demo --stop

demo-fleet-deps:
	@./scripts/install-deps demo-fleet

demo-fleet: demo-fleet-deps venv
	$(BIN)/python -m netlab.demo_fleet

demo-fleet-stop: venv
	$(BIN)/python -m netlab.demo_fleet --stop

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis .demo .demo-fleet
