"""Training under tf.distribute.MirroredStrategy on two logical CPU devices, numeric and categorical
(strings become vocabulary ids in the input pipeline; the export still takes strings)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO
from trainer.data.dataset import read_serialized
from trainer.summary import ModelSummary

pytestmark = pytest.mark.slow

# Logical devices must be configured before TensorFlow initialises its runtime,
# hence a fresh interpreter.
SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainer.config import RunConfig
    from trainer.pipeline import train_and_export
    config = RunConfig(data=sys.argv[1], label="target", output_dir=sys.argv[2], epochs=2, verbose=0,
                       distribute="mirrored", selection="validation")
    print(json.dumps(train_and_export(config).to_json(), default=str))
""")


def _train_mirrored(csv_path, run_dir):
    result = subprocess.run([sys.executable, "-c", SCRIPT, csv_path, str(run_dir)], cwd=REPO, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr[-3000:]
    return ModelSummary.from_json(json.loads(result.stdout.strip().splitlines()[-1]))  # run.json's section


@pytest.mark.parametrize("categorical", [False, True], ids=["numeric", "categorical"])
def test_mirrored_training_on_two_replicas(tmp_path, tiny_frame, categorical):
    data = tmp_path / "data.csv"
    (tiny_frame if categorical else tiny_frame.drop(columns=["region", "channel", "merchant"])).to_csv(data, index=False)
    summary = _train_mirrored(str(data), tmp_path / "run")
    assert summary.replicas == 2
    # The model trained across replicas exports and serves like any other.
    serialized = read_serialized(str(tmp_path / "run" / "data" / "test" / "data-*.tfrecord.gz"))
    out = tf.saved_model.load(summary.version_dir).signatures["serving_default"](
        examples=tf.constant(serialized))
    scores = out["scores"].numpy()
    assert scores.shape == (len(serialized),) and np.isfinite(scores).all()
    np.testing.assert_array_equal(out["class_ids"].numpy(),
                                  (scores >= np.float32(summary.threshold.value)).astype(np.int64))
    assert summary.test.roc_auc > 0.6  # it learned something across replicas
