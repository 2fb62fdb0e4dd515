"""Output files of batch scoring, one per input range, written by the worker that scored it.

A worker reads a range and scores its rows in order within a bundle, so a
writer keeps one file open, for the range whose rows it is receiving, and
publishes it (renames it from a temporary name) when rows of another range
arrive or the bundle ends: its memory is one range's, however many ranges a
bundle holds, and a retried bundle rewrites the same names, so no reader
sees half a file. Rows reach the files without a shuffle, so the runner
(and, with the in-process runner, the driver) holds no rows. Names are
`predictions-<range>.parquet`, `prediction_logs-<range>.tfrecord.gz`
(`--format prediction_log`) and `errors-<range>.jsonl` (`errors-<range>-refused.jsonl` for the rows of
batches the model refused), with ranges numbered
in input order, so reading the files in name order gives the rows in input
order. Should a runner hand a writer more rows of a range it has already
closed, they go to `<name>-<k>` continuation files, never over the first.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import uuid

import apache_beam as beam
import numpy as np
import pyarrow as pa

from serving.batch_handlers import METRICS_NAMESPACE, Scored
from serving.batch_rows import RowError
from trainer import storage
from trainer.data.beam_files import frame_records

PARQUET, PREDICTION_LOG = "parquet", "prediction_log"
FORMATS = (PARQUET, PREDICTION_LOG)
ROW_GROUP_ROWS = 65_536
PROBABILITY, CLASS_ID, MODEL_VERSION = "probability", "class_id", "model_version"
SCORED_COUNTER, ERRORS_COUNTER = "rows_scored", "row_errors"
REFUSED = "refused"  # errors-<range>-refused.jsonl: rows of batches the model refused
# Written last into an output on object storage (no rename there): readers trust such an output only with it.
SUCCESS_FILE = "_SUCCESS"


def predictions_name(part: int, output_format: str, continuation: int = 0) -> str:
    stem = f"{part:05d}" + (f"-{continuation}" if continuation else "")
    if output_format == PREDICTION_LOG:
        return f"prediction_logs-{stem}.tfrecord.gz"
    return f"predictions-{stem}.parquet"


def errors_name(part: int, continuation: int = 0, kind: str = "") -> str:
    return (f"errors-{part:05d}" + (f"-{continuation}" if continuation else "") + (f"-{kind}" if kind else "")
            + ".jsonl")


class _OneOpen:
    """The open file of the range being received; closing it when another range's rows come."""

    def __init__(self, opener):
        self._opener = opener  # (part, continuation) -> an object with write(item) and close()
        self._part, self._file = None, None
        self._closed: dict[int, int] = {}  # part -> files closed so far

    def write(self, part: int, item) -> None:
        if part != self._part:
            self.close()
            self._part, self._file = part, self._opener(part, self._closed.get(part, 0))
        self._file.write(item)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._closed[self._part] = self._closed.get(self._part, 0) + 1
        self._part, self._file = None, None


class _Temporary:
    """A file written under a hidden temporary name and renamed into place on `publish`.

    For an output on object storage (gs://, s3://) the temporary file is on
    local disk and `publish` copies it to its final name (one object, whole
    or absent) through `trainer.storage`, then removes it.
    """

    def __init__(self, directory: str, name: str):
        self.final = storage.join(directory, name)
        self._remote = storage.is_remote(directory)
        hidden = f".tmp-{uuid.uuid4().hex}-{name}"
        self.path = os.path.join(tempfile.gettempdir(), hidden) if self._remote else os.path.join(directory, hidden)

    def publish(self) -> None:
        if not self._remote:
            os.replace(self.path, self.final)
            return
        try:
            storage.copy_file(self.path, self.final)
        finally:
            os.remove(self.path)


class _ParquetPart:
    """One range's predictions as Parquet: [id,] probability, class_id, model_version."""

    def __init__(self, directory: str, part: int, continuation: int, id_column: str | None, version: int):
        self._file = _Temporary(directory, predictions_name(part, PARQUET, continuation))
        self._id_column, self._version = id_column, version
        self._pending: list[Scored] = []
        self._writer = None

    def write(self, scored: Scored) -> None:
        self._pending.append(scored)
        if sum(s.ordinals.size for s in self._pending) >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow.parquet as pq

        if not self._pending:
            return
        columns = {}
        if self._id_column is not None:
            columns[self._id_column] = pa.array(np.concatenate([s.ids for s in self._pending]).tolist())
        columns[PROBABILITY] = pa.array(np.concatenate([s.probability for s in self._pending]), pa.float64())
        columns[CLASS_ID] = pa.array(np.concatenate([s.class_id for s in self._pending]), pa.int64())
        columns[MODEL_VERSION] = pa.array(np.full(len(columns[PROBABILITY]), self._version, np.int64))
        table = pa.table(columns)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._file.path, table.schema)
        elif table.schema != self._writer.schema:  # e.g. an id column all null in this row group
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)
        self._pending = []

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._file.publish()


class _LogPart:
    """One range's PredictionLogs as a gzipped TFRecord file, as TFX's BulkInferrer writes them."""

    def __init__(self, directory: str, part: int, continuation: int):
        self._file = _Temporary(directory, predictions_name(part, PREDICTION_LOG, continuation))
        self._handle = gzip.GzipFile(self._file.path, "wb", compresslevel=1, mtime=0)

    def write(self, scored: Scored) -> None:
        self._handle.write(frame_records(list(scored.logs)))

    def close(self) -> None:
        self._handle.close()
        self._file.publish()


class _ErrorsPart:
    """One range's RowErrors as JSON lines."""

    def __init__(self, directory: str, part: int, continuation: int, kind: str):
        self._file = _Temporary(directory, errors_name(part, continuation, kind))
        self._handle = open(self._file.path, "w", encoding="utf-8")

    def write(self, error: RowError) -> None:
        self._handle.write(json.dumps(error.to_json(), default=str) + "\n")

    def close(self) -> None:
        self._handle.close()
        self._file.publish()


class WritePredictions(beam.DoFn):
    """Writes Scored rows to their range's file; counts them."""

    def __init__(self, directory: str, output_format: str, id_column: str | None, version: int):
        self._directory, self._format = directory, output_format
        self._id_column, self._version = id_column, version
        self._scored = beam.metrics.Metrics.counter(METRICS_NAMESPACE, SCORED_COUNTER)

    def _open(self, part: int, continuation: int):
        if self._format == PREDICTION_LOG:
            return _LogPart(self._directory, part, continuation)
        return _ParquetPart(self._directory, part, continuation, self._id_column, self._version)

    def start_bundle(self):
        self._files = _OneOpen(self._open)

    def process(self, scored: Scored):
        self._files.write(scored.part, scored)
        self._scored.inc(int(scored.ordinals.size))

    def finish_bundle(self):
        self._files.close()


class WriteErrors(beam.DoFn):
    """Writes RowErrors to their range's JSON-lines file; counts them.

    Args:
      kind: Names the files of a second writer apart (`errors-<range>-<kind>.jsonl`).
    """

    def __init__(self, directory: str, kind: str = ""):
        self._directory, self._kind = directory, kind
        self._errors = beam.metrics.Metrics.counter(METRICS_NAMESPACE, ERRORS_COUNTER)

    def start_bundle(self):
        self._files = _OneOpen(lambda part, continuation: _ErrorsPart(self._directory, part, continuation,
                                                                      self._kind))

    def process(self, error: RowError):
        self._files.write(error.part, error)
        self._errors.inc()

    def finish_bundle(self):
        self._files.close()
