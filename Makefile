# Set-up happens on first use: a virtual environment in .venv with the local CPU
# build of torch (torch==2.13.0; an unpinned torch would pull CUDA builds), the
# package in editable mode with its test extras, and Graphviz's `dot` program.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-julia test-julia-package test-julia-bridge julia-schema conformance clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
	      || echo "note: could not install Graphviz; SVG/PNG drawing tests will be skipped"; \
	  else echo "note: install Graphviz (apt-get install graphviz) for SVG/PNG drawings"; fi; }
	touch $(STAMP)

# The main job: knowledge distillation on the bundled digits data.
demo: $(STAMP)
	$(BIN)/dlearn demo

# The whole test suite (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest

# On a machine with Julia >= 1.10 and network: the Flux.jl backend's own tests (Pkg.test()),
# then the conformance suite and the bridge tests through juliacall (CI runs both halves).
test-julia: test-julia-package test-julia-bridge

test-julia-package:
	julia --project=julia -e 'using Pkg; Pkg.instantiate(); Pkg.test()'

test-julia-bridge: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[julia]'
	$(BIN)/dlearn conformance --backend julia
	$(BIN)/python -m pytest -q tests/test_julia_bridge.py tests/test_julia_runtime.py

# The Julia package ships its own copy of the JSON Schema (it must work installed on its own);
# tests/test_julia_packaging.py fails when the copy differs from schema/.
julia-schema:
	cp schema/learning-diagram.schema.json julia/schema/learning-diagram.schema.json

conformance: $(STAMP)
	$(BIN)/dlearn conformance --backend all

clean:
	rm -rf $(VENV) build dist runs .pytest_cache
