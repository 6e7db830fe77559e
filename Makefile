# One entry point for people and CI. `make demo` runs the whole flow on the
# shipped samples; `make test` installs everything the tests need and runs them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo serve test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	mkdir -p var/inbox
	cp samples/pages/*.txt var/inbox/
	$(BIN)/newsletter ingest
	$(BIN)/newsletter subscribers
	$(BIN)/newsletter preview alice --out var/preview
	$(BIN)/newsletter digest
	@echo "Emails written to var/outbox/:"; ls var/outbox
	@echo "Open var/preview/alice.html in a browser to see alice's digest;"
	@echo "run 'make serve' and open the 'Manage preferences' link of an email to edit a profile."

serve: $(VENV)/.installed
	$(BIN)/newsletter serve

test: $(VENV)/.installed
	bash scripts/ensure-chromium
	bash scripts/ensure-postgresql
	$(BIN)/ruff check newsletter tests bench
	$(BIN)/mypy newsletter
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/bench_pipeline.py

lint: $(VENV)/.installed
	$(BIN)/ruff check newsletter tests bench
	$(BIN)/mypy newsletter

clean:
	rm -rf var preview .pytest_cache
