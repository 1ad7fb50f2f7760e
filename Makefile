# Set-up is automatic: the first `make demo` or `make test` creates .venv and installs foveal
# with its dev tools; it re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick lint format clean bench browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/foveal demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# the quick subset while working: everything but the end-to-end training tests (marked slow)
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Headless Chromium for the browser tests (gallery, report): Debian's chromium + chromium-driver, installed
# with apt-get (as root, or with `sudo -n`) only when missing. On failure: a notice, and those tests skip.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; \
	else sudo=none; fi; \
	log=$${TMPDIR:-/tmp}/foveal-chromium-install.log; \
	if [ "$$sudo" != none ] && command -v apt-get >/dev/null 2>&1 \
		&& { $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends chromium chromium-driver; } >"$$log" 2>&1; then \
		echo "installed chromium and chromium-driver for the browser tests"; \
	else \
		echo "notice: could not install chromium/chromium-driver (needs root: apt-get install chromium chromium-driver; see $$log); browser tests will be skipped"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python benchmarks/train_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
