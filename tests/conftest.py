"""Shared fixtures: tiny synthetic data and a tiny trained run, seeded."""

from __future__ import annotations

import csv
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# As trainer.trees.import_lightgbm sets it: tests that import LightGBM themselves load libgomp first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math

import numpy as np
import pandas as pd
import pytest

from tests.shared import build_once
from trainer.config import RunConfig
from trainer.data.synthetic import make_synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout, for subprocesses' cwd



def serialized_example(features: dict) -> bytes:
    """A serialized tf.Example: str -> bytes_list, int -> int64_list, float -> float_list.

    None and NaN values are left out (a missing feature), as this package's
    TFRecord writer does.
    """
    import tensorflow as tf

    feature = {}
    for name, value in features.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# The serving tests' fixtures (servers on free loopback ports, references).
# tests.scheduling: the order of the tests on pytest-xdist's workers (the long modules first).
pytest_plugins = ["tests.serving_fixtures", "tests.object_storage",  # fixtures registered once: one emulator per session
                  "tests.scheduling"]


@pytest.fixture(scope="session")
def tiny_frame() -> pd.DataFrame:
    """2,000 negatives, 200 positives; numeric + categorical, with missing values."""
    return make_synthetic(negatives=2000, positives=200, seed=7)


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory, tiny_frame) -> str:
    def write(directory):
        directory.mkdir()
        tiny_frame.to_csv(directory / "tiny.csv", index=False)
        return str(directory / "tiny.csv")

    return build_once(tmp_path_factory, "csv", write)  # one file for every xdist worker (tests/shared.py)


def tiny_config(output_dir: str, data: str, **overrides) -> RunConfig:
    # Validation selection: the tiny data's 30 validation positives would
    # otherwise choose cross-validation (tested on its own in test_crossval_run).
    # No weighting study unless a test asks for it: it is one more final training per execution
    # (tested in test_tuning and test_weighting_study).
    values = dict(data=data, label="target", output_dir=output_dir, epochs=3, patience=2, verbose=0,
                  max_trials=2, tuning_epochs=2, selection="validation", skip_weighting_study=True)
    values.update(overrides)
    return RunConfig.from_dict(values)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_csv):
    """A run directory with a weighted and a baseline model, trained on tiny data (once for every xdist
    worker, tests/shared.py: tests only read it, or copy it).

    Returns:
      (config, weighted summary, baseline summary).
    """
    def train(directory):
        from trainer.pipeline import train_and_export

        config = tiny_config(str(directory / "run"), tiny_csv)
        return config, train_and_export(config), train_and_export(config, weighted=False)

    return build_once(tmp_path_factory, "run", train)


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory, tiny_csv):
    """`make tune`'s execution on tiny data: a 4-trial random search (TensorBoard logs included), ensemble
    selection, retrain and weighting study, no evaluation. Shared by test_tuning and test_tensorboard_hparams
    (tests/scheduling.py keeps them on one xdist worker; tests/shared.py: once in any case).

    Returns:
      (config, `tuning.pipeline.ExecutionSummary`).
    """
    def tune(directory):
        from tuning.pipeline import run_tuning

        config = tiny_config(str(directory / "run"), tiny_csv, max_trials=4, tuner="random", tuning_epochs=2,
                             epochs=2, skip_weighting_study=False)
        return config, run_tuning(config)

    return build_once(tmp_path_factory, "tune", tune)


# Fixtures that train models or start servers. A test using one, directly or through another
# fixture (`version_dir`, `server`, ...), is marked `slow`, so `make test-fast` (-m "not slow")
# trains nothing and serves nothing, and no test using them can miss the marker.
SLOW_FIXTURES = ("tiny_run", "tiny_search", "conformance_server")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if any(name in item.fixturenames for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def conformance_server(tmp_path_factory):
    """A server over the TF Serving-style SavedModel of tests/test_serving_models.py."""
    from tests.test_serving_models import start_conformance_server

    running = start_conformance_server(str(tmp_path_factory.mktemp("conformance")))
    yield running
    running.stop()


def first_execution(run_dir: str) -> str:
    """The first execution's directory of a tuning run."""
    return os.path.join(run_dir, "executions", "0001")


def read_trials(execution_dir: str) -> list[dict]:
    """The rows of an execution's `tuning/trials.csv`."""
    with open(os.path.join(execution_dir, "tuning", "trials.csv")) as handle:
        return list(csv.DictReader(handle))


def schema_of(features: pd.DataFrame, label: str, vocabulary_size: int = 1000, vocabulary_min_count: int = 1):
    """The schema the data step computes (its accumulators, `beam_stats.TrainStats`) of clean feature columns:
    numbers, or text with None/NaN missing. For tests that need a schema without a data step."""
    from trainer.data.beam_stats import TrainStats
    from trainer.data.statistics import frame_columns

    columns = frame_columns(features)
    stats = TrainStats()
    stats.add(columns.rows, columns.numeric, columns.categorical)
    kinds = [(name, "numeric" if name in columns.numeric else "categorical") for name in features.columns]
    return stats.schema(kinds, label, vocabulary_size, vocabulary_min_count)


def assert_numeric_statistics(schema, train: pd.DataFrame, names) -> None:
    """The schema's mean, std, 129 quantiles and missing fraction of `names` are NumPy's on the `train` rows."""
    by_name = {f.name: f for f in schema.features}
    for name in names:
        values = train[name].dropna().to_numpy()
        assert np.isclose(by_name[name].mean, values.mean()) and np.isclose(by_name[name].std, values.std())
        np.testing.assert_allclose(by_name[name].quantiles, np.quantile(values, np.linspace(0, 1, 129)))
        assert np.isclose(by_name[name].missing_fraction, train[name].isna().mean())
