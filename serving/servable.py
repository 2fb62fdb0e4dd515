"""One loaded SavedModel version and its signatures, called directly.

Requests call `loaded.signatures[name]` (a concrete function) with tensors
checked against the signature's `TensorSpec`s first, so a malformed request
fails with INVALID_ARGUMENT and a clear message instead of an error deep in
the graph. Signature metadata comes from `saved_model.pb` itself, so the
method names the exporter patched in (`tensorflow/serving/classify`) are the
ones reported and enforced.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.errors import ServingError, from_tf_error, invalid_argument
from trainer.layout import SAVED_MODEL_FILE

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
# The package's raw-feature signature (trainer/export.py). Its model imputes a
# missing value (NaN for numbers, "" for text) exactly as it does an absent
# tf.Example feature, so REST requests may leave features out.
FEATURES_SIGNATURE = "predict_features"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable signature.

    Attributes:
      name: Its key in the SavedModel's signature map.
      method_name: E.g. `tensorflow/serving/predict`.
      inputs: Input alias -> `tf.TensorSpec`.
      outputs: Output aliases, sorted.
      function: The concrete function, called with keyword tensors.
    """

    name: str
    method_name: str
    inputs: dict[str, tf.TensorSpec]
    outputs: tuple[str, ...]
    function: object
    # Worked out once, not per request: per input (name, numpy dtype, rank or None for unknown rank,
    # dims or None when no dimension is fixed), and the order of the function's flat arguments (None:
    # call it by keyword). `derived` holds what other modules work out once per signature (codec).
    _checks: tuple = dataclasses.field(init=False, repr=False, compare=False)
    _flat_order: tuple[str, ...] | None = dataclasses.field(init=False, repr=False, compare=False)
    derived: dict = dataclasses.field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        checks = []
        for name, spec in self.inputs.items():
            dims = None if spec.shape.rank is None else tuple(spec.shape.as_list())
            checks.append((name, np.dtype(object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype),
                           None if dims is None else len(dims),
                           dims if dims is not None and any(d is not None for d in dims) else None))
        object.__setattr__(self, "_checks", tuple(checks))
        object.__setattr__(self, "_flat_order", _flat_order(self.function, self.inputs))

    @property
    def imputes_missing_inputs(self) -> bool:
        """Absent inputs may be sent as missing values (the raw-feature signature)."""
        return self.name == FEATURES_SIGNATURE

    @property
    def calls_flat(self) -> bool:
        """Calls skip the function's per-call argument binding (see `call`)."""
        return self._flat_order is not None

    def call(self, tensors: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Calls the function on tensors already checked against `inputs` (check_inputs).

        A concrete function called by keyword binds its arguments to its
        FunctionType and checks each against its TensorSpec on every call:
        about 0.25 ms for this package's 15-input signature, a third of the
        model's own time. The inputs are checked here already, so the
        function is called on its flat arguments, in the order its flat
        signature takes them, as TensorFlow's own flat-signature call does.
        """
        if self._flat_order is None:
            return self.function(**tensors)
        function = self.function
        return function._call_flat([tensors[name] for name in self._flat_order], function.captured_inputs)


class Servable:
    """A loaded version: its signatures and their metadata.

    Attributes:
      version: The integer version.
      path: The version directory.
      signature_defs: Signature key -> `SignatureDef` proto, as saved.
    """

    def __init__(self, version: int, path: str):
        self.version = version
        self.path = path
        # Keep the loaded object referenced: the concrete functions only hold
        # weak references to its variables.
        self._loaded = tf.saved_model.load(path)
        self.signature_defs = _read_signature_defs(path)
        self._signatures = {}
        for name, function in self._loaded.signatures.items():
            _, input_specs = function.structured_input_signature
            signature_def = self.signature_defs.get(name)
            self._signatures[name] = Signature(
                name=name,
                method_name=signature_def.method_name if signature_def else PREDICT_METHOD,
                inputs=dict(input_specs),
                outputs=tuple(sorted(function.structured_outputs)),
                function=function,
            )

    @property
    def signatures(self) -> dict[str, Signature]:
        """Signature key -> callable signature (read only)."""
        return self._signatures

    def signature(self, name: str | None) -> Signature:
        """The signature Predict calls `name` (`serving_default` when empty).

        Raises:
          ServingError: FAILED_PRECONDITION for an unknown name, as TF
            Serving's Predict (predict_util.cc) answers it.
        """
        key = name or DEFAULT_SIGNATURE
        if key not in self._signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{key}" not found. '
                               f"Available: {', '.join(sorted(self._signatures))}")
        return self._signatures[key]

    def predict_signature(self, name: str | None, sent: set[str] | None) -> Signature:
        """The signature a Predict request addresses.

        As TF Serving, an empty name means `serving_default`. Beyond TF
        Serving, a request without a name whose named inputs are raw features
        (not `serving_default`'s inputs, but all inputs of the raw-feature
        signature) goes to the raw-feature signature, so
        `{"instances": [{"amount": 1.5, "region": "north"}]}` works as is.

        Args:
          name: The request's `signature_name`, if any.
          sent: The input names the request uses, or None if unnamed.
        """
        features = self._signatures.get(FEATURES_SIGNATURE)
        if not name and sent and features is not None and sent <= set(features.inputs):
            default = self._signatures.get(DEFAULT_SIGNATURE)
            if default is None or not sent <= set(default.inputs):
                return features
        return self.signature(name)

    def run(self, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls `signature` on checked `inputs`; returns numpy outputs.

        Raises:
          ServingError: INVALID_ARGUMENT for inputs that do not match the
            signature; the op's code for errors raised while running.
        """
        check_inputs(signature, inputs)
        try:
            outputs = signature.call({name: tf.constant(value, dtype=signature.inputs[name].dtype)
                                      for name, value in inputs.items()})
        except tf.errors.OpError as error:
            raise from_tf_error(error) from None
        except UnicodeDecodeError:
            # TF quotes offending input bytes in its error message and then
            # fails to decode that message (e.g. ParseExample on a string that
            # is not a serialized tf.Example); the cause is still the input.
            raise invalid_argument(f"signature {signature.name!r} rejected its input: an input could not be "
                                   "parsed (e.g. a string that is not a serialized tf.Example)") from None
        return {key: _as_array(value) for key, value in outputs.items()}

    def warm_up(self) -> None:
        """Calls every signature once on an empty batch.

        The first call of a restored function pays one-off setup costs; paying
        them here keeps them out of the first request after a version swap.
        An empty batch needs no knowledge of valid inputs.
        """
        for signature in self._signatures.values():
            try:
                self.run(signature, {name: _empty_batch(spec) for name, spec in signature.inputs.items()})
            except (ServingError, ValueError, TypeError) as error:  # a model may refuse empty batches
                log.info("warm-up of %s/%s skipped: %s", self.version, signature.name, error)


def _empty_batch(spec: tf.TensorSpec) -> np.ndarray:
    """A batch of no rows for `spec`; [0] when its rank is unknown."""
    inner = [] if spec.shape.rank is None else [d or 1 for d in spec.shape.as_list()[1:]]
    dtype = object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype
    return np.zeros([0] + inner, dtype=dtype)


def _as_array(tensor: tf.Tensor) -> np.ndarray:
    """A tensor as an ndarray; a scalar string's `.numpy()` is plain bytes, not an array."""
    if tensor.dtype == tf.string:
        return np.array(tensor.numpy(), dtype=object)
    return np.asarray(tensor.numpy())


def check_inputs(signature: Signature, inputs: dict[str, np.ndarray]) -> None:
    """Checks names, dtypes and shapes against the signature.

    Raises:
      ServingError: INVALID_ARGUMENT naming the offending input.
    """
    if inputs.keys() != signature.inputs.keys():
        expected, sent = set(signature.inputs), set(inputs)
        raise invalid_argument(
            f"input size does not match signature {signature.name!r}: {len(sent)}!={len(expected)}. "
            f"Sent extra: {sorted(sent - expected)}. Missing but required: {sorted(expected - sent)}.")
    for name, numpy_dtype, rank, dims in signature._checks:
        value = inputs[name]
        if value.dtype != numpy_dtype:  # e.g. a bytes ("S") array for a string input is fine too
            spec = signature.inputs[name]
            dtype = tf.as_dtype(value.dtype) if value.dtype != object else tf.string
            if dtype != spec.dtype:
                raise invalid_argument(f"input {name!r}: expects {spec.dtype.name} but {dtype.name} was provided")
        if rank is not None and (value.ndim != rank or dims is not None and any(
                want is not None and want != have for want, have in zip(dims, value.shape, strict=True))):
            raise invalid_argument(f"input {name!r}: shape {list(value.shape)} is not compatible with the "
                                   f"signature's {_shape_text(signature.inputs[name].shape)}")


def batch_size(inputs: dict[str, np.ndarray]) -> int | None:
    """The common leading dimension of `inputs`, or None if there is none."""
    sizes = {value.shape[0] if value.ndim else None for value in inputs.values()}
    return sizes.pop() if len(sizes) == 1 else None


def _flat_order(function, inputs: dict[str, tf.TensorSpec]) -> tuple[str, ...] | None:
    """The input names in the order of `function`'s flat arguments, or None to call it by keyword.

    Uses ConcreteFunction's flat-signature attributes (TensorFlow's own
    fallback call path); anything unexpected (another TensorFlow, a
    function that is not a plain signature, names TensorFlow had to
    sanitize) keeps the keyword call.
    """
    keywords = getattr(function, "_arg_keywords", None)
    if keywords is None or not callable(getattr(function, "_call_flat", None)):
        return None
    order = tuple(name.decode() if isinstance(name, bytes) else name for name in keywords)
    if len(order) != len(inputs) or set(order) != set(inputs):
        return None
    try:
        flat_inputs = function.inputs[:len(order)]
    except (AttributeError, TypeError):
        return None
    if [tensor.dtype for tensor in flat_inputs] != [inputs[name].dtype for name in order]:
        return None
    return order


def _shape_text(shape: tf.TensorShape) -> str:
    if shape.rank is None:
        return "<unknown rank>"
    return "[" + ",".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def _read_signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The `serve`-tagged meta graph's SignatureDefs from saved_model.pb."""
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, SAVED_MODEL_FILE), "rb") as handle:  # local or gs://
        proto.ParseFromString(handle.read())
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    return dict(proto.meta_graphs[0].signature_def) if proto.meta_graphs else {}

