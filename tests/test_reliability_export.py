"""Crashes while a version is written, and reruns into an existing run.

The exporter writes `<base>/.staging-*` and renames it to the next integer;
the server lists only integer directories holding a `saved_model.pb`. Here
an exporter is killed with SIGKILL mid-write, and versions are copied in by
hand half-way, and neither is ever served or reported as a version.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from serving.app import ServerOptions, start
from serving.versions import list_versions
from tests.conftest import REPO
from tests.serving_fixtures import MODEL, feature_inputs, post, rest_url
from tests.test_reliability_data import tree

_EXPORT_LOOP = r"""
import sys
import keras_tuner as kt
from trainer.calibration import Calibration
from trainer.export import ServingModule, export_version
from trainer.model import build_model
from trainer.data.schema import load_schema

schema = load_schema(sys.argv[1])
module = ServingModule(build_model(kt.HyperParameters(), schema), schema, Calibration("none"), 0.5)
for _ in range(100):
    print("exported", export_version(module, sys.argv[2]), flush=True)
"""


def _status(server) -> list[tuple[str, str]]:
    body = requests.get(rest_url(server), timeout=30).json()
    return [(entry["version"], entry["state"]) for entry in body["model_version_status"]]


def _kill_mid_export(data_dir: str, base: str) -> bool:
    """Runs the export loop and SIGKILLs it while a staging directory is being written.

    Returns True if the kill left a `.staging-*` directory behind (it was mid-write).
    """
    process = subprocess.Popen([sys.executable, "-c", _EXPORT_LOOP, data_dir, base], cwd=REPO,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO},
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = process.stdout.readline()  # blocks until one version is complete (or the child died)
        assert first.startswith("exported "), f"the export loop failed to start: {first!r}"
        for _ in range(4000):  # bounded: a few exports' worth of polling
            names = os.listdir(base)
            if any(n.startswith(".staging-") and os.path.isdir(os.path.join(base, n, "variables")) for n in names):
                break
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
    return any(name.startswith(".staging-") for name in os.listdir(base))


@pytest.mark.slow
def test_kill_9_during_export_leaves_no_visible_half_version(tmp_path, tiny_run, rows):
    config, _, _ = tiny_run
    base = tmp_path / "serving_model"
    base.mkdir()
    mid_write = False
    for _ in range(3):  # the kill can land just after a rename; try again (bounded)
        if _kill_mid_export(os.path.join(config.output_dir, "data"), str(base)):
            mid_write = True
            break
    assert mid_write, "never caught the exporter mid-write"
    names = os.listdir(base)
    numbered = sorted(int(n) for n in names if n.isdigit())
    assert numbered == list(range(1, len(numbered) + 1))  # only whole versions got a number
    assert all(n.isdigit() or n.startswith(".staging-") for n in names)
    for version in numbered:
        assert (base / str(version) / "saved_model.pb").is_file()
        assert (base / str(version) / "variables" / "variables.index").is_file()
    assert list_versions(str(base)) == {v: str(base / str(v)) for v in numbered}

    options = ServerOptions(MODEL, str(base), port=None, rest_api_port=0, file_system_poll_wait_seconds=0)
    with start(options) as server:
        assert server.versions.serving_version == numbered[-1]
        assert _status(server) == [(str(numbered[-1]), "AVAILABLE")]  # the staging dir was never tried
        payload = {"signature_name": "predict_features", "inputs": feature_inputs(rows)}
        assert post(rest_url(server, ":predict"), payload).status_code == 200

    # The next export after the crash takes the next number; the leftover staging dir does not get in the way.
    from trainer.layout import next_version
    assert next_version(str(base)) == numbered[-1] + 1


@pytest.mark.slow
def test_half_copied_versions_are_not_served_until_complete(tmp_path, version_dir, rows):
    """A version copied in by hand (not via a rename) shows up file by file."""
    base = tmp_path / "model"
    shutil.copytree(version_dir, base / "1")
    payload = {"signature_name": "predict_features", "inputs": feature_inputs(rows)}
    options = ServerOptions(MODEL, str(base), port=None, rest_api_port=0, file_system_poll_wait_seconds=0,
                            max_num_load_retries=3)
    with start(options) as server:
        (base / "2" / "variables").mkdir(parents=True)  # copy started: no saved_model.pb yet
        server.versions.poll_once()
        assert server.versions.serving_version == 1
        assert _status(server) == [("1", "AVAILABLE")]  # not even listed

        shutil.copy(os.path.join(version_dir, "saved_model.pb"), base / "2")  # the graph, not the variables
        server.versions.poll_once()
        assert server.versions.serving_version == 1  # failed to load: the old one keeps serving
        assert post(rest_url(server, ":predict"), payload).json()["outputs"]["scores"]
        body = requests.get(rest_url(server, "/versions/2"), timeout=30).json()["model_version_status"][0]
        assert body["state"] == "END" and body["status"]["error_message"]

        shutil.rmtree(base / "2")
        shutil.copytree(version_dir, base / "2")  # the copy completes: picked up on a retry
        server.versions.poll_once()
        assert server.versions.serving_version == 2
        assert _status(server) == [("2", "AVAILABLE"), ("1", "END")]
        assert post(rest_url(server, "/versions/2:predict"), payload).status_code == 200


@pytest.mark.slow
def test_training_again_into_a_run_adds_a_version_and_changes_nothing_else(tmp_path, tiny_run):
    from trainer.pipeline import train_and_export

    config, _, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(config.output_dir, copy)
    before = tree(copy)
    earlier = json.loads((copy / "run.json").read_text())
    summary = train_and_export(config.replace(output_dir=str(copy), epochs=1))
    after = tree(copy)
    assert summary.version_dir == str(copy / "serving_model" / "2")
    kept = {path: digest for path, digest in before.items()
            if path.startswith(("data", os.path.join("serving_model", "1"), "baseline_model", os.path.join(
                "history", "baseline"), os.path.join("logs", "baseline")))}
    assert kept and all(after.get(path) == digest for path, digest in kept.items())
    run = json.loads((copy / "run.json").read_text())
    assert run["weighted"]["version_dir"] == str(copy / "serving_model" / "2")
    assert run["baseline"] == earlier["baseline"]  # the other model's record is kept
