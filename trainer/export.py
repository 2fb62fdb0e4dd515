"""Export as a versioned SavedModel in TF Serving's layout.

`<base>/<version>/` with integer versions. Each version is written into a
hidden temporary sibling and renamed into place, so a reader (TF Serving, our
server, TFMA) never sees a half-written version. A base on object storage
(gs://, s3://) gets the version staged on local disk and published with a
completion marker written last (`trainer.atomic.publish_to_next_version`).

Signatures (docs/design.md §7):
  * `serving_default`: `examples` (serialized tf.Example [N]) ->
    `probabilities` [N, 2], `scores` [N], `class_ids` [N], `logits` [N].
  * `predict_features`: one [N] tensor per raw feature -> the same outputs.
  * `classification`: `inputs` (serialized tf.Example [N]) -> `classes`
    [N, 2] ("0", "1") and `scores` [N, 2]; method name
    `tensorflow/serving/classify`, so TF Serving's Classify API accepts it.

Each version carries `assets.extra/tf_serving_warmup_requests` (TF Serving's
SavedModel warm-up format), one request per signature, so TF Serving and
`serving/` pay each signature's first-call costs before serving it.
"""

from __future__ import annotations

import os
import re

import tensorflow as tf

from trainer import storage
from trainer.atomic import publish_to_next_version, rename_to_next_version, staging_directory
from trainer.bodies import ensemble_logits
from trainer.calibration import Calibration, calibrate_graph
from trainer.data.schema import Schema
from trainer.layout import CLASSIFY_METHOD, SAVED_MODEL_FILE, TREES_FILE, WARMUP_FILE
from trainer.model import model_inputs


