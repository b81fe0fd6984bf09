# Everyday commands. `make demo` and `make test` each set up a fresh machine by themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
BIN := $(VENV)/bin
export NO_MKDOCS_2_WARNING := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo demo-data test sysdeps lint export check-export nbtest pytest docs docs-exec serve nbs clean bench wheel

# --- environments -------------------------------------------------------------------------------
$(VENV)/bin/python:
	python3 -m venv $(VENV)

# The runtime install: what a user gets from `pip install fastfound`, with torch pinned to the local CPU wheel.
$(VENV)/.installed: $(VENV)/bin/python setup.py settings.ini constraints.txt
	$(PIP) torch numpy
	$(PIP) -e .
	touch $@

# The development install: nbdev 2 and its companions, pytest, hypothesis, mkdocs.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e ".[dev]"
	touch $@

# Debian packages the tests and the docs use: the real Fashion-MNIST files, a headless browser for the docs test,
# KaTeX (script, stylesheet, fonts), which the docs build copies into the site so that the maths renders offline,
# and Python's docs, whose Sphinx inventory (objects.inv) lets the API reference link to docs.python.org.
SYSDEPS := dataset-fashion-mnist chromium libjs-katex fonts-katex python3-doc
sysdeps:
	@if [ ! -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || ! command -v chromium >/dev/null \
	    || [ ! -e /usr/share/javascript/katex/katex.min.js ] || [ ! -e /usr/share/fonts/truetype/katex/KaTeX_Main-Regular.woff2 ] \
	    || ! ls /usr/share/doc/python3.*/html/objects.inv >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then S=; else S=sudo; fi; \
	  $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq $(SYSDEPS) >/dev/null; \
	fi

# --- the two commands the README names ------------------------------------------------------------
# The main job, on the full Fashion-MNIST: Debian's dataset-fashion-mnist is installed first when this user can (root,
# or sudo, as `sysdeps` does for the tests); when it cannot, the one command that would is printed, and `fastfound fit`
# looks elsewhere (--data, $FASTFOUND_DATA, the cache, a download) and falls back to the bundled 5,000-image sample.
FMNIST ?= /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
demo-data:
	@if [ ! -e $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then S=; elif command -v sudo >/dev/null; then S=sudo; else S=none; fi; \
	  if [ "$$S" = none ] || ! command -v apt-get >/dev/null; then \
	    echo "make demo: to train on the full Fashion-MNIST, run: sudo apt-get install dataset-fashion-mnist"; \
	  elif ! { $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	           $$S apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; then \
	    echo "make demo: could not install it; to train on the full Fashion-MNIST, run:" \
	         "sudo apt-get install dataset-fashion-mnist"; \
	  fi; \
	fi

demo: $(VENV)/.installed demo-data
	OMP_WAIT_POLICY=PASSIVE $(BIN)/fastfound fit --out runs/demo

# The strict docs build runs once, before pytest; the browser test in tests/ then checks that very site.
test: export DOCS_SITE := $(CURDIR)/site
test: $(VENV)/.installed-dev sysdeps lint check-export nbtest docs pytest

# --- pieces -------------------------------------------------------------------------------------
export: $(VENV)/.installed-dev
	$(BIN)/nbdev_export

# Style: ruff.toml (100 characters a line, no `;`-chained statements) over the package and the notebooks.
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check fastfound nbs

# Notebooks are the source: exporting them must not change the committed package.
check-export: $(VENV)/.installed-dev
	@tmp=$$(mktemp -d); cp -r fastfound $$tmp/; $(BIN)/nbdev_export; \
	if ! diff -r -x __pycache__ $$tmp/fastfound fastfound; then \
	  echo "nbdev_export changed fastfound/: edit the notebooks, run 'make export', commit both."; exit 1; fi; \
	rm -rf $$tmp; echo "notebooks and package agree"

nbtest: $(VENV)/.installed-dev
	$(BIN)/nbdev_test --n_workers 2

pytest: $(VENV)/.installed-dev
	$(PY) -m pytest tests -q

# The site, from the outputs saved in the notebooks (docs/hooks.py renders nbs/*.ipynb); also writes README.md.
docs: $(VENV)/.installed-dev sysdeps
	$(BIN)/mkdocs build --strict

serve: $(VENV)/.installed-dev sysdeps
	$(BIN)/mkdocs serve -a 127.0.0.1:8000

# Execute every notebook first (saving its outputs), then build: a failing cell stops it, naming notebook and cell.
docs-exec: $(VENV)/.installed-dev sysdeps
	$(PY) tools/run_nbs.py
	$(BIN)/mkdocs build --strict

# Execute every notebook and save its outputs (the docs render saved outputs).
nbs: $(VENV)/.installed-dev
	$(PY) tools/run_nbs.py $(NB)

clean:
	$(BIN)/nbdev_clean

bench: $(VENV)/.installed-dev
	for f in bench/*.py; do echo "== $$f"; $(PY) $$f; done

wheel: $(VENV)/.installed-dev
	$(PY) -m build --wheel --outdir dist .
