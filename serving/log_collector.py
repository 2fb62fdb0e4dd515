"""Log collectors: where sampled requests go (TF Serving's `LogCollector` and its factory registry).

TF Serving's open-source build registers no collector at all; this server
registers one, `type: "tfrecord"` (`TFRecordCollector`), and refuses any other
type as TF Serving's `LogCollector::Create` does ("Cannot find
LogCollector::Factory for type: ...", NOT_FOUND).

`TFRecordCollector.collect` only appends the entry to a bounded queue (never
blocks: a full queue drops the entry and says so, for the caller to count);
one writer thread per collector wakes every `DRAIN_SECONDS` (or when the queue
is half full), builds the records of everything queued and appends them to
`<filename_prefix>-<UTC start>-<pid>-<collector id>-<part>.tfrecord`. The part
being written is a hidden sibling, `.<that name>.inprogress`, renamed when it
is closed: when it passes `max_file_bytes` (rotation), and on `close()`
(server stop, SIGTERM included), so a `<filename_prefix>-*` glob only ever
sees whole files.
Records are flushed after each such burst, so a crash loses at most the
last `DRAIN_SECONDS`. The writer works in bursts rather than per request (no
lock, no wake-up per request: a `collections.deque`, whose append is atomic)
because under the GIL every hand-off to it costs the request threads too.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable

import grpc
import tensorflow as tf
from tensorflow_serving.config import log_collector_config_pb2, logging_config_pb2

from serving import log_burst, prediction_log
from serving.errors import ServingError, invalid_argument

SUFFIX = ".tfrecord"
IN_PROGRESS = ".inprogress"
DRAIN_SECONDS = 0.05
RECORD_OVERHEAD_BYTES = 16  # a TFRecord's length, its CRC and the data's CRC

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CollectorOptions:
    """What the server's flags set for every collector (TF Serving's config has no field for them).

    Attributes:
      queue_size: Entries waiting for the writer; more are dropped (and counted).
      max_file_bytes: A file is closed and the next one started past this size.
    """

    queue_size: int = 4096
    max_file_bytes: int = 64 * 1024 * 1024


class TFRecordCollector:
    """Writes PredictionLog records to rotated TFRecord files from a writer thread.

    Args:
      config: The model's LogCollectorConfig (`filename_prefix` names the files).
      sampling: The SamplingConfig written into each record's metadata.
      collector_id: Tells apart collectors of one server that share a prefix.
      options: Queue size and rotation size.
      on_written: Called in the writer thread with (entry, records written, error or None).
    """

    def __init__(self, config: log_collector_config_pb2.LogCollectorConfig,
                 sampling: logging_config_pb2.SamplingConfig, collector_id: int, options: CollectorOptions,
                 on_written: Callable[[prediction_log.Entry, int, Exception | None], None] | None = None):
        if not config.filename_prefix:
            raise invalid_argument("log_collector_config.filename_prefix is required for type: tfrecord")
        self._prefix = os.path.abspath(config.filename_prefix)
        self._sampling = sampling
        self._stem = f"{self._prefix}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}-{collector_id}"
        self._options = options
        self._on_written = on_written
        self._queue: collections.deque = collections.deque()
        self._closed, self._wake = threading.Event(), threading.Event()
        self._writer: tf.io.TFRecordWriter | None = None
        self._part, self._bytes = 0, 0
        self.files: list[str] = []  # closed files, in order
        self.cpu_seconds = 0.0  # CPU time the writer thread has used
        self.prefix = config.filename_prefix
        self._thread = threading.Thread(target=self._run, name=f"request-log-{collector_id}", daemon=True)
        self._thread.start()

    def collect(self, entry: prediction_log.Entry) -> bool:
        """Queues `entry` for writing; False (nothing queued) when the queue is full or the collector closed."""
        size = len(self._queue)
        if size >= self._options.queue_size or self._closed.is_set():
            return False
        self._queue.append(entry)
        if size + 1 == self._options.queue_size // 2 + 1:
            self._wake.set()  # half full: drain now rather than at the next tick
        return True

    def close(self) -> None:
        """Writes what is queued, then closes and publishes the current file (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait(DRAIN_SECONDS)
            self._wake.clear()
            closing = self._closed.is_set()  # read before the drain: whatever came before close() is written
            burst = [self._queue.popleft() for _ in range(len(self._queue))]
            if burst:
                for entry, records in zip(burst, self._encode(burst), strict=True):
                    self._write(entry, records)
            if burst and self._writer is not None:
                self._writer.flush()
            self.cpu_seconds = time.thread_time()  # the writer's whole cost to the server, for the metrics page
            if closing:
                break
        self._finish_file()

    def _encode(self, burst: list[prediction_log.Entry]) -> list[list[bytes] | Exception]:
        try:
            return log_burst.encode(burst, self._sampling)
        except Exception as error:  # a bug there must not stop the writer: the burst is counted as failed
            return [error] * len(burst)

    def _write(self, entry: prediction_log.Entry, records: list[bytes] | Exception) -> None:
        written, error = 0, records if isinstance(records, Exception) else None
        if error is not None:
            log.error("request log: a %s request could not be logged: %s", entry.kind, error)
            records = []
        try:
            for record in records:
                if self._writer is None:
                    self._open_file()
                self._writer.write(record)
                written += 1
                self._bytes += len(record) + RECORD_OVERHEAD_BYTES
                if self._bytes >= self._options.max_file_bytes:
                    self._finish_file()
        except Exception as caught:  # a bad entry or a full disk must not stop the writer
            log.exception("request log: writing to %s failed", self._stem)
            error = caught
        if self._on_written is not None:
            self._on_written(entry, written, error)

    def _open_file(self) -> None:
        self._part += 1
        os.makedirs(os.path.dirname(self._prefix), exist_ok=True)
        self._writer = tf.io.TFRecordWriter(self._in_progress())
        self._bytes = 0

    def _finish_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        os.replace(self._in_progress(), self._path())
        self.files.append(self._path())

    def _path(self) -> str:
        return f"{self._stem}-{self._part:05d}{SUFFIX}"

    def _in_progress(self) -> str:
        directory, name = os.path.split(self._path())
        return os.path.join(directory, f".{name}{IN_PROGRESS}")


FACTORIES = {"tfrecord": TFRecordCollector}  # LogCollector::RegisterFactory's registry, fixed here


def check(config: logging_config_pb2.LoggingConfig, model_name: str) -> None:
    """Refuses a LoggingConfig no collector can take, before anything is created.

    Raises:
      ServingError: NOT_FOUND for an unknown collector type (TF Serving's
        message); INVALID_ARGUMENT for a sampling rate outside [0, 1] or a
        missing filename prefix.
    """
    kind = config.log_collector_config.type
    if kind not in FACTORIES:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Cannot find LogCollector::Factory for type: {kind} "
                           f"(model {model_name}; this server has: {', '.join(sorted(FACTORIES))})")
    rate = config.sampling_config.sampling_rate
    if not 0.0 <= rate <= 1.0:  # NaN fails too
        raise invalid_argument(f"sampling_config.sampling_rate of model {model_name} must be in [0, 1], got {rate}")
    if not config.log_collector_config.filename_prefix:
        raise invalid_argument(f"log_collector_config.filename_prefix of model {model_name} is required "
                               f"for type: {kind}")


def create(config: logging_config_pb2.LoggingConfig, collector_id: int, options: CollectorOptions,
           on_written=None) -> TFRecordCollector:
    """The collector `config` names (LogCollector::Create); `check` it first."""
    return FACTORIES[config.log_collector_config.type](config.log_collector_config, config.sampling_config,
                                                       collector_id, options, on_written)
