"""Beam model handlers for batch scoring, both run by Beam's `RunInference`.

* Raw features (CSV, Parquet): `FeatureModelHandler`, a `ModelHandler` of
  the package's own on the `predict_features` signature (Beam's TensorFlow
  handlers call a model on one tensor, not on the dict of per-feature
  tensors this signature takes). It loads the version with
  `serving.servable.Servable`, the server's own loader, and calls the
  signature as a REST Predict request does, so batch and served scores
  agree. Each element is a `Block` of up to BLOCK_ROWS rows; Beam's
  `BatchElements` (inside `RunInference`) groups blocks into one model call.
* tf.Example (TFRecord): tfx-bsl's saved-model handler on `serving_default`
  (`example_handler`), the handler of tfx-bsl's `RunInference` and so of
  TFX's BulkInferrer. tfx-bsl loads a SavedModel with the TF1 loader
  (`tf.compat.v1.saved_model.loader.load` into a `Session`), which cannot
  restore this package's Keras 3 SavedModels (FailedPrecondition "Could not
  find variable ensemble_dense_0/s", with tfx-bsl 1.21 and TensorFlow 2.21,
  on a `trainer.task` and a `tuning.task` export). tfx-bsl's own
  `load_override_fn` hook is given a loader whose object answers the
  handler's `Session.run(fetches, feed_dict)` from the same TF2-loaded
  signature (`SignatureSession`); batching and PredictionLog building stay
  tfx-bsl's.

Either way the model is loaded once per worker process (Beam's shared handle).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving.batch_rows import Block
from serving.servable import DEFAULT_SIGNATURE, FEATURES_SIGNATURE, Servable

MAX_BLOCKS = 8  # blocks per model call: up to 16,384 rows
SCORES, CLASS_IDS = "scores", "class_ids"  # the exported signatures' outputs (trainer/export.py)
METRICS_NAMESPACE = "imbalance_batch"


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """The version scored with: its directory, version and the name written into PredictionLogs."""

    path: str
    version: int
    name: str


@dataclasses.dataclass(frozen=True)
class Scored:
    """Scores of rows of one range, in file order.

    Attributes:
      part, ordinals, ids: as the `Block` they come from.
      probability: float64 [n], the minority class's calibrated probability.
      class_id: int64 [n], 1 when `probability` reaches the exported threshold.
      logs: Serialized `PredictionLog`s, one a row (`--format prediction_log`), else None.
    """

    part: int
    ordinals: np.ndarray
    ids: np.ndarray | None
    probability: np.ndarray
    class_id: np.ndarray
    logs: tuple[bytes, ...] | None = None


class FeatureModelHandler(ModelHandler[Block, Scored, Servable]):
    """Scores Blocks of raw features with the `predict_features` signature."""

    def __init__(self, model: ModelRef, with_logs: bool):
        self._model = model
        self._with_logs = with_logs

    def load_model(self) -> Servable:
        return Servable(self._model.version, self._model.path)

    def run_inference(self, batch: Sequence[Block], model: Servable, inference_args=None) -> Iterable[Scored]:
        signature = model.signatures[FEATURES_SIGNATURE]
        inputs = {name: np.concatenate([block.features[name] for block in batch]) for name in signature.inputs}
        outputs = model.run(signature, inputs)
        scored, start = [], 0
        for block in batch:
            rows = slice(start, start + len(block))
            logs = _feature_logs(self._model, block, {k: v[rows] for k, v in outputs.items()}) \
                if self._with_logs else None
            scored.append(Scored(block.part, block.ordinals, block.ids, outputs[SCORES][rows].astype(np.float64),
                                 outputs[CLASS_IDS][rows].astype(np.int64), logs))
            start += len(block)
        return scored

    def get_num_bytes(self, batch: Sequence[Block]) -> int:
        return sum(values.nbytes for block in batch for values in block.features.values())

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": MAX_BLOCKS}


def _feature_logs(model: ModelRef, block: Block, outputs: dict[str, np.ndarray]) -> tuple[bytes, ...]:
    """One PredictionLog a row: the Predict request the REST server would get, and its response."""
    logs = []
    for row in range(len(block)):
        log = prediction_log_pb2.PredictionLog()
        request, response = log.predict_log.request, log.predict_log.response
        for spec in (request.model_spec, response.model_spec):
            spec.name, spec.signature_name = model.name, FEATURES_SIGNATURE
            spec.version.value = model.version
        for name, values in block.features.items():
            request.inputs[name].CopyFrom(_tensor(values[row:row + 1]))
        for name, values in outputs.items():
            response.outputs[name].CopyFrom(_tensor(values[row:row + 1]))
        logs.append(log.SerializeToString())
    return tuple(logs)


def _tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto of a small array (tf.make_tensor_proto's layout, without its per-call overhead)."""
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d)
                                                   for d in values.shape])
    flat = values.reshape(-1)
    if values.dtype == object:
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape,
                                      string_val=[v.encode() if isinstance(v, str) else bytes(v) for v in flat])
    if values.dtype == np.int64:
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, tensor_shape=shape, int64_val=flat.tolist())
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape,
                                  float_val=flat.astype(np.float32).tolist())


