"""Shared fixtures and references for the serving tests (no tests here).

The reference for every served number is the SavedModel itself: loaded with
`tf.saved_model.load` and its signature called directly, independently of the
server's code.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import socket

import numpy as np
import pytest
import requests
import tensorflow as tf

from serving.app import ServerOptions, start
from tests.conftest import serialized_example
from trainer.data.synthetic import make_synthetic

MODEL = "imbalance"


@pytest.fixture(scope="session")
def version_dir(tiny_run) -> str:
    """The tiny run's exported version 1 (read only)."""
    _, weighted, _ = tiny_run
    return weighted.version_dir


@pytest.fixture(scope="session")
def reference(version_dir):
    """The SavedModel, loaded independently of the server."""
    return tf.saved_model.load(version_dir)


@pytest.fixture(scope="session")
def rows() -> list[dict]:
    """Eight raw feature rows with missing values (NaN numbers, None strings)."""
    frame = make_synthetic(negatives=6, positives=2, seed=11).drop(columns=["target"])
    records = frame.to_dict(orient="records")
    records[0]["x1"] = float("nan")  # missing values must be served as the model treats them
    records[1]["region"] = None
    return records


@pytest.fixture(scope="session")
def server(tmp_path_factory, version_dir):
    """An in-process server on free loopback ports over a copy of version 1."""
    base = tmp_path_factory.mktemp("serving") / "model"
    shutil.copytree(version_dir, base / "1")
    options = ServerOptions(model_name=MODEL, model_base_path=str(base), port=0, rest_api_port=0,
                            file_system_poll_wait_seconds=0, max_request_bytes=1 << 20,
                            version_labels={"stable": 1})
    running = start(options)
    yield running
    running.stop()


def rest_url(server, suffix: str = "") -> str:
    return f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}{suffix}"


def post(url: str, payload, timeout: float = 30) -> requests.Response:
    # json.dumps, not requests' json=: it refuses NaN, which TF Serving accepts.
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return requests.post(url, data=data, timeout=timeout)


def feature_inputs(rows: list[dict]) -> dict[str, list]:
    """Columnar predict_features inputs: numbers as floats, None strings as ""."""
    names = rows[0].keys()
    return {name: [_json_value(row[name]) for row in rows] for name in names}


def _json_value(value):
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return float(value)


def feature_tensors(rows: list[dict]) -> dict[str, tf.Tensor]:
    columns = feature_inputs(rows)
    return {name: tf.constant(values, dtype=tf.string if isinstance(values[0], str) else tf.float32)
            for name, values in columns.items()}


def example_features(row: dict) -> dict:
    """A row as Classify JSON features: missing values left out (tf.Example style)."""
    return {key: value for key, value in row.items()
            if value is not None and not (isinstance(value, float) and math.isnan(value))}


def serialize(features: dict) -> bytes:
    """A tf.Example of the package's features: strings as bytes, every number as a float."""
    return serialized_example({key: value if isinstance(value, str) else float(value)
                               for key, value in features.items()})


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def call_signature(reference, name: str, **inputs) -> dict[str, np.ndarray]:
    return {key: value.numpy() for key, value in reference.signatures[name](**inputs).items()}


def assert_close(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=1e-5, atol=1e-6)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