class ServingModule(tf.Module):
    """The Keras model plus calibration and threshold, as served functions."""

    def __init__(self, model, schema: Schema, calibration: Calibration, threshold: float):
        super().__init__(name="imbalance_serving")
        self.model = model
        self._spec = schema.feature_spec(with_label=False)
        self.calibration_scale = tf.Variable(calibration.scale, dtype=tf.float32, trainable=False)
        self.calibration_offset = tf.Variable(calibration.offset, dtype=tf.float32, trainable=False)
        # An isotonic map's knots and values (empty for an affine map); any length can be assigned.
        self.calibration_knots = tf.Variable(tf.constant(calibration.knots, tf.float32, [len(calibration.knots)]),
                                             trainable=False, shape=tf.TensorShape([None]))
        self.calibration_values = tf.Variable(tf.constant(calibration.values, tf.float32, [len(calibration.values)]),
                                              trainable=False, shape=tf.TensorShape([None]))
        self.threshold = tf.Variable(threshold, dtype=tf.float32, trainable=False)
        feature_specs = {
            f.name: tf.TensorSpec([None], tf.float32 if f.kind == "numeric" else tf.string, name=f.name)
            for f in schema.features
        }
        examples = tf.TensorSpec([None], tf.string, name="examples")
        self.serve_examples = tf.function(self._serve_examples, input_signature=[examples])
        self.classify = tf.function(self._classify, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        self.predict_features = tf.function(self._predict)
        self._feature_specs = feature_specs

    def _predict(self, features: dict) -> dict:
        # A neural model takes the numeric features stacked into one matrix (`model_inputs`).
        logits = ensemble_logits(self.model(model_inputs(self.model, features), training=False))  # [N, 2]
        margin = logits[:, 1] - logits[:, 0]  # [N] single logit, before calibration
        score = calibrate_graph(margin, self.calibration_scale, self.calibration_offset, self.calibration_knots,
                                self.calibration_values)  # [N]
        return {
            "probabilities": tf.stack([1.0 - score, score], axis=1),  # [N, 2]
            "scores": score,
            "class_ids": tf.cast(score >= self.threshold, tf.int64),  # [N]
            "logits": margin,
        }

    def set_calibration(self, calibration: Calibration) -> None:
        """Replaces the exported calibration map (before `export_version`)."""
        self.calibration_scale.assign(calibration.scale)
        self.calibration_offset.assign(calibration.offset)
        self.calibration_knots.assign(tf.constant(calibration.knots, tf.float32, [len(calibration.knots)]))
        self.calibration_values.assign(tf.constant(calibration.values, tf.float32, [len(calibration.values)]))

    def _serve_examples(self, examples):  # examples: [N] string
        return self._predict(tf.io.parse_example(examples, self._spec))

    def _classify(self, inputs):  # inputs: [N] string
        outputs = self._serve_examples(inputs)
        batch = tf.shape(inputs)[0]
        classes = tf.tile(tf.constant([["0", "1"]]), [batch, 1])  # [N, 2]
        return {"classes": classes, "scores": outputs["probabilities"]}

    def feature_dtypes(self) -> dict[str, tf.DType]:
        """Raw feature name -> dtype of its `predict_features` input."""
        return {name: spec.dtype for name, spec in self._feature_specs.items()}

    def signatures(self) -> dict:
        return {
            "serving_default": self.serve_examples.get_concrete_function(),
            "predict_features": self.predict_features.get_concrete_function(self._feature_specs),
            "classification": self.classify.get_concrete_function(),
        }


def export_version(module: ServingModule, base: str) -> str:
    """Saves `module` as the next version under `base`, atomically.

    The version is written in a local staging directory, then published:
    renamed into place locally; on object storage (gs://, s3://) copied
    under its number with a completion marker last (`trainer.atomic`).

    Returns:
      The path of the new version directory.
    """
    if storage.is_remote(base):
        storage.scheme(base)  # an unsupported URL fails before anything is saved
        with storage.local_stage() as stage:
            staging = os.path.join(stage, "version")
            _save_version(module, staging, base)
            return publish_to_next_version(staging, base)
    with staging_directory(base) as staging:
        _save_version(module, staging, base)
        return rename_to_next_version(staging, base)


def _save_version(module: ServingModule, staging: str, base: str) -> None:
    """The SavedModel, its Classify method name, warm-up requests and trees file, in `staging` (local)."""
    try:
        tf.saved_model.save(module, staging, signatures=module.signatures())
    except tf.errors.OpError as error:
        storage_failure = storage_error(error, where=f"a new version under {base}")
        if storage_failure is None:
            raise
        raise storage_failure from None
    mark_classify_signature(staging, "classification")
    write_warmup_requests(staging, module.feature_dtypes())
    booster_text = getattr(module.model, "booster_text", None)  # a trees-only model (trainer.trees.to_keras)
    if booster_text is not None:
        with open(os.path.join(staging, TREES_FILE), "w", encoding="utf-8") as handle:
            handle.write(booster_text)


STORAGE_FAILURES = ("No space left on device", "Read-only file system", "Permission denied",
                    "Disk quota exceeded")


def storage_error(error: BaseException, where: str | None = None) -> OSError | None:
    """A TensorFlow file-system failure (disk full, read-only...) as a one-line OSError.

    TensorFlow's C++ file system reports these as `tf.errors.OpError`s
    (ResourceExhausted, PermissionDenied...) with the op's name and a
    multi-line context; the entry points report OSErrors as one line.
    Returns None for anything else, which must not be disguised.

    Args:
      error: Any exception.
      where: What could not be written; by default the path TF names.
    """
    if not isinstance(error, tf.errors.OpError):
        return None
    text = " ".join(str(error.message).split())
    for reason in STORAGE_FAILURES:
        if reason in text:
            if where is None:
                named = re.search(r"(\S+)[;:,]? " + re.escape(reason), text)
                where = named[1].rstrip(";:,") if named and not named[1].startswith("{{") else "the output"
            return OSError(f"cannot write {where}: {reason}")
    return None


def write_warmup_requests(saved_model_dir: str, feature_dtypes: dict[str, tf.DType]) -> None:
    """Writes TF Serving's warm-up file: a TFRecord of PredictionLogs, one per signature.

    Every request is one example with every feature missing (an empty
    tf.Example; NaN or "" raw features), which the model imputes, so the
    requests are valid for any schema.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    empty = tf.train.Example().SerializeToString()
    examples = prediction_log_pb2.PredictionLog()
    examples.predict_log.request.model_spec.signature_name = "serving_default"
    examples.predict_log.request.inputs["examples"].CopyFrom(tf.make_tensor_proto([empty]))
    features = prediction_log_pb2.PredictionLog()
    features.predict_log.request.model_spec.signature_name = "predict_features"
    for name, dtype in feature_dtypes.items():
        missing = [""] if dtype == tf.string else [float("nan")]
        features.predict_log.request.inputs[name].CopyFrom(tf.make_tensor_proto(missing, dtype=dtype))
    classify = prediction_log_pb2.PredictionLog()
    classify.classify_log.request.model_spec.signature_name = "classification"
    classify.classify_log.request.input.example_list.examples.add()
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in (examples, features, classify):
            writer.write(record.SerializeToString())


def mark_classify_signature(saved_model_dir: str, key: str) -> None:
    """Sets a signature's method name to Classify's, as TF Serving requires.

    `tf.saved_model.save` marks every signature as Predict; TF Serving's
    Classify API refuses any signature whose method name is not
    `tensorflow/serving/classify`.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(saved_model_dir, SAVED_MODEL_FILE)
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as handle:
        proto.ParseFromString(handle.read())
    for meta_graph in proto.meta_graphs:
        meta_graph.signature_def[key].method_name = CLASSIFY_METHOD
    with open(path, "wb") as handle:
        handle.write(proto.SerializeToString())
