# Set-up commands (see README): `make demo`, `make test`, `make test-fast`.
# They share one virtual environment in .venv, created on first use. The demo
# installs only the package; the tests add the test and bench extras. Every
# install is pinned by constraints.txt (`make constraints` regenerates it).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NEWSLETTER := $(abspath $(VENV))/bin/newsletter
DEMO ?= demo
CONSTRAINTS := constraints.txt
, := ,
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS)

.PHONY: demo test test-fast lint bench venv constraints clean

# $(call step,what,command): say what is starting (so a long install shows it
# is working), run the command with its output kept back (shown only when it
# fails), then finish the same line with the time it took.
define step
	@start=$$(date +%s%N); printf '  %s ... ' "$(1)"; \
	if out=$$( ( $(2) ) 2>&1 ); then \
		ms=$$(( ($$(date +%s%N) - start) / 1000000 )); \
		printf 'done in %d.%d s\n' $$((ms / 1000)) $$((ms % 1000 / 100)); \
	else \
		echo "failed"; echo "$$out"; echo "failed: $(1)" >&2; exit 1; \
	fi
endef

$(PY):
	$(call step,virtual environment in $(VENV),$(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet --upgrade pip)

# The old pure-Python `mjml` package and mjml-python share the import name
# `mjml`: an environment made before the switch has the old one, which must go
# (and mjml-python's overwritten files come back).
REPLACE_OLD_MJML := if $(PY) -m pip show -q mjml >/dev/null 2>&1; then \
	$(PY) -m pip uninstall -y -q mjml && $(PIP_INSTALL) --force-reinstall --no-deps mjml-python; fi

# The package alone: what `make demo` needs.
$(VENV)/.installed-demo: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(call step,install newsletter,$(PIP_INSTALL) -e . && $(REPLACE_OLD_MJML))
	@touch $@

# The package with the test and benchmark extras: what `make test` needs.
$(VENV)/.installed-test: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(call step,install newsletter with the test and bench extras,$(PIP_INSTALL) -e '.[test$(,)bench]' && $(REPLACE_OLD_MJML))
	@touch $@

venv: $(VENV)/.installed-test

# The main job on the embedded defaults: SQLite and the file transport (an outbox folder).
demo: $(VENV)/.installed-demo
	@echo "Demo in $(DEMO)/:"
	@rm -rf $(DEMO)
	$(call step,newsletter init,$(NEWSLETTER) init $(DEMO) --from "Demo Letter <letter@example.org>" \
		--postal-address "1 Demo Street$(,) Springfield" --base-url http://127.0.0.1:8000 --transport file)
	@cp subscribers/sample.csv $(DEMO)/subscribers/
	$(call step,subscribers import,cd $(DEMO) && $(NEWSLETTER) subscribers import subscribers/sample.csv --list readers)
	$(call step,subscribers list,cd $(DEMO) && $(NEWSLETTER) subscribers list --list readers)
	$(call step,lists list,cd $(DEMO) && $(NEWSLETTER) lists list)
	$(call step,compose,cd $(DEMO) && $(NEWSLETTER) compose articles/welcome.md --out build/)
	$(call step,check,cd $(DEMO) && $(NEWSLETTER) check articles/welcome.md)
	$(call step,send,cd $(DEMO) && $(NEWSLETTER) send articles/welcome.md --list readers --yes)
	@cd $(DEMO) && $(NEWSLETTER) campaigns show 1
	@echo "Demo workspace ready in $(DEMO): the sent messages are in $(DEMO)/outbox/."
	@echo "Try: cd $(DEMO) && $(NEWSLETTER) subscribers show ada@example.org"

# Everything: CI runs this (.ci/run).
test: $(VENV)/.installed-test
	$(PY) -m pytest

# The layers of ARCHITECTURE.md (import-linter contracts in pyproject.toml), the lint
# rules (ruff) and the types (mypy; strict for the lower layers); CI runs it.
lint: $(VENV)/.installed-test
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The edit-test loop: skips what needs time, services or a browser.
test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -m "not slow and not services and not browser"

bench: $(VENV)/.installed-test
	$(PY) benchmarks/bench_import.py

# Pin what `pip install -e '.[test,bench]'` resolves today, from a fresh environment.
constraints:
	rm -rf build/constraints-venv
	$(PYTHON) -m venv build/constraints-venv
	build/constraints-venv/bin/python -m pip install --quiet --upgrade pip
	build/constraints-venv/bin/python -m pip install --quiet -e '.[test,bench]'
	{ echo "# Pins for make and .ci/run (pip -c): what pip install -e '.[test,bench]' resolved."; \
	  echo "# Regenerate with: make constraints"; \
	  build/constraints-venv/bin/python -m pip freeze --exclude-editable; } > $(CONSTRAINTS)
	rm -rf build/constraints-venv

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
