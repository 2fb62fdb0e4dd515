"""Classify, Regress and MultiInference on serialized tf.Examples, as TF Serving.

Mirrors `tensorflow_serving/servables/tensorflow/classifier.cc`,
`regressor.cc` and `multi_inference.cc` with `tensorflow_model_server`'s
default `--enable_signature_method_name_check=false`: a signature is usable
by Classify or Regress when its *structure* fits (one input keyed `inputs`;
`classes` and/or `scores`, or exactly one `outputs`), whatever method name
it was saved with, so TF2 SavedModels (whose signatures are all saved as
Predict) work too. Output checks and their messages follow the
`PostProcess*Result` functions.
"""

from __future__ import annotations

import dataclasses

import grpc
import numpy as np

from serving.errors import ServingError, invalid_argument
from serving.servable import DEFAULT_SIGNATURE, Servable, Signature
from trainer.layout import CLASSIFY_METHOD  # one home: the exporter marks its classify signature with it

REGRESS_METHOD = "tensorflow/serving/regress"
INPUTS = "inputs"  # kClassifyInputs and kRegressInputs
CLASSES, SCORES = "classes", "scores"
REGRESS_OUTPUTS = "outputs"


def classify_problem(signature: Signature) -> str | None:
    """Why Classify cannot use `signature` (PreProcessClassification), or None."""
    if len(signature.inputs) != 1:
        return "Expected one input Tensor."
    if len(signature.outputs) not in (1, 2):
        return f"Expected one or two output Tensors, found {len(signature.outputs)}"
    if INPUTS not in signature.inputs:
        return f"No classification inputs found in SignatureDef {signature.name!r}"
    if CLASSES not in signature.outputs and SCORES not in signature.outputs:
        return ('Expected classification signature outputs to contain at least one of "classes" or "scores". '
                f"Signature {signature.name!r} has {', '.join(signature.outputs)}")
    return None


def regress_problem(signature: Signature) -> str | None:
    """Why Regress cannot use `signature` (PreProcessRegression), or None."""
    if len(signature.inputs) != 1:
        return "Expected one input Tensor."
    if len(signature.outputs) != 1:
        return "Expected one output Tensor."
    if INPUTS not in signature.inputs:
        return f"No regression inputs found in SignatureDef {signature.name!r}"
    if REGRESS_OUTPUTS not in signature.outputs:
        return f"No regression outputs found in SignatureDef {signature.name!r}"
    return None


def classify_signature(servable: Servable, name: str | None) -> Signature:
    """The signature Classify uses (GetClassificationSignatureDef).

    As TF Serving, an empty name means `serving_default`. Beyond TF Serving,
    when `serving_default` cannot classify and exactly one signature can,
    that one is used: a request TF Serving would refuse gets an answer, and
    every request it accepts is answered the same way.
    """
    if not name:
        default = servable.signatures.get(DEFAULT_SIGNATURE)
        usable = [s for s in servable.signatures.values() if classify_problem(s) is None]
        if (default is None or classify_problem(default) is not None) and len(usable) == 1:
            return usable[0]
    return _usable(_named(servable, name), classify_problem)


def regress_signature(servable: Servable, name: str | None) -> Signature:
    """The signature Regress uses (GetRegressionSignatureDef)."""
    return _usable(_named(servable, name), regress_problem)


def _usable(signature: Signature, problem_of) -> Signature:
    """`signature`, or INVALID_ARGUMENT with what `problem_of` finds wrong with it."""
    problem = problem_of(signature)
    if problem:
        raise invalid_argument(problem)
    return signature


def _named(servable: Servable, name: str | None) -> Signature:
    key = name or DEFAULT_SIGNATURE
    if key not in servable.signatures:
        raise invalid_argument(f"No signature was found with the name: {key}")
    return servable.signatures[key]


def classification_rows(outputs: dict[str, np.ndarray], examples: int) -> list[list[tuple[str, float]]]:
    """Per example, its (label, score) pairs (PostProcessClassificationResult).

    A missing `classes` output gives empty labels; missing `scores`, 0.0
    scores (the proto default), as TF Serving.

    Raises:
      ServingError: INVALID_ARGUMENT for outputs of the wrong rank, dtype or
        batch size.
    """
    classes, scores = outputs.get(CLASSES), outputs.get(SCORES)
    for name, value, dtype_ok, dtype in ((CLASSES, classes, lambda v: v.dtype == object, "DT_STRING"),
                                         (SCORES, scores, lambda v: v.dtype == np.float32, "DT_FLOAT")):
        if value is None:
            continue
        if value.ndim != 2:
            raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got {list(value.shape)}")
        if not dtype_ok(value):
            raise invalid_argument(f"Expected {name} Tensor of {dtype}. Got: {value.dtype}")
        if value.shape[0] != examples:
            raise invalid_argument(f"Expected {name} output batch size of {examples}. Got: {value.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument("Tensors class and score should match in dim_size(1). "
                               f"Got {classes.shape[1]} vs. {scores.shape[1]}")
    width = (classes if classes is not None else scores).shape[1]
    labels = ([[b.decode("utf-8", "replace") for b in row] for row in classes.tolist()]
              if classes is not None else [[""] * width] * examples)
    values = scores.tolist() if scores is not None else [[0.0] * width] * examples
    return [list(zip(labels[i], values[i], strict=True)) for i in range(examples)]


def regression_values(outputs: dict[str, np.ndarray], examples: int) -> list[float]:
    """One value per example (PostProcessRegressionResult).

    Raises:
      ServingError: INVALID_ARGUMENT unless the output is float32 [N] or [N, 1].
    """
    value = outputs[REGRESS_OUTPUTS]
    if not (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)):
        raise invalid_argument("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                               f"but got {list(value.shape)}")
    if value.shape[0] != examples:
        raise invalid_argument(f"Input batch size did not match output batch size: {examples} vs. {value.shape[0]}")
    if value.dtype != np.float32:
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {value.dtype}")
    return value.reshape(-1).tolist()


@dataclasses.dataclass(frozen=True)
class Task:
    """One MultiInference task: a signature name and Classify's or Regress's method name."""

    signature_name: str
    method_name: str


def multi_inference_signatures(servable: Servable, tasks: list[Task]) -> list[Signature]:
    """The tasks' signatures, checked as TensorFlowMultiInferenceRunner::Infer does.

    Raises:
      ServingError: INVALID_ARGUMENT for a duplicate or unknown signature or
        one that does not fit its method; UNIMPLEMENTED for a method other
        than Classify or Regress.
    """
    seen, signatures = set(), []
    for task in tasks:
        name = task.signature_name or DEFAULT_SIGNATURE
        if name in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        signature = servable.signatures.get(name)
        if signature is None:
            raise invalid_argument(f"Requested signature not found in model graph: {name}")
        if task.method_name == CLASSIFY_METHOD:
            problem = classify_problem(signature)
        elif task.method_name == REGRESS_METHOD:
            problem = regress_problem(signature)
        else:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f"Unsupported signature method_name: {task.method_name}")
        if problem:
            raise invalid_argument(problem)
        signatures.append(signature)
    return signatures
