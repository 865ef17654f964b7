# Two set-up commands (see README): `make demo` and `make test`.
# Each creates its own virtual environment in .venv on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NEWSLETTER := $(abspath $(VENV))/bin/newsletter
DEMO ?= demo

.PHONY: demo test bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

# The main job on the embedded defaults: SQLite and the file transport (an outbox folder).
demo: venv
	rm -rf $(DEMO)
	$(NEWSLETTER) init $(DEMO) --from "Demo Letter <letter@example.org>" \
		--postal-address "1 Demo Street, Springfield" --base-url http://127.0.0.1:8000 --transport file
	cp subscribers/sample.csv $(DEMO)/subscribers/
	cd $(DEMO) && $(NEWSLETTER) subscribers import subscribers/sample.csv --list readers
	cd $(DEMO) && $(NEWSLETTER) subscribers list --list readers
	cd $(DEMO) && $(NEWSLETTER) lists list
	cd $(DEMO) && $(NEWSLETTER) compose articles/welcome.md --out build/
	cd $(DEMO) && $(NEWSLETTER) check articles/welcome.md
	cd $(DEMO) && $(NEWSLETTER) send articles/welcome.md --list readers --yes
	cd $(DEMO) && $(NEWSLETTER) campaigns show 1
	@echo "Demo workspace ready in $(DEMO): the sent messages are in $(DEMO)/outbox/."
	@echo "Try: cd $(DEMO) && $(NEWSLETTER) subscribers show ada@example.org"

test: venv
	$(PY) -m pytest

bench: venv
	$(PY) benchmarks/bench_import.py

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
