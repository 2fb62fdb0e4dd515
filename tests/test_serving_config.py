"""`--model_config_file`: several models, version policies, labels, reloads (file poll and gRPC).

Mirrors `tensorflow_model_server_test.py` (testGoodModelConfig, testBadModelConfig,
testModelConfigReload), `g3doc/serving_config.md` (policies, labels, REST
`/labels/<label>`, reloading) and `server_core.cc` (ValidateModelConfigList,
UpdateModelVersionLabelMap, ServableRequestFromModelSpec). Each version's model
is `y = 0.5 x + b` with its own `b`, so every answer names the version that gave it.
"""

from __future__ import annotations

import dataclasses
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.app import ServerOptions, start
from serving.errors import ServingError
from serving.model_config import VersionPolicy
from serving.server import main

OFFSETS = {("half_plus_two", 1): 2.0, ("half_plus_two", 2): 12.0, ("half_plus_three", 1): 3.0}
X = [1.0, 4.0]


class _Affine(tf.Module):
    def __init__(self, offset: float):
        super().__init__()
        self.offset = tf.Variable(offset)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        return {"y": 0.5 * x + self.offset}


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for (name, version), offset in OFFSETS.items():
        module = _Affine(offset)
        tf.saved_model.save(module, str(root / name / str(version)), signatures={"serving_default": module.serve})
    return root


def _config(root, two: str, three: bool = True) -> str:
    """A ModelServerConfig as serving_config.md writes it; `two` is half_plus_two's policy and labels."""
    text = f"""model_config_list {{
  config {{ name: 'half_plus_two' base_path: '{root / "half_plus_two"}' model_platform: 'tensorflow' {two} }}
"""
    if three:
        text += f"""  config {{ name: 'half_plus_three', base_path: '{root / "half_plus_three"}', model_platform: 'tensorflow' }}
"""
    return text + "}\n"


CANARY = """model_version_policy { specific { versions: 1 versions: 2 } }
  version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 }"""


def _rest(server, path: str) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/{path}:predict",
                         json={"instances": X}, timeout=30)


def _expected(name: str, version: int) -> list[float]:
    return list(0.5 * np.array(X) + OFFSETS[(name, version)])


def _grpc_predict(channel, name: str, version: int | None = None, label: str = "") -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(X, np.float32)))
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def _states(server, name: str) -> dict[str, str]:
    body = requests.get(f"http://127.0.0.1:{server.rest_port}/v1/models/{name}", timeout=30).json()
    return {entry["version"]: entry["state"] for entry in body["model_version_status"]}


def test_version_policies_select_as_the_file_system_source():
    """file_system_storage_path_source.cc: AspireLatestVersions (0 means 1), AspireAllVersions, AspireSpecificVersions."""
    on_disk = {1, 2, 3, 7}
    assert VersionPolicy().select(on_disk) == {7}
    assert VersionPolicy("latest", num_versions=2).select(on_disk) == {3, 7}
    assert VersionPolicy("latest", num_versions=0).select(on_disk) == {7}
    assert VersionPolicy("all").select(on_disk) == on_disk
    assert VersionPolicy("specific", versions=(2, 9)).select(on_disk) == {2}  # 9 is not on disk (yet)
    assert VersionPolicy().select(set()) == set()


@pytest.mark.slow  # starts a server
def test_two_models_labels_and_a_reload_when_the_file_is_edited(tmp_path, model_root):
    """testGoodModelConfig + testModelConfigReload, with serving_config.md's canary/stable labels."""
    path = tmp_path / "models.config"
    path.write_text(_config(model_root, CANARY))
    options = ServerOptions("", "", port=0, rest_api_port=0, file_system_poll_wait_seconds=0,
                            model_config_file=str(path), model_config_file_poll_wait_seconds=0.1)
    with start(options) as server, grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        for route, version in (("half_plus_two", 2), ("half_plus_two/versions/1", 1),
                               ("half_plus_two/labels/stable", 1), ("half_plus_two/labels/canary", 2)):
            assert _rest(server, route).json() == {"predictions": _expected("half_plus_two", version)}, route
        assert _rest(server, "half_plus_three").json() == {"predictions": _expected("half_plus_three", 1)}
        assert _rest(server, "half_plus_two/labels/beta").status_code == 400  # Unrecognized servable version label
        response = _grpc_predict(channel, "half_plus_two", label="stable")
        assert response.model_spec.version.value == 1
        assert list(response.outputs["y"].float_val) == _expected("half_plus_two", 1)
        assert _grpc_predict(channel, "half_plus_three").model_spec.version.value == 1
        assert _states(server, "half_plus_two") == {"2": "AVAILABLE", "1": "AVAILABLE"}

        # The edit: half_plus_three leaves, half_plus_two goes to latest 1 and "stable" moves to version 2.
        path.write_text(_config(model_root, "version_labels { key: 'stable' value: 2 }", three=False))
        for _ in range(300):  # the poll thread picks it up; bounded
            if server.models.model_names == ["half_plus_two"] and _states(server, "half_plus_two")["1"] == "END" \
                    and server.models.manager("half_plus_two").version_labels == {"stable": 2}:
                break
            time.sleep(0.05)
        assert _states(server, "half_plus_two") == {"2": "AVAILABLE", "1": "END"}
        assert _rest(server, "half_plus_two/labels/stable").json() == {"predictions": _expected("half_plus_two", 2)}
        assert _rest(server, "half_plus_two/labels/canary").status_code == 400  # the label left with the edit
        assert _rest(server, "half_plus_two/versions/1").status_code == 404
        assert _rest(server, "half_plus_three").status_code == 404  # unloaded...
        assert _states(server, "half_plus_three") == {"1": "END"}  # ...and reported so
        with pytest.raises(grpc.RpcError) as caught:
            _grpc_predict(channel, "half_plus_three")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.slow  # starts a server