class SignatureSession:
    """What tfx-bsl's saved-model handler calls on its model, `run(fetches, feed_dict)`, on a TF2-loaded signature."""

    def __init__(self, servable: Servable, signature_name: str = DEFAULT_SIGNATURE):
        self._servable = servable
        self._signature = servable.signatures[signature_name]
        (self._input,) = self._signature.inputs

    def run(self, fetches: dict[str, str], feed_dict: dict) -> dict[str, np.ndarray]:
        (examples,) = feed_dict.values()
        outputs = self._servable.run(self._signature, {self._input: np.asarray(examples, dtype=object)})
        return {alias: outputs[alias] for alias in fetches}


def _load_session(model_path: str, tags, version: int) -> SignatureSession:
    del tags  # the package's SavedModels have one `serve` meta graph
    return SignatureSession(Servable(version, model_path))


def example_handler(model: ModelRef) -> ModelHandler:
    """tfx-bsl's saved-model handler for `serving_default`, keyed: (key, serialized tf.Example) -> (key, PredictionLog).

    This is what tfx-bsl's public `RunInference` applies inside Beam's
    `RunInference` (tfx_bsl.public.beam.run_inference); applied here directly,
    with Beam's `KeyedModelHandler`, because the public transform declares its
    output as `Union[PredictionLog, tuple[K, PredictionLog]]`, from which Beam
    picks the proto coder for keyed output too, and to get Beam's
    `with_exception_handling`.
    """
    from apache_beam.ml.inference.base import KeyedModelHandler
    from tfx_bsl.beam.run_inference import create_model_handler
    from tfx_bsl.public.proto import model_spec_pb2

    spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
        model_path=model.path, signature_name=[DEFAULT_SIGNATURE]))
    loader = functools.partial(_load_session, version=model.version)
    return KeyedModelHandler(create_model_handler(spec, loader, None))


def scored_example(keyed: tuple, model: ModelRef, with_logs: bool) -> Scored:
    """One tfx-bsl result as a one-row Scored; the log gets the model's name and version, as TF Serving's."""
    (part, ordinal, identity), log = keyed
    for spec in (log.predict_log.request.model_spec, log.predict_log.response.model_spec):
        spec.name = model.name
        spec.version.value = model.version
    outputs = log.predict_log.response.outputs
    return Scored(part, np.array([ordinal], np.int64), None if identity is None else np.array([identity], object),
                  np.array(outputs[SCORES].float_val[:1], np.float64),
                  np.array(outputs[CLASS_IDS].int64_val[:1], np.int64),
                  (log.SerializeToString(),) if with_logs else None)


def keyed_examples(block: Block) -> Iterable[tuple]:
    """A TFRecord Block as tfx-bsl's keyed input: ((part, ordinal, id), serialized tf.Example)."""
    for row, example in enumerate(block.examples):
        identity = None if block.ids is None else block.ids[row]
        yield (block.part, int(block.ordinals[row]), identity), example
