"""Server-side batching: merged calls, split results, a bad request fails alone."""

from __future__ import annotations

import shutil
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving import batching as batching_module
from serving.app import ServerOptions, start
from serving.batching import BatchingOptions, BatchScheduler
from serving.errors import ServingError, invalid_argument
from serving.servable import Signature
from tests.serving_fixtures import (
    MODEL,
    assert_close,
    b64,
    call_signature,
    example_features,
    feature_inputs,
    feature_tensors,
    post,
    rest_url,
    serialize,
)
from tests.test_serving_models import save_conformance_model

SIGNATURE = Signature(name="double", method_name="tensorflow/serving/predict",
                      inputs={"x": tf.TensorSpec([None], tf.float32)}, outputs=("y",), function=None)


class FakeServable:
    """Doubles its input and records the batch sizes it was called with."""

    version = 1

    def __init__(self):
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def run(self, signature, inputs):
        with self._lock:
            self.calls.append(len(inputs["x"]))
        if (inputs["x"] < 0).any():
            raise invalid_argument("negative input")
        return {"y": inputs["x"] * 2}


def _submit_concurrently(scheduler, servable, values: list[np.ndarray]) -> list:
    results = [None] * len(values)

    def call(index):
        try:
            results[index] = scheduler.run(servable, SIGNATURE, {"x": values[index]})
        except ServingError as error:
            results[index] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(values))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_requests_are_merged_and_split_back():
    servable = FakeServable()
    # A long timeout: the batch is released by reaching max_batch_size, not by the clock.
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=6, batch_timeout_micros=60_000_000))
    values = [np.array([i, i + 0.5], np.float32) for i in range(3)]
    results = _submit_concurrently(scheduler, servable, values)
    assert servable.calls == [6]
    for value, result in zip(values, results, strict=True):
        np.testing.assert_array_equal(result["y"], value * 2)


def test_a_failing_request_fails_alone():
    servable = FakeServable()
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=4, batch_timeout_micros=60_000_000))
    values = [np.array([1.0], np.float32), np.array([-1.0], np.float32),
              np.array([2.0], np.float32), np.array([3.0], np.float32)]
    results = _submit_concurrently(scheduler, servable, values)
    assert servable.calls[0] == 4 and sorted(servable.calls[1:]) == [1, 1, 1, 1]
    assert isinstance(results[1], ServingError) and results[1].code == grpc.StatusCode.INVALID_ARGUMENT
    for index in (0, 2, 3):
        np.testing.assert_array_equal(results[index]["y"], values[index] * 2)


def test_invalid_and_oversized_requests_bypass_the_queue():
    servable = FakeServable()
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=2, batch_timeout_micros=60_000_000))
    with pytest.raises(ServingError, match="float64"):
        scheduler.run(servable, SIGNATURE, {"x": np.zeros(1, np.float64)})
    result = scheduler.run(servable, SIGNATURE, {"x": np.ones(5, np.float32)})  # > max: runs alone, now
    np.testing.assert_array_equal(result["y"], np.full(5, 2.0))
    assert servable.calls == [5]


def test_a_request_that_went_away_is_dropped_from_its_batch():
    """A queued call whose future was cancelled (its REST request gone) is skipped; the others are answered."""
    servable = FakeServable()
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=3, batch_timeout_micros=200_000))
    gone = scheduler.submit(servable, SIGNATURE, {"x": np.array([9.0], np.float32)})
    assert gone.cancel()
    values = [np.array([1.0], np.float32), np.array([2.0], np.float32)]
    results = _submit_concurrently(scheduler, servable, values)
    for value, result in zip(values, results, strict=True):
        np.testing.assert_array_equal(result["y"], value * 2)
    assert sum(servable.calls) == 2  # the cancelled row never ran
    np.testing.assert_array_equal(scheduler.run(servable, SIGNATURE, {"x": np.array([4.0], np.float32)})["y"], [8.0])


@pytest.mark.slow
def test_batching_server_matches_saved_model(tmp_path, version_dir, reference, rows):
    base = tmp_path / "model"
    shutil.copytree(version_dir, base / "1")
    batching = BatchingOptions(max_batch_size=8, batch_timeout_micros=20_000)
    options = ServerOptions(MODEL, str(base), port=None, rest_api_port=0, file_system_poll_wait_seconds=0,
                            batching=batching)
    expected = call_signature(reference, "predict_features", **feature_tensors(rows))
    serialized = [serialize(example_features(row)) for row in rows]
    expected_default = call_signature(reference, "serving_default", examples=serialized)
    responses = {}

    def send(index):
        row = rows[index % len(rows)]
        if index == 5:  # not a tf.Example: must fail alone even if batched with others
            payload = {"instances": [b64(b"\xff\x00 garbage")]}
        elif index % 2:
            payload = {"instances": [b64(serialized[index % len(rows)])]}
        else:
            payload = {"signature_name": "predict_features", "inputs": feature_inputs([row])}
        responses[index] = post(rest_url(server, ":predict"), payload)

    with start(options) as server:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert responses[5].status_code == 400
    for index, response in responses.items():
        if index == 5:
            continue
        assert response.status_code == 200, response.text
        body, row = response.json(), index % len(rows)
        if index % 2:
            assert_close(body["predictions"][0]["scores"], expected_default["scores"][row])
        else:
            assert_close(body["outputs"]["scores"], expected["scores"][row:row + 1])
            assert_close(body["outputs"]["probabilities"], expected["probabilities"][row:row + 1])


def test_rest_requests_wait_for_their_batch_without_holding_a_thread(tmp_path, monkeypatch):
    """One REST worker thread, six concurrent :predict (then :classify) requests: still one merged call of six rows.

    A request waits for its batch in the event loop (on a future), not in a worker thread, so the
    thread pool does not bound how full batches get (with a thread per waiting request, the first one
    would hold the only thread until the 60 s timeout).
    """
    save_conformance_model(str(tmp_path / "model" / "1"))
    sizes = []
    execute = batching_module._execute

    def counting(batch):
        sizes.append(sum(task.rows for task in batch))
        execute(batch)

    monkeypatch.setattr(batching_module, "_execute", counting)
    options = ServerOptions("conformance", str(tmp_path / "model"), port=None, rest_api_port=0,
                            file_system_poll_wait_seconds=0, rest_api_num_threads=1,
                            batching=BatchingOptions(max_batch_size=6, batch_timeout_micros=60_000_000))
    responses = {}

    def send(index):
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/conformance"
        if index < 6:
            responses[index] = post(f"{url}:predict", {"instances": [float(index)]}, timeout=30)
        else:
            responses[index] = post(f"{url}:classify", {"signature_name": "classify_x_to_y",
                                                         "examples": [{"x": float(index)}]}, timeout=30)

    with start(options) as server:
        for indices in (range(6), range(6, 12)):
            threads = [threading.Thread(target=send, args=(i,)) for i in indices]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
    assert sizes == [6, 6]
    for index, response in responses.items():
        assert response.status_code == 200, response.text
        if index < 6:
            assert response.json() == {"predictions": [0.5 * index + 2]}
        else:
            assert response.json() == {"results": [[["", 0.5 * index + 2]]]}
