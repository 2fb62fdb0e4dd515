"""Batch scoring (`python -m serving.batch`) with data, model and output on gs:// and s3:// (tests/object_storage.py).

The reference is the same job on local copies of the same files (the local
path is checked against the REST server in tests/test_batch_scoring.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

from serving.batch import main
from serving.batch_write import SUCCESS_FILE
from trainer import storage
from trainer.atomic import publish_version
from trainer.data.synthetic import make_synthetic

pytestmark = pytest.mark.slow


@pytest.fixture(params=["gs", "s3"])
def bucket(request) -> str:
    return request.getfixturevalue({"gs": "gcs", "s3": "s3"}[request.param])


def _predictions(directory: str) -> pd.DataFrame:
    names = [n for n in storage.list_files(directory) if n.startswith("predictions-")]
    frames = []
    for name in names:
        with storage.open_file(storage.join(directory, name)) as handle:
            frames.append(pd.read_parquet(handle))
    return pd.concat(frames, ignore_index=True)


def test_remote_scoring_equals_local_and_publishes_success_last(bucket, tmp_path, version_dir, capsys):
    frame = make_synthetic(negatives=150, positives=15, seed=21).drop(columns=["target"])
    frame.insert(0, "row_id", [f"r{i}" for i in range(len(frame))])
    local_data = tmp_path / "rows.csv"
    frame.to_csv(local_data, index=False)
    local_model = tmp_path / "model"
    publish_version(version_dir, str(local_model))
    remote_model = storage.join(bucket, "run", "serving_model")
    publish_version(version_dir, remote_model)
    storage.copy_file(str(local_data), storage.join(bucket, "in", "rows.csv"))

    remote_out = storage.join(bucket, "scores")
    assert main(["--model_base_path", remote_model, "--data", storage.join(bucket, "in", "*.csv"),
                 "--output", remote_out, "--id-column", "row_id"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"scored {len(frame)} rows, 0 errors"
    assert main(["--model_base_path", str(local_model), "--data", str(local_data), "--output",
                 str(tmp_path / "local_scores"), "--id-column", "row_id"]) == 0
    assert storage.read_text(storage.join(remote_out, SUCCESS_FILE)).startswith(f"scored {len(frame)} rows")
    remote, local = _predictions(remote_out), _predictions(str(tmp_path / "local_scores"))
    assert list(remote["row_id"]) == list(frame["row_id"])
    pd.testing.assert_frame_equal(remote, local)

    # An output that is not empty: one line, exit 2, nothing written or removed.
    assert main(["--model_base_path", remote_model, "--data", storage.join(bucket, "in", "*.csv"),
                 "--output", remote_out]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert SUCCESS_FILE in storage.list_files(remote_out)


def test_missing_bucket_is_one_line_exit_2(bucket, tmp_path, capsys):
    missing = bucket.split("://")[0] + "://no-such-bucket-imbalance"
    assert main(["--model_base_path", f"{missing}/serving_model", "--data", str(tmp_path / "x.csv"),
                 "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-bucket-imbalance does not exist" in err[0]
    assert not (tmp_path / "out").exists()


def test_failed_remote_job_leaves_nothing(gcs, tmp_path, version_dir, monkeypatch):
    import serving.batch_pipeline as batch_pipeline

    frame = make_synthetic(negatives=40, positives=4, seed=2).drop(columns=["target"])
    frame.to_csv(tmp_path / "rows.csv", index=False)
    model = storage.join(gcs, "serving_model")
    publish_version(version_dir, model)
    real_write = storage.write_text

    def failing_write(path, text):
        if path.endswith(SUCCESS_FILE):
            raise OSError("the store went away")
        real_write(path, text)

    monkeypatch.setattr(batch_pipeline.storage, "write_text", failing_write)
    output = storage.join(gcs, "scores")
    with pytest.raises(OSError, match="the store went away"):
        batch_pipeline.score(batch_pipeline.BatchConfig(model_base_path=model, data=str(tmp_path / "rows.csv"),
                                                        output=output))
    assert storage.list_files(output) == []  # the part files written before the failure were removed


def test_s3_endpoint_from_beam_pipeline_args(s3, s3_server, tmp_path, version_dir, monkeypatch, capsys):
    """`--beam-pipeline-args=--s3_endpoint_url=...` reaches the driver's reads and the workers' (no env variable)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    args = f"--s3_endpoint_url={s3_server.server.url} --s3_access_key_id=testing --s3_secret_access_key=testing"
    frame = make_synthetic(negatives=30, positives=3, seed=5).drop(columns=["target"])
    frame.to_csv(tmp_path / "rows.csv", index=False)
    local_model = tmp_path / "model"
    publish_version(version_dir, str(local_model))
    try:
        assert main(["--model_base_path", str(local_model), "--data", str(tmp_path / "rows.csv"),
                     "--output", storage.join(s3, "scores"), "--beam-pipeline-args", args]) == 0
        assert capsys.readouterr().out.strip().endswith(f"scored {len(frame)} rows, 0 errors")
        assert SUCCESS_FILE in storage.list_files(storage.join(s3, "scores"))
    finally:
        storage.configure(["--s3_endpoint_url=" + s3_server.server.url])  # later tests share the process
