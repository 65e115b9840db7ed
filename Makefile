# Every target does its own prerequisites: on a fresh machine `make demo` and `make test` are enough.
SHELL := /bin/bash
PY    := .venv/bin/python
STAMP := .venv/.installed

.PHONY: install cluster cluster-stop demo lint docs test unit soak bench bench-quick clean matrix matrix-cluster

install: $(STAMP)

$(STAMP): pyproject.toml tools/pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q -e tools  # ais_local + ais_wds_bench (tools/pyproject.toml), not in the wheel
	@touch $(STAMP)

cluster:
	@scripts/ais-local start

cluster-stop:
	@scripts/ais-local stop

demo: install
	@ep="$$(scripts/ais-local start)" && eval "export $$ep" && $(PY) examples/train_digits.py

lint: install
	.venv/bin/ruff check ais_wds tests scripts tools examples
	.venv/bin/mypy

# The docs site (mkdocs.yml, docs/): strict, so a broken link or anchor, or an API reference to a missing name,
# fails the build; into site/ (git-ignored).
docs: install
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir site

test: install lint docs
	@ep="$$(scripts/ais-local start)" && eval "export $$ep" && $(PY) -m pytest -q -ra $(PYTEST_ARGS)

# The tests that need no cluster, on 2 pytest-xdist workers: their slow part is a dozen subprocesses that import
# torch (~1.7 s of CPU each), one per core. PYTEST_ARGS="-n 0" runs them in one process.
unit: install
	AIS_WDS_UNIT_ONLY=1 $(PY) -m pytest -q -n 2 -m "not cluster and not unit_suite" $(PYTEST_ARGS)

# The test matrix (noxfile.py), each Python in its own virtualenv under .nox/ (interpreters found on PATH or in
# pyenv, never downloaded): matrix = the unit suite on 3.10, 3.11, 3.12 and 3.13 (no cluster; CI runs it);
# matrix-cluster = the whole suite on 3.13 and 3.10 against the local cluster. NOX_ARGS: e.g. `-s unit-3.12 -- -k x`.
matrix: install
	.venv/bin/nox -s unit $(NOX_ARGS)

matrix-cluster: install
	@ep="$$(scripts/ais-local start)" && eval "export $$ep" && .venv/bin/nox -s cluster $(NOX_ARGS)

bench: install
	@ep="$$(scripts/ais-local start)" && eval "export $$ep" && $(PY) -m ais_wds_bench $(BENCH_ARGS)

bench-quick: install
	@ep="$$(scripts/ais-local start)" && eval "export $$ep" && $(PY) -m ais_wds_bench --quick $(BENCH_ARGS)

clean:
	-scripts/ais-local stop --wipe
	rm -rf .venv .cache build *.egg-info tools/*.egg-info

# The fault catalogue at full size: 200 connection cuts per scenario, and 20 GB streamed with RSS/fd checks
# (tests/system/test_faults.py, tests/system/test_faults_soak.py; see docs/reliability.md). Not part of `make test`;
# CI (.ci/run) runs it after `make test`.
soak: install
	@ep="$$(scripts/ais-local start)" && eval "export $$ep" && \
	AIS_WDS_FAULT_CUTS=200 $(PY) -m pytest -q -ra -s --durations=5 tests/system/test_faults.py -k cuts $(PYTEST_ARGS) && \
	AIS_WDS_SOAK=1 $(PY) -m pytest -q -ra -s tests/system/test_faults_soak.py $(PYTEST_ARGS)
