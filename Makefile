# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# .venv      : Airflow 3.x line + dev tools (default)
# .venv-af2  : Airflow 2.10 line, for the Airflow tests on both lines
# .venv-mwaa-<v> : one per Amazon MWAA image, on that image's pins (make test-mwaa)
PYTHON ?= python3
VENV := .venv
VENV_AF2 := .venv-af2
UV = $(VENV)/bin/uv

.PHONY: venv venv-af2 demo demo-cli test test-core test-af3 test-af2 test-e2e bench lint clean test-container \
	project-validator mwaa-wheel test-mwaa test-browser

venv: $(VENV)/.ready
venv-af2: $(VENV_AF2)/.ready

$(VENV)/.ready: pyproject.toml requirements/airflow3.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(VENV)/bin/python -m pip install -q uv
	$(UV) pip install -q -p $(VENV)/bin/python -r requirements/airflow3.txt -e '.[dev]'
	touch $@

$(VENV_AF2)/.ready: pyproject.toml requirements/airflow2.txt $(VENV)/.ready
	test -x $(VENV_AF2)/bin/python || $(UV) venv -q -p $(PYTHON) $(VENV_AF2)
	$(UV) pip install -q -p $(VENV_AF2)/bin/python -r requirements/airflow2.txt -e '.[dev]'
	touch $@

demo: venv
	$(VENV)/bin/python scripts/demo_airflow.py

# Besides the two development lines, the oldest MWAA image (2.10.3: Airflow 2.10, amazon
# 9.0.0, s3transfer 0.10) and the first Airflow 3 one (3.0.6); all five run in test-mwaa.
test: test-af3 test-af2 test-mwaa-2.10.3 test-mwaa-3.0.6

# Core + AWS + Airflow 3 tests in .venv
test-af3: venv
	$(VENV)/bin/python -m pytest -q

# Airflow tests again on the Airflow 2.10 line
test-af2: venv-af2
	$(VENV_AF2)/bin/python -m pytest -q -m airflow

# The runtime image built from the Dockerfile and run against moto with a Docker engine of
# its own (installed if missing, started and stopped by the tests); images and the stand-in
# base are cached in ~/.cache/handoff-test-container, whose own lock file (build.lock) the
# tests hold around debootstrap and docker build.
test-container: venv
	scripts/container-prereqs.sh
	$(VENV)/bin/python -m pytest -q -m container tests/container

# The suite on each Amazon MWAA image's own pins (requirements/mwaa-<v>.txt), against the
# project built once as a wheel; `make test-mwaa-<v>` runs one image. Images run one after
# the other: each run already keeps both cores busy (moto server + Airflow).
MWAA_IMAGES := 2.10.3 2.11.0 3.0.6 3.2.1 3.3.1
MWAA_WHEEL_DIR := build/mwaa-wheel

test-mwaa: $(addprefix test-mwaa-,$(MWAA_IMAGES))

mwaa-wheel: venv
	rm -rf $(MWAA_WHEEL_DIR)
	$(UV) build -q --wheel -o $(MWAA_WHEEL_DIR) .

test-mwaa-%: mwaa-wheel
	UV=$(UV) scripts/test_mwaa.sh $* $(MWAA_WHEEL_DIR)

# A real Airflow 3 deployment (LocalExecutor; scheduler, dag-processor, api-server,
# triggerer as separate processes) with its metadata DB in a PostgreSQL server of its own
# (Debian's, apt, installed if missing; the Postgres driver into .venv) + a moto server,
# running the example DAGs (tests/e2e).
test-e2e: venv
	scripts/e2e-prereqs.sh
	$(UV) pip install -q -p $(VENV)/bin/python -r requirements/e2e.txt
	$(VENV)/bin/python -m pytest -q -m e2e tests/e2e -p no:cacheprovider --timeout 900

# The runs view in headless Chromium (Debian's, apt) driven by playwright-core (npm, into
# build/browser/) against a real Airflow 3 api-server; rewrites docs/runs-view*.png.
test-browser: venv
	scripts/browser-prereqs.sh
	$(VENV)/bin/python -m pytest -q -m browser tests/browser -p no:cacheprovider --timeout 900

# Whole processes against the baseline a user would pick (see each script's docstring);
# about 5 minutes on 2 cores. bench/_util.py is shared, not a bench.
bench: venv
	for script in bench/[!_]*.py; do echo "== $$script"; $(VENV)/bin/python $$script || exit 1; done

# ruff on everything, mypy on the package (config in pyproject.toml)
lint: venv
	$(VENV)/bin/ruff check handoff_provider tests bench dags
	$(VENV)/bin/ruff format --check handoff_provider tests bench dags
	$(VENV)/bin/mypy

# project_schema.json compiled ahead of time (see the script's docstring for why 2.20.0)
project-validator: venv
	$(UV) run -q --isolated --no-project -p $(VENV)/bin/python --with fastjsonschema==2.20.0 \
		python scripts/generate_project_validator.py

clean:
	rm -rf $(VENV) $(VENV_AF2) .venv-mwaa-* build *.egg-info .pytest_cache

# The CLI-only walk-through (no Airflow): push, run twice from remote config, show state.
demo-cli: venv
	$(VENV)/bin/python scripts/demo.py
