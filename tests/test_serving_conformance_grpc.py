"""gRPC answers for a TF Serving-style SavedModel, through the stock tensorflow_serving.apis stubs.

Each test names what it mirrors in tensorflow/serving:
`model_servers/tensorflow_model_server_test.py` (and its test base),
`servables/tensorflow/multi_inference_test.cc`, `regressor.cc`,
`classifier.cc`, `predict_util.cc`, and `Tensor::AsProtoField`, which fills
the typed fields of every output when `--enable_serialization_as_tensor_content`
is off (the default). Expected values are half_plus_two's arithmetic or NumPy.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.test_serving_models import CLASSIFY, MODEL, REGRESS, example


@pytest.fixture(scope="module")
def stub(conformance_server):
    with grpc.insecure_channel(f"127.0.0.1:{conformance_server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _predict(stub, signature: str, **inputs) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return stub.Predict(request, timeout=30)


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_predict_unknown_rank_input_and_model_spec(stub):
    """TensorflowModelServerTestBase.VerifyPredictRequest: `y` as float_val, the response's ModelSpec;
    here through `serving_default`, whose input has unknown rank."""
    response = _predict(stub, "serving_default", x=np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    y = response.outputs["y"]
    assert y.dtype == tf.float32.as_datatype_enum and not y.tensor_content
    assert list(y.float_val) == [2.5, 3.0, 3.5, 4.0]
    assert [d.size for d in y.tensor_shape.dim] == [2, 2]
    assert (response.model_spec.name, response.model_spec.signature_name) == (MODEL, "serving_default")
    assert response.model_spec.version.value == 1


def test_predict_fills_the_typed_field_of_every_dtype(stub):
    """Tensor::AsProtoField (TF Serving's default output encoding): double_val, int_val, bool_val,
    string_val, int64_val, and ranks 1-3, with NumPy's values."""
    inputs = {"f64": np.array([1.5, -2.0]), "i32": np.array([[1, 2], [3, 4]], np.int32),
              "flag": np.array([True, False]), "text": np.array([b"ab", b"\xff"], dtype=object),
              "u8": np.arange(8, dtype=np.uint8).reshape(2, 2, 2), "i64": np.array([2**40, -5])}
    outputs = _predict(stub, "dtypes", **inputs).outputs
    expected = {"f64": ("double_val", inputs["f64"] * 2), "i32": ("int_val", inputs["i32"] + 1),
                "flag": ("bool_val", ~inputs["flag"]), "text": ("string_val", [b"AB", b"\xff"]),
                "text_bytes": ("string_val", inputs["text"]), "u8": ("int_val", inputs["u8"]),
                "i64": ("int64_val", -inputs["i64"])}
    for name, (field, values) in expected.items():
        proto = outputs[name]
        assert not proto.tensor_content, name
        assert list(getattr(proto, field)) == np.asarray(values).reshape(-1).tolist(), name
        assert [d.size for d in proto.tensor_shape.dim] == list(np.shape(values)), name


def test_scalars_half_and_complex_outputs(stub):
    """Tensor::AsProtoField for rank 0 (a scalar string included), half (half_val holds the bits)
    and complex64 (scomplex_val holds real and imaginary parts in turn)."""
    scalar = _predict(stub, "scalar", x=np.float32(3.0)).outputs
    assert list(scalar["label"].string_val) == [b"3.000000"] and not scalar["label"].tensor_shape.dim
    assert list(scalar["y"].float_val) == [3.5]
    unusual = _predict(stub, "unusual", x=np.array([1.0, 2.5], np.float32)).outputs
    assert list(unusual["h"].half_val) == np.array([1.0, 2.5], np.float16).view(np.uint16).tolist()
    assert list(unusual["z"].scomplex_val) == [1.0, -1.0, 2.5, -2.5]
    np.testing.assert_array_equal(tf.make_ndarray(unusual["z"]), np.array([1 - 1j, 2.5 - 2.5j], np.complex64))


def _regress_request(signature: str, *examples, model: str = MODEL) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for item in examples:
        request.input.example_list.examples.add().CopyFrom(item)
    return request


def test_regress_as_the_model_server_test(stub):
    """TensorflowModelServerTest._TestRegress: one regression of 3.0 for x = 2, the ModelSpec echoed;
    and example_list_with_context (util.cc InputToSerializedExampleTensor: context and example merged)."""
    response = stub.Regress(_regress_request("regress_x_to_y", example(x=2.0)), timeout=30)
    assert [r.value for r in response.result.regressions] == [3.0]
    assert (response.model_spec.name, response.model_spec.signature_name) == (MODEL, "regress_x_to_y")
    assert response.model_spec.version.value == 1
    request = _regress_request("regress_x_to_y2")
    request.input.example_list_with_context.context.CopyFrom(example(x=2.0))
    request.input.example_list_with_context.examples.add()
    request.input.example_list_with_context.examples.add().CopyFrom(example(x=80.0))
    assert [r.value for r in stub.Regress(request, timeout=30).result.regressions] == [4.0, 43.0]


def test_classify_as_the_model_server_test(stub):
    """TensorflowModelServerTest._TestClassify: score 3.0 for x = 2, no label for a scores-only signature."""
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.add().CopyFrom(example(x=2.0))
    response = stub.Classify(request, timeout=30)
    assert [(c.label, c.score) for c in response.result.classifications[0].classes] == [("", 3.0)]


def _multi(*tasks, examples: tuple | None = None) -> inference_pb2.MultiInferenceRequest:
    """A request of `tasks` (model, signature, method) on `examples` (default: one with x = 2)."""
    request = inference_pb2.MultiInferenceRequest()
    for item in (example(x=2.0),) if examples is None else examples:
        request.input.example_list.examples.add().CopyFrom(item)
    for model, signature, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = model
        task.model_spec.signature_name = signature
    return request


def _expected(request, *results) -> inference_pb2.MultiInferenceResponse:
    """The response multi_inference_test.cc builds: each task's ModelSpec with version 1."""
    expected = inference_pb2.MultiInferenceResponse()
    for task, (kind, value) in zip(request.tasks, results, strict=True):
        entry = expected.results.add()
        entry.model_spec.CopyFrom(task.model_spec)
        entry.model_spec.version.value = 1
        if kind == "regression":
            entry.regression_result.regressions.add(value=value)
        else:
            entry.classification_result.classifications.add().classes.add(score=value)
    return expected


def test_multi_inference_valid_requests(stub):
    """multi_inference_test.cc ValidSingleSignatureTest, MultipleValidRegressSignaturesTest,
    RegressAndClassifySignaturesTest (y = 0.5 x + 2, y2 = 0.5 x + 3 at x = 2)."""
    cases = [
        ([(MODEL, "regress_x_to_y", REGRESS)], [("regression", 3.0)]),
        ([(MODEL, "regress_x_to_y", REGRESS), (MODEL, "regress_x_to_y2", REGRESS)],
         [("regression", 3.0), ("regression", 4.0)]),
        ([(MODEL, "regress_x_to_y", REGRESS), (MODEL, "classify_x_to_y", CLASSIFY)],
         [("regression", 3.0), ("classification", 3.0)]),
    ]
    for tasks, results in cases:
        request = _multi(*tasks)
        assert stub.MultiInference(request, timeout=30) == _expected(request, *results)


def test_multi_inference_errors(stub):
    """multi_inference_test.cc MissingInputTest, UndefinedSignatureTest,
    InconsistentModelSpecsInRequestTest, EvaluateDuplicateSignaturesTest, UsupportedSignatureTypeTest:
    their status codes and message fragments."""
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (_multi((MODEL, "regress_x_to_y", REGRESS), examples=()), invalid, "Input is empty"),
        (_multi((MODEL, "ThisSignatureDoesNotExist", REGRESS)), invalid, "signature not found"),
        (_multi((MODEL, "regress_x_to_y", REGRESS), ("ModelDoesNotExist", "regress_x_to_y", REGRESS)), invalid,
         "must access the same model name"),
        (_multi((MODEL, "regress_x_to_y", REGRESS), (MODEL, "regress_x_to_y", REGRESS)), invalid,
         "Duplicate evaluation of signature: regress_x_to_y"),
        (_multi((MODEL, "serving_default", "tensorflow/serving/predict")), grpc.StatusCode.UNIMPLEMENTED,
         "Unsupported signature"),
        (_multi(("", "regress_x_to_y", REGRESS)), invalid, "ModelSpec has no name specified"),  # ServerCore
        (_multi(("other", "regress_x_to_y", REGRESS)), grpc.StatusCode.NOT_FOUND, "other"),
    ]
    for request, code, fragment in cases:
        error = _error(stub.MultiInference, request)
        assert error.code() == code, (fragment, error.details())
        assert fragment in error.details()


def test_status_codes_of_signature_errors(stub):
    """predict_util.cc (unknown Predict signature: FAILED_PRECONDITION), regressor.cc and classifier.cc
    (INVALID_ARGUMENT: unknown name, wrong structure, empty input), with TF Serving's messages."""
    error = _error(stub.Predict, predict_pb2.PredictRequest(model_spec={"name": MODEL, "signature_name": "nope"}))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and 'key "nope" not found' in error.details()
    cases = [(_regress_request("nope", example(x=1.0)), "No signature was found with the name: nope"),
             (_regress_request("regress_two_outputs", example(x=1.0)), "Expected one output Tensor."),
             (_regress_request("regress_x_to_y"), "Input is empty."),
             (_regress_request("regress_int64", example(n=1.0)), "n")]  # a float where ParseExample wants int64
    for request, fragment in cases:
        error = _error(stub.Regress, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in error.details(), error.details()
    classify = classification_pb2.ClassificationRequest(model_spec={"name": MODEL, "signature_name": "nope"})
    classify.input.example_list.examples.add()
    error = _error(stub.Classify, classify)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "No signature was found" in error.details()