def test_reload_config_request_over_grpc(tmp_path, model_root):
    """ModelServiceImpl::HandleReloadConfigRequest: OK status in the response, refusals as the RPC's status."""
    options = ServerOptions("half_plus_two", str(model_root / "half_plus_two"), port=0, rest_api_port=0,
                            file_system_poll_wait_seconds=0)
    with start(options) as server, grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        assert _rest(server, "half_plus_three").status_code == 404

        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(_proto(_config(model_root, "model_version_policy { all {} }")))
        response = stub.HandleReloadConfigRequest(request, timeout=60)
        assert response.status.error_code == 0 and not response.status.error_message
        assert _rest(server, "half_plus_three").json() == {"predictions": _expected("half_plus_three", 1)}
        assert _states(server, "half_plus_two") == {"2": "AVAILABLE", "1": "AVAILABLE"}

        refused = {  # server_core.cc's checks, each leaving the served models as they were
            "relative": ("model_config_list { config { name: 'a' base_path: 'rel/a' model_platform: 'tensorflow' } }",
                         grpc.StatusCode.INVALID_ARGUMENT, "to have an absolute path"),
            "twice": (_config(model_root, "").replace("half_plus_three", "half_plus_two"),
                      grpc.StatusCode.INVALID_ARGUMENT, "multiple times in config list"),
            "platform": (_config(model_root, "").replace("'tensorflow' }\n}", "'onnx' }\n}"),
                         grpc.StatusCode.FAILED_PRECONDITION, "no entry for platform onnx"),
            "no platform": (_config(model_root, "").replace(", model_platform: 'tensorflow'", ""),
                            grpc.StatusCode.INVALID_ARGUMENT, "nor ModelServerConfig::model_platform"),
            "label": (_config(model_root, "model_version_policy { all {} } version_labels { key: 'next' value: 3 }"),
                      grpc.StatusCode.FAILED_PRECONDITION, "not currently available for inference"),
        }
        for name, (text, code, message) in refused.items():
            request.config.CopyFrom(_proto(text))
            with pytest.raises(grpc.RpcError) as caught:
                stub.HandleReloadConfigRequest(request, timeout=60)
            assert caught.value.code() == code and message in caught.value.details(), name
        assert server.models.available() == {"half_plus_two": [1, 2], "half_plus_three": [1]}
        assert server.models.manager("half_plus_two").version_labels == {}
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "half_plus_two"
        assert len(stub.GetModelStatus(status, timeout=30).model_version_status) == 2


@pytest.mark.slow  # starts a server
def test_labels_for_unavailable_versions_at_start(tmp_path, model_root):
    """UpdateModelVersionLabelMap: refused, unless --allow_version_labels_for_unavailable_models."""
    path = tmp_path / "models.config"
    path.write_text(_config(model_root, "version_labels { key: 'next' value: 3 }", three=False))
    options = ServerOptions("", "", port=None, rest_api_port=0, file_system_poll_wait_seconds=0,
                            model_config_file=str(path))
    with pytest.raises(ServingError, match="version 3 of model half_plus_two, which is not currently available"):
        start(options)
    allowed = dataclasses.replace(options, allow_version_labels_for_unavailable_models=True)
    with start(allowed) as server:
        assert _rest(server, "half_plus_two/labels/next").status_code == 404  # Specific(half_plus_two, 3)
        assert _rest(server, "half_plus_two").status_code == 200


def test_bad_config_file_refuses_to_start(tmp_path, caplog):
    """testBadModelConfig: the server exits, naming the text-format parse error."""
    path = tmp_path / "bad.config"
    path.write_text("improperly formatted file")
    assert main(["--model_config_file", str(path), "--port", "0"]) == 1
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in caplog.text
    with pytest.raises(SystemExit):
        main(["--port", "0"])  # neither --model_base_path nor --model_config_file


@pytest.mark.slow  # starts a server
def test_a_bad_edit_keeps_the_running_config(tmp_path, model_root):
    """PollFilesystemAndReloadConfig: a file that does not parse is logged and changes nothing."""
    path = tmp_path / "models.config"
    path.write_text(_config(model_root, ""))
    options = ServerOptions("", "", port=None, rest_api_port=0, file_system_poll_wait_seconds=0,
                            model_config_file=str(path))
    with start(options) as server:
        path.write_text("model_config_list { config { name: ")
        server.models.reload_file(str(path))
        assert server.models.model_names == ["half_plus_three", "half_plus_two"]
        assert _rest(server, "half_plus_three").status_code == 200


def _proto(text: str) -> model_server_config_pb2.ModelServerConfig:
    from google.protobuf import text_format

    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
