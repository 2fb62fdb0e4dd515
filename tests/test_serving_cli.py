"""`python -m serving.server` with tensorflow_model_server's flags, as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
import pytest
import requests
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from serving.server import main
from tests.conftest import REPO
from tests.serving_fixtures import MODEL, free_port


def test_bad_flags_exit_nonzero():
    with pytest.raises(SystemExit):
        main(["--model_name", MODEL])  # --model_base_path is required
    assert main(["--model_base_path", "x", "--max_batch_size", "0", "--enable_batching"]) == 2


@pytest.mark.slow
def test_server_process_serves_rest_and_grpc_and_stops_on_sigterm(tiny_run):
    config, _, _ = tiny_run
    grpc_port, rest_port = free_port(), free_port()
    command = [sys.executable, "-m", "serving.server", f"--model_name={MODEL}",
               f"--model_base_path={os.path.join(config.output_dir, 'serving_model')}",
               f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--enable_batching",
               "--max_batch_size=16", "--batch_timeout_micros=1000", "--file_system_poll_wait_seconds=1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}"
        status = None
        for _ in range(240):  # until the model is loaded; bounded
            if process.poll() is not None:
                break
            try:
                status = requests.get(url, timeout=5).json()
                break
            except requests.ConnectionError:
                pass
            try:
                process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        assert status is not None, process.stderr.read().decode()[-2000:]
        assert status["model_version_status"][0]["state"] == "AVAILABLE"

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = MODEL
            response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
        assert response.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0
