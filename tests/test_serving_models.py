"""The SavedModel the conformance tests serve, built like TF Serving's test models.

`ConformanceModel` follows `saved_model_half_plus_two.py` in
tensorflow/serving (`y = 0.5 x + 2`, `y2 = 0.5 x + 3`, the
`regress_x_to_y`, `regress_x_to_y2` and `classify_x_to_y` signatures on
serialized tf.Examples), with `serving_default`'s `x` of unknown rank, and
adds signatures for the JSON and proto wire formats: many dtypes, ranks 0-3,
a `_bytes` output, a scalar string output and dtypes JSON cannot hold.

The tests here check the model itself against NumPy, so the conformance tests
can trust it as their reference.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from serving.app import ServerOptions, start
from serving.servable import Servable

MODEL = "conformance"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
# As TF Serving's half_plus_two; regress_int64 keeps tf.saved_model.save's
# Predict method name, which TF Serving's default (no method-name check) accepts.
METHOD_NAMES = {"regress_x_to_y": REGRESS, "regress_x_to_y2": REGRESS, "regress_two_outputs": REGRESS,
                "classify_x_to_y": CLASSIFY, "classify_labels": CLASSIFY}
EXAMPLES = tf.TensorSpec([None], tf.string, name="inputs")


class ConformanceModel(tf.Module):
    """Half-plus-two and friends, as TF2 functions."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = tf.Variable(0.5), tf.Variable(2.0), tf.Variable(3.0)

    def _x(self, serialized):  # [N, 1], as half_plus_two's feature spec
        return tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def predict(self, x):
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[EXAMPLES])
    def regress_xy(self, inputs):
        return {"outputs": self.a * self._x(inputs) + self.b}

    @tf.function(input_signature=[EXAMPLES])
    def regress_xy2(self, inputs):
        return {"outputs": self.a * self._x(inputs) + self.c}

    @tf.function(input_signature=[EXAMPLES])
    def regress_two(self, inputs):
        x = self._x(inputs)
        return {"outputs": x, "extra": x}

    @tf.function(input_signature=[EXAMPLES])
    def regress_int64(self, inputs):  # fails to parse unless "n" arrives as an int64_list
        n = tf.io.parse_example(inputs, {"n": tf.io.FixedLenFeature([1], tf.int64)})["n"]
        return {"outputs": tf.cast(n, tf.float32) * 2.0}

    @tf.function(input_signature=[EXAMPLES])
    def classify_xy(self, inputs):
        return {"scores": self.a * self._x(inputs) + self.b}

    @tf.function(input_signature=[EXAMPLES])
    def classify_labels(self, inputs):
        x = self._x(inputs)
        labels = tf.tile(tf.constant([["low", "high"]]), [tf.shape(x)[0], 1])
        return {"classes": labels, "scores": tf.concat([self.a * x + self.b, self.a * x + self.c], axis=1)}

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.float64, name="f64"), tf.TensorSpec([None, 2], tf.int32, name="i32"),
        tf.TensorSpec([None], tf.bool, name="flag"), tf.TensorSpec([None], tf.string, name="text"),
        tf.TensorSpec([None, 2, 2], tf.uint8, name="u8"), tf.TensorSpec([None], tf.int64, name="i64")])
    def dtypes(self, f64, i32, flag, text, u8, i64):
        return {"f64": f64 * 2.0, "i32": i32 + 1, "flag": tf.logical_not(flag), "text": tf.strings.upper(text),
                "text_bytes": text, "u8": u8, "i64": -i64}

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def scalar(self, x):
        return {"y": self.a * x + self.b, "label": tf.strings.as_string(x)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def unusual(self, x):
        return {"z": tf.complex(x, -x), "h": tf.cast(x, tf.float16)}

    def signatures(self) -> dict:
        return {"serving_default": self.predict, "regress_x_to_y": self.regress_xy,
                "regress_x_to_y2": self.regress_xy2, "regress_two_outputs": self.regress_two,
                "regress_int64": self.regress_int64, "classify_x_to_y": self.classify_xy,
                "classify_labels": self.classify_labels, "dtypes": self.dtypes, "scalar": self.scalar,
                "unusual": self.unusual}


def save_conformance_model(path: str) -> str:
    """Saves the model with TF Serving's method names patched in; returns `path`."""
    module = ConformanceModel()
    tf.saved_model.save(module, path, signatures=module.signatures())
    pb = os.path.join(path, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with open(pb, "rb") as handle:
        proto.ParseFromString(handle.read())
    for meta_graph in proto.meta_graphs:
        for key, method in METHOD_NAMES.items():
            meta_graph.signature_def[key].method_name = method
    with open(pb, "wb") as handle:
        handle.write(proto.SerializeToString())
    return path


def start_conformance_server(base: str):
    """A server on free loopback ports over version 1 of the model, label `stable` -> 1."""
    save_conformance_model(os.path.join(base, "1"))
    options = ServerOptions(model_name=MODEL, model_base_path=base, port=0, rest_api_port=0,
                            file_system_poll_wait_seconds=0, version_labels={"stable": 1})
    return start(options)


def example(**features) -> tf.train.Example:
    """A tf.Example of float features, as TF Serving's tests' AddInput builds them."""
    example = tf.train.Example()
    for name, value in features.items():
        example.features.feature[name].float_list.value.append(value)
    return example


def test_model_matches_numpy(tmp_path):
    """The reference: half_plus_two's arithmetic and the echo signatures, against NumPy."""
    loaded = tf.saved_model.load(save_conformance_model(str(tmp_path / "1")))
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    np.testing.assert_allclose(loaded.signatures["serving_default"](x=x)["y"], 0.5 * x + 2)
    serialized = [example(x=v).SerializeToString() for v in (2.0, 80.0)]
    np.testing.assert_allclose(loaded.signatures["regress_x_to_y"](inputs=serialized)["outputs"], [[3.0], [42.0]])
    np.testing.assert_allclose(loaded.signatures["regress_x_to_y2"](inputs=serialized)["outputs"], [[4.0], [43.0]])
    labels = loaded.signatures["classify_labels"](inputs=serialized)
    assert labels["classes"].numpy().tolist() == [[b"low", b"high"]] * 2
    np.testing.assert_allclose(labels["scores"], [[3.0, 4.0], [42.0, 43.0]])
    assert loaded.signatures["scalar"](x=tf.constant(3.0))["label"].numpy() == b"3.000000"


def test_servable_calls_signatures_on_flat_arguments(tmp_path):
    """Servable.run skips the per-call keyword binding (Signature.call) and answers as the keyword call does.

    Pins that the fast path is taken with the TensorFlow this package pins (every signature, one input
    or six of different dtypes), so a TensorFlow upgrade that changes the private flat-call attributes
    shows up here instead of as a silent slowdown.
    """
    path = save_conformance_model(str(tmp_path / "1"))
    servable = Servable(1, path)
    assert all(signature.calls_flat for signature in servable.signatures.values())
    inputs = {"f64": np.array([1.5, -2.0]), "i32": np.array([[1, 2], [3, 4]], np.int32),
              "flag": np.array([True, False]), "text": np.array([b"a", b"b"], dtype=object),
              "u8": np.full([2, 2, 2], 7, np.uint8), "i64": np.array([5, -6])}
    expected = tf.saved_model.load(path).signatures["dtypes"](**inputs)
    actual = servable.run(servable.signatures["dtypes"], inputs)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value.numpy())
    serialized = np.array([example(x=2.0).SerializeToString()], dtype=object)
    np.testing.assert_allclose(servable.run(servable.signatures["regress_x_to_y"], {"inputs": serialized})["outputs"],
                               [[3.0]])
