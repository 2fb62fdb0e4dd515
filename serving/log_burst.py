"""A writer burst's REST :predict rows encoded column by column, not row by row.

The writer thread (serving/log_collector.py) takes everything queued at once.
REST :predict requests of one signature share a layout (input and output
names, dtypes, per-row shapes), so the float tensors of all their rows are
written with a handful of numpy operations: one uint8 row per logged row holds,
for each float tensor, the constant bytes before its values (wire.py's
prefix) and the values' little-endian bytes. Only the other tensors (strings,
integers) and the PredictionLog framing are built row by row. The records parse to
the messages `prediction_log.records` writes one at a time (tested; only the
order of map entries differs); any entry this cannot take, and any group that
fails, goes that way.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
from tensorflow_serving.config import logging_config_pb2

from serving import prediction_log, wire

_FLOATS = frozenset({"<f4", ">f4", "<f8", ">f8"})


@dataclasses.dataclass(frozen=True)
class RestPredict:
    """A REST :predict's arrays, as its Entry's `build` (a callable, so any entry can be written alone)."""

    name: str
    version: int
    signature_name: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    def __call__(self) -> prediction_log.Logged:
        return prediction_log.rest_predict(self.name, self.version, self.signature_name, self.inputs, self.outputs)

    def group(self) -> tuple:
        """Requests with the same group share dtypes and per-row shapes: the REST decoder casts every input
        to the signature's dtype and the signature fixes its outputs' (`_rows` checks the rest)."""
        return self.name, self.version, self.signature_name, tuple(self.inputs), tuple(self.outputs)

    @property
    def rows(self) -> int:
        first = next(iter(self.inputs.values()))
        return first.shape[0] if first.ndim else 0


def encode(entries: list[prediction_log.Entry], sampling: logging_config_pb2.SamplingConfig
           ) -> list[list[bytes] | Exception]:
    """Each entry's records (or the error that stopped them), in order."""
    results: list[list[bytes] | Exception | None] = [None] * len(entries)
    groups = collections.defaultdict(list)
    for index, entry in enumerate(entries):
        if isinstance(entry.build, RestPredict) and entry.build.inputs and entry.build.rows:
            groups[(entry.build.group(), entry.timestamp_secs)].append(index)
        else:
            results[index] = _alone(entry, sampling)
    for (_, timestamp_secs), indices in groups.items():
        try:
            for index, records in zip(indices, _group([entries[i].build for i in indices], timestamp_secs, sampling),
                                      strict=True):
                results[index] = records
        except Exception:  # whatever went wrong, each entry gets its own chance
            for index in indices:
                results[index] = _alone(entries[index], sampling)
    return results


def _alone(entry: prediction_log.Entry, sampling) -> list[bytes] | Exception:
    try:
        return prediction_log.records(entry, sampling)
    except Exception as error:  # reported by the collector, which carries on
        return error


def _group(predicts: list[RestPredict], timestamp_secs: int, sampling) -> list[list[bytes]]:
    first = predicts[0]
    spec_bytes = prediction_log.model_spec(first.name, first.version, first.signature_name).SerializeToString()
    metadata = prediction_log.metadata_bytes(spec_bytes, sampling.SerializeToString(), timestamp_secs)
    total = sum(predict.rows for predict in predicts)
    requests = _rows(wire.INPUTS, [predict.inputs for predict in predicts], total)
    responses = _rows(wire.OUTPUTS, [predict.outputs for predict in predicts], total)
    logged = [wire.prediction_log(metadata, prediction_log.PREDICT, *wire.predict_pair(spec_bytes, request, response))
              for request, response in zip(requests, responses, strict=True)]
    records, start = [], 0
    for predict in predicts:
        records.append(logged[start:start + predict.rows])
        start += predict.rows
    return records


def _rows(map_key: bytes, tensors: list[dict[str, np.ndarray]], total: int) -> list[bytes]:
    """Every row's map entries of one map field (inputs or outputs), floats column-wise.

    Raises:
      ValueError: The requests do not batch alike (a tensor without the rows' leading dimension, dtypes
        that differ): the caller then writes each request on its own.
    """
    columns = {}
    for key, sample in tensors[0].items():
        columns[key] = np.concatenate([one[key] for one in tensors])
        # Within a group the dtypes cannot differ (see RestPredict.group); if they did, numpy would have
        # promoted the column, and only a promotion away from the first request's dtype could lose anything.
        if columns[key].dtype != sample.dtype:
            raise ValueError(f"tensor {key} changes dtype within a signature")
        if columns[key].shape[0] != total:
            raise ValueError(f"tensor {key} is not batched like the inputs")
    pieces, width = [], 0  # (offset, constant bytes or a column's values as uint8 rows)
    rest = []
    for key, column in columns.items():
        dtype = column.dtype.str
        prefix = wire.entry_prefix(map_key, key, column[:1]) if dtype in _FLOATS else None
        if prefix is None:
            rest.append(key)
            continue
        values = np.ascontiguousarray(columns[key], dtype=prefix[1] or dtype).reshape(total, -1).view(np.uint8)
        pieces += [(width, np.frombuffer(prefix[0], np.uint8)), (width + len(prefix[0]), values)]
        width += len(prefix[0]) + values.shape[1]
    block = np.empty((total, width), np.uint8)
    for offset, piece in pieces:
        block[:, offset:offset + piece.shape[-1]] = piece
    data = block.tobytes()
    rows = [data[row * width:(row + 1) * width] for row in range(total)]
    for key in rest:  # strings and integers: their bytes depend on the values, of which there are few
        column = columns[key]
        if column.ndim != 1:
            rows = [row_bytes + prediction_log.tensor_entry(map_key, key, column[row:row + 1])
                    for row, row_bytes in enumerate(rows)]
            continue
        seen: dict = {}  # value -> its entry's bytes (a category, a class id): built once a burst
        for row, value in enumerate(column.tolist()):
            encoded = seen.get(value)
            if encoded is None:
                encoded = seen[value] = prediction_log.tensor_entry(map_key, key, column[row:row + 1])
            rows[row] += encoded
    return rows
