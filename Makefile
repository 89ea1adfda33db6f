# The two commands of the README: `make demo` starts OmniCC, `make test` runs every test.
# Both create the virtual environment and install what they need on a fresh Debian 12.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test unit lint bench build clean

# The routing engine's hot modules are compiled with mypyc (setup.py): rebuild when they change.
HOT := setup.py src/omnicc/core/engine.py src/omnicc/core/pool.py src/omnicc/core/model.py

$(STAMP): pyproject.toml $(HOT)
	bash scripts/bootstrap.sh $(VENV)
	touch $(STAMP)

build: $(STAMP)

demo: $(STAMP)
	bash scripts/voice_packages.sh
	$(VENV)/bin/omnicc demo

test: $(STAMP)
	bash scripts/test_packages.sh
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest tests

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/routing.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
	find src -name '*.so' -delete
