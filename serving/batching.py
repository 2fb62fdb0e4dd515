"""Server-side batching: concurrent requests merged into one signature call.

One small model call costs about the same for 1 row as for 32, so under
concurrency merging requests raises throughput. Each (signature, input names)
pair has a queue and a worker thread: the worker takes the first queued
request, waits up to `batch_timeout_micros` for more (never past
`max_batch_size` rows), runs them as one call and hands each caller its
slice. While a batch runs, new requests queue up, so even a zero timeout
batches under load without adding latency when idle.

A batch that fails is rerun request by request, so one bad request cannot fail
the others it happened to be batched with.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import threading
import time

import grpc
import numpy as np

from serving.errors import ServingError, as_serving_error
from serving.servable import Servable, Signature, batch_size, check_inputs

IDLE_SECONDS = 5.0  # an idle worker thread exits; the next request restarts it


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's batching parameters (defaults as its BatchingParameters).

    Attributes:
      max_batch_size: Most rows in one merged call; larger requests run alone.
      batch_timeout_micros: How long the first request of a batch waits for
        others.
      max_enqueued_batches: Queue bound, in batches; beyond it requests fail
        fast with RESOURCE_EXHAUSTED (HTTP 429) instead of piling up.
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100


class _Task:
    __slots__ = ("servable", "signature", "inputs", "rows", "enqueued", "future")

    def __init__(self, servable: Servable, signature: Signature, inputs: dict, rows: int):
        self.servable, self.signature, self.inputs, self.rows = servable, signature, inputs, rows
        self.enqueued = time.monotonic()
        self.future: concurrent.futures.Future = concurrent.futures.Future()


class _Queue:
    """The queue and worker of one (signature, input names) pair."""

    def __init__(self, options: BatchingOptions, name: str):
        self._options = options
        self._name = name
        self._cond = threading.Condition()
        self._tasks: collections.deque[_Task] = collections.deque()
        self._rows = 0
        self._worker_alive = False

    def submit(self, task: _Task) -> concurrent.futures.Future:
        """Queues `task`; its future gets the outputs (or the error) once its batch has run."""
        with self._cond:
            limit = self._options.max_batch_size * self._options.max_enqueued_batches
            if self._rows + task.rows > limit:
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"The batch scheduling queue for {self._name} is full ({self._rows} rows queued)")
            self._tasks.append(task)
            self._rows += task.rows
            if not self._worker_alive:
                self._worker_alive = True
                threading.Thread(target=self._work, name=f"batch-{self._name}", daemon=True).start()
            self._cond.notify()
        return task.future

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._tasks:
                    if not self._cond.wait(IDLE_SECONDS) and not self._tasks:
                        self._worker_alive = False  # under the lock, so submit() sees it
                        return
                deadline = self._tasks[0].enqueued + self._options.batch_timeout_micros / 1e6
                while self._rows < self._options.max_batch_size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._take()
            _execute(batch)

    def _take(self) -> list[_Task]:
        """Head tasks for one call: same servable, at most max_batch_size rows."""
        first = self._tasks.popleft()
        batch, rows = [first], first.rows
        while self._tasks:
            task = self._tasks[0]
            if task.servable is not first.servable or rows + task.rows > self._options.max_batch_size:
                break
            batch.append(self._tasks.popleft())
            rows += task.rows
        self._rows -= rows
        return batch


def _execute(batch: list[_Task]) -> None:
    # A request that went away (its future cancelled while queued) is dropped; the rest can no longer be
    # cancelled, so setting their results below cannot fail.
    batch = [task for task in batch if task.future.set_running_or_notify_cancel()]
    if len(batch) > 1:
        try:
            _run_merged(batch)
            return
        except Exception:  # rerun one by one below, so only the culprit gets the error
            pass
    for task in batch:
        try:
            outputs = task.servable.run(task.signature, task.inputs)
        except Exception as error:  # delivered to the waiting request
            task.future.set_exception(as_serving_error(error))
        else:
            task.future.set_result(outputs)


def _run_merged(batch: list[_Task]) -> None:
    first = batch[0]
    merged = {name: np.concatenate([task.inputs[name] for task in batch]) for name in first.inputs}
    outputs = first.servable.run(first.signature, merged)
    total = sum(task.rows for task in batch)
    if any(value.ndim == 0 or value.shape[0] != total for value in outputs.values()):
        raise ValueError("an output has no batch dimension; cannot split a merged batch")
    offset = 0
    results = []
    for task in batch:
        results.append({name: value[offset:offset + task.rows] for name, value in outputs.items()})
        offset += task.rows
    for task, result in zip(batch, results, strict=True):
        task.future.set_result(result)


class BatchScheduler:
    """Routes calls through per-signature queues.

    Args:
      options: The batching parameters.
    """

    def __init__(self, options: BatchingOptions):
        self._options = options
        self._lock = threading.Lock()
        self._queues: dict[tuple, _Queue] = {}

    def run(self, servable: Servable, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Like `servable.run`, but merged with concurrent calls."""
        future = self.submit(servable, signature, inputs)
        return servable.run(signature, inputs) if future is None else future.result()

    def submit(self, servable: Servable, signature: Signature, inputs: dict[str, np.ndarray]
               ) -> concurrent.futures.Future | None:
        """Queues the call without waiting for it: a future of its outputs, or None for a call that runs alone.

        A call with no rows or more than `max_batch_size` rows is not batched (None): the caller runs
        it (`servable.run`). Lets an event loop wait for a batch without holding a thread.

        Raises:
          ServingError: INVALID_ARGUMENT for inputs the signature refuses (checked before the call
            can join a batch); RESOURCE_EXHAUSTED when the queue is full.
        """
        check_inputs(signature, inputs)  # fail a bad request on its own, before it can join a batch
        rows = batch_size(inputs)
        if not rows or rows > self._options.max_batch_size:
            return None
        # Keyed by the servable object (one model version), so an old version's queue drains on its own
        # during a swap and two models' signatures of the same name never share a queue.
        key = (id(servable), signature.name, tuple(sorted(inputs)))
        with self._lock:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(self._options, f"{signature.name}-v{servable.version}")
        return queue.submit(_Task(servable, signature, inputs, rows))
