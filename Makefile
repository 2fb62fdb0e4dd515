# Every target installs what it needs first (the .venv stamp).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
RUN ?= runs/sylva
DATA ?= sylva
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install tune train evaluate report serve test test-fast bench bench-quick bench-confirm bench-confirm-quick bench-autogluon-env bench-confirm-autogluon bench-serving bench-tune bench-scale bench-batch lint clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $@

# The search stops starting trials after TIME_BUDGET seconds (the portfolio's trials come first); the final
# trainings, TFMA and the report follow it, unbounded. On sylva, 2 cores run all 10 trials within the
# budget and the whole job in about 2.5-4 minutes (docs/benchmarks.md, "make tune on sylva").
TIME_BUDGET ?= 120
tune: install
	$(PY) -m tuning.task --data $(DATA) --output-dir $(RUN) --time-budget $(TIME_BUDGET)

train: install
	$(PY) -m trainer.task --data $(DATA) --output-dir $(RUN)

evaluate: install
	$(PY) -m evaluation.task --run $(RUN)

report: install
	$(PY) -m evaluation.task --run $(RUN) --report-only

serve: install
	$(PY) -m serving.server --model_name imbalance --model_base_path $(RUN)/serving_model --port 8500 --rest_api_port 8501

# Two pytest workers (pytest-xdist): most tests are single-threaded Python (Beam, TFMA, keras-tuner),
# so the 2 cores run two at once. worksteal balances test by test (a worker may rebuild a module
# fixture the other also built); measured 7:44 against 11:23 for whole files per worker (README).
# --durations=15 prints the slowest tests, so a test that grows past its budget shows in every run.
test: install
	$(PY) -m pytest tests -n 2 --dist worksteal --durations=15

# Unit tests only: no training, Beam, TFMA or server (tests/conftest.py marks users of such fixtures `slow`).
test-fast: install
	$(PY) -m pytest tests -m "not slow" -n 2 --dist worksteal

bench: install
	$(PY) -m benchmarks.run --full

bench-quick: install
	$(PY) -m benchmarks.run

# The confirmation protocol (docs/benchmarks.md, "Protocol"): the package (through `make tune`'s own command, push gate included) against library
# defaults and tuned peers on the confirmation sets, which no default was chosen on (docs/benchmarks.md,
# "Confirmation"). Hours on 2 CPUs; the quick variant (2 small sets, 1 seed, 3 trials) takes a few minutes.
bench-confirm: install bench-autogluon-env
	$(PY) -m benchmarks.confirm

bench-confirm-quick: install
	$(PY) -m benchmarks.confirm --quick

# AutoGluon, a benchmark contender only (never a dependency of the package): its own Python 3.11 venv, so its
# pins cannot clash with the stack's; no torch (the tabular tree models only). `benchmarks/autogluon_contender.py`
# runs `benchmarks/autogluon_fit.py` with this venv's python.
AUTOGLUON_VENV := .venv-autogluon
AUTOGLUON_SPEC := autogluon.tabular[lightgbm,catboost,xgboost]==1.6.3
bench-autogluon-env: $(AUTOGLUON_VENV)/.installed

$(AUTOGLUON_VENV)/.installed:
	$(PYTHON) -m venv $(AUTOGLUON_VENV)
	$(AUTOGLUON_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AUTOGLUON_VENV)/bin/python -m pip install --quiet "$(AUTOGLUON_SPEC)" pyarrow
	! $(AUTOGLUON_VENV)/bin/python -m pip show --quiet torch 2>/dev/null  # the tabular extras must not pull torch in
	touch $@

# The AutoGluon contender alone (`medium_quality`, the package's recorded wall time as its budget) on the
# confirmation sets; its records merge into benchmarks/results/confirmation.json with the others'.
bench-confirm-autogluon: install bench-autogluon-env
	$(PY) -m benchmarks.confirm --contenders autogluon_medium

bench-serving: install
	$(PY) -m benchmarks.serving
	$(PY) -m benchmarks.serving_logging

bench-tune: install
	$(PY) -m benchmarks.make_tune --time-budget $(TIME_BUDGET)

# The data step and one training epoch at 0.5M, 2M and 5M synthetic CSV rows (docs/benchmarks.md, "Scale");
# CSVs under /tmp/imbalance-scale (about 1.3 GB at 5M rows), removed at the end.
bench-scale: install
	$(PY) -m benchmarks.scale

# Batch scoring (`python -m serving.batch`) at 0.5M and 5M synthetic CSV rows, one and two direct-runner
# workers, against the model's signature alone (docs/benchmarks.md, "Batch scoring"); CSVs under
# /tmp/imbalance-batch, removed at the end.
bench-batch: install
	$(PY) -m benchmarks.batch_scoring

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
