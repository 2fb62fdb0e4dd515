"""gRPC API through tensorflow_serving.apis stubs and tf.make_tensor_proto requests."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.serving_fixtures import (
    MODEL,
    assert_close,
    call_signature,
    example_features,
    feature_tensors,
    serialize,
)

pytestmark = pytest.mark.slow
OUTPUTS = ("class_ids", "logits", "probabilities", "scores")


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as opened:
        yield opened


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def _predict_request(signature: str, inputs: dict, version: int | None = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_predict_features_matches_saved_model(predictions, reference, rows):
    tensors = feature_tensors(rows)
    expected = call_signature(reference, "predict_features", **tensors)
    request = _predict_request("predict_features", {k: v.numpy() for k, v in tensors.items()})
    response = predictions.Predict(request, timeout=30)
    assert set(response.outputs) == set(OUTPUTS)
    for name in OUTPUTS:
        assert_close(tf.make_ndarray(response.outputs[name]), expected[name])
    assert tf.make_ndarray(response.outputs["class_ids"]).dtype == np.int64
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "predict_features"


def test_predict_outputs_fill_typed_fields_as_tf_serving_does(predictions, reference, rows):
    """TF Serving's wire format (`Tensor::AsProtoField`): every value in `float_val` / `int64_val`,
    shape in `tensor_shape`, no `tensor_content`; what its example clients read directly."""
    serialized = [serialize(example_features(row)) for row in rows]
    assert len(serialized) > 1
    expected = call_signature(reference, "serving_default", examples=serialized)
    response = predictions.Predict(_predict_request("serving_default", {"examples": serialized}), timeout=30)
    scores, probabilities = response.outputs["scores"], response.outputs["probabilities"]
    assert scores.tensor_content == b"" and probabilities.tensor_content == b""
    assert [d.size for d in probabilities.tensor_shape.dim] == [len(rows), 2]
    assert_close(np.array(scores.float_val), expected["scores"])
    assert_close(np.array(probabilities.float_val).reshape(-1, 2), expected["probabilities"])
    assert list(response.outputs["class_ids"].int64_val) == list(expected["class_ids"])


def test_serving_default_with_examples_and_output_filter(predictions, reference, rows):
    serialized = [serialize(example_features(row)) for row in rows]
    expected = call_signature(reference, "serving_default", examples=serialized)
    request = _predict_request("", {"examples": serialized}, version=1)
    request.output_filter.append("scores")
    response = predictions.Predict(request, timeout=30)
    assert list(response.outputs) == ["scores"]
    assert_close(tf.make_ndarray(response.outputs["scores"]), expected["scores"])
    assert response.model_spec.signature_name == "serving_default"


def test_classify_with_and_without_context(predictions, reference, rows):
    features = [example_features(row) for row in rows]
    context = {"x11": 0.5}
    examples = [{k: v for k, v in f.items() if k != "x11"} for f in features]
    expected = call_signature(reference, "classification",
                              inputs=[serialize({**context, **example}) for example in examples])

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "classification"
    listed = request.input.example_list_with_context
    listed.context.ParseFromString(serialize(context))
    for example in examples:
        listed.examples.add().ParseFromString(serialize(example))
    response = predictions.Classify(request, timeout=30)
    assert response.model_spec.version.value == 1
    labels = [[c.label for c in result.classes] for result in response.result.classifications]
    assert labels == [["0", "1"]] * len(rows)
    scores = [[c.score for c in result.classes] for result in response.result.classifications]
    assert_close(scores, expected["scores"])

    plain = classification_pb2.ClassificationRequest()
    plain.model_spec.name = MODEL
    for example in features:
        plain.input.example_list.examples.add().ParseFromString(serialize(example))
    expected_plain = call_signature(reference, "classification", inputs=[serialize(f) for f in features])
    response = predictions.Classify(plain, timeout=30)
    assert_close([[c.score for c in r.classes] for r in response.result.classifications], expected_plain["scores"])


def test_metadata_and_status(predictions, models, version_dir):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    response = predictions.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    served = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(served)
    saved = saved_model_pb2.SavedModel()
    with open(f"{version_dir}/saved_model.pb", "rb") as handle:
        saved.ParseFromString(handle.read())
    assert dict(served.signature_def) == dict(saved.meta_graphs[0].signature_def)
    assert served.signature_def["classification"].method_name == "tensorflow/serving/classify"

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    status = models.GetModelStatus(status_request, timeout=30)
    assert [(s.version, s.state, s.status.error_code) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_errors_have_grpc_codes_and_server_stays_up(predictions, models, rows):
    tensors = {k: v.numpy() for k, v in feature_tensors(rows).items()}
    unknown_model = _predict_request("predict_features", tensors)
    unknown_model.model_spec.name = "other"
    cases = [
        (unknown_model, grpc.StatusCode.NOT_FOUND, "Latest(other)"),
        (_predict_request("predict_features", tensors, version=5), grpc.StatusCode.NOT_FOUND, "imbalance, 5"),
        (_predict_request("nope", tensors), grpc.StatusCode.FAILED_PRECONDITION, "nope"),  # as predict_util.cc
        (_predict_request("predict_features", {**tensors, "x0": tensors["x0"].astype(np.float64)}),
         grpc.StatusCode.INVALID_ARGUMENT, "float64"),
        (_predict_request("predict_features", {k: v for k, v in tensors.items() if k != "x3"}),
         grpc.StatusCode.INVALID_ARGUMENT, "x3"),
        (_predict_request("predict_features", {**tensors, "x0": tensors["x0"].reshape(-1, 1)}),
         grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        (_predict_request("", {"examples": [b"\xff not a proto"]}), grpc.StatusCode.INVALID_ARGUMENT, ""),
    ]
    for request, code, fragment in cases:
        error = _error(predictions.Predict, request)
        assert error.code() == code, error.details()
        assert fragment in error.details()

    broken = _predict_request("predict_features", tensors)
    broken.inputs["x0"].tensor_content = b"\x00\x01\x02"  # not a whole number of float32s
    assert _error(predictions.Predict, broken).code() == grpc.StatusCode.INVALID_ARGUMENT

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    classify.model_spec.signature_name = "predict_features"
    classify.input.example_list.examples.add()
    assert _error(predictions.Classify, classify).code() == grpc.StatusCode.INVALID_ARGUMENT
    empty = classification_pb2.ClassificationRequest()
    empty.model_spec.name = MODEL
    assert _error(predictions.Classify, empty).code() == grpc.StatusCode.INVALID_ARGUMENT

    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = MODEL
    assert _error(predictions.GetModelMetadata, metadata).code() == grpc.StatusCode.INVALID_ARGUMENT
    metadata.metadata_field.append("weights")
    assert _error(predictions.GetModelMetadata, metadata).code() == grpc.StatusCode.INVALID_ARGUMENT

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = MODEL
    status.model_spec.version.value = 42
    assert _error(models.GetModelStatus, status).code() == grpc.StatusCode.NOT_FOUND

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = MODEL
    regress.input.example_list.examples.add()
    assert _error(predictions.Regress, regress).code() == grpc.StatusCode.INVALID_ARGUMENT  # no regress signature

    response = predictions.Predict(_predict_request("predict_features", tensors), timeout=30)
    assert len(tf.make_ndarray(response.outputs["scores"])) == len(rows)
