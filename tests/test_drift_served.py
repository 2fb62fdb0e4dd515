"""End to end: train (the tiny run), serve with request logging, send traffic, judge the logs with the drift run.

Traffic whose x0 (numeric) and channel (categorical) are shifted is flagged on exactly those two and on the
served model's score distribution; unshifted traffic of the same size flags nothing.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from serving.app import ServerOptions, start
from tests.serving_fixtures import MODEL, feature_inputs, post
from tests.test_drift import _drift, _flagged, traffic  # noqa: F401  (the fixture, shared)
from tests.test_request_logging import config_text

BATCH = 500  # rows per REST request: a few requests per file, each logged one PredictionLog per row


def _serve_and_log(root, version_dir: str, files: dict[str, str]) -> dict[str, str]:
    """Serves version 1 with a tfrecord logging_config per traffic file; returns each file's log prefix glob."""
    base = root / "model"
    shutil.copytree(version_dir, base / "1")
    prefixes = {}
    for name, path in files.items():
        logs = root / "logs" / name
        config = root / f"{name}.config"
        config.write_text(config_text({"name": MODEL, "base": base, "kind": "tfrecord", "prefix": logs / "requests",
                                       "rate": 1.0}))
        server = start(ServerOptions(model_name="", model_base_path="", model_config_file=str(config), port=0,
                                     rest_api_port=0, file_system_poll_wait_seconds=0, max_request_bytes=64 << 20))
        try:
            frame = pd.read_csv(path).drop(columns=["target"])
            text = frame.select_dtypes(include="object").columns  # a missing category is sent as ""
            frame[text] = frame[text].astype(object).where(frame[text].notna(), None)
            rows = frame.to_dict(orient="records")
            for start_row in range(0, len(rows), BATCH):
                inputs = feature_inputs(rows[start_row:start_row + BATCH])
                answer = post(f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}:predict",
                              {"signature_name": "predict_features", "inputs": inputs})
                assert answer.status_code == 200, answer.text
        finally:
            server.stop()  # flushes and closes the log files
        prefixes[name] = str(logs / "requests-*")
    return prefixes


@pytest.mark.slow
def test_served_traffic_logged_and_judged(tiny_run, traffic, tmp_path, capsys):  # noqa: F811
    config, weighted, _ = tiny_run
    logs = _serve_and_log(tmp_path, weighted.version_dir,
                          {"shifted": traffic["shifted"], "unshifted": traffic["unshifted"]})
    common = ("--run", config.output_dir, "--reference", traffic["reference"])
    status, lines, comparisons = _drift(capsys, *common, "--logs", logs["shifted"], "--output",
                                        str(tmp_path / "shifted"))
    flagged = _flagged(comparisons)
    assert status == 1 and {"x0", "channel", "served_model.score"} <= flagged
    assert flagged - {"x0", "channel"} <= {"served_model.score", "served_model.predicted_positive_rate"}
    assert comparisons["x0"]["current_n"] > 2000  # every logged row was read (x0 is missing in a few)
    status, lines, comparisons = _drift(capsys, *common, "--logs", logs["unshifted"], "--output",
                                        str(tmp_path / "unshifted"))
    assert (status, _flagged(comparisons)) == (0, set())
