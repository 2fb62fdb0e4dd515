"""Categorical features under several replicas: vocabulary ids in the input pipeline;
two MultiWorkerMirroredStrategy workers on 127.0.0.1, the chief exports."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO, schema_of
from trainer import hparams as hparams_lib
from trainer.distribute import vocabulary_ids
from trainer.model import build_model, lookup_layers, model_inputs, with_vocabulary_ids


def reference_ids(values, vocabulary) -> np.ndarray:
    """1 + the value's position in the vocabulary; 0 for unseen or missing (docs/design.md §4)."""
    return np.array([vocabulary.index(v) + 1 if v in vocabulary else 0 for v in values], np.int64)


def test_the_view_over_vocabulary_ids_is_the_same_model(tiny_frame):
    frame = tiny_frame.head(300)
    schema = schema_of(frame.drop(columns=["target"]), "target")
    hp = hparams_lib.with_values((270, 30), {"body": "mlp"})
    model = build_model(hp, schema)
    columns = {f.name: frame[f.name].to_numpy(np.float32) if f.kind == "numeric" else
               frame[f.name].fillna("").astype(str).to_numpy(object) for f in schema.features}
    columns["region"][:3] = ["never seen", "", columns["region"][3]]
    # The numeric features as one matrix, as the datasets yield them.
    raw = model_inputs(model, {name: tf.constant(values) for name, values in columns.items()})
    dataset = vocabulary_ids(tf.data.Dataset.from_tensors((raw, frame["target"].to_numpy())),
                             lookup_layers(model, schema))
    features, _ = next(iter(dataset))
    for feature in schema.categorical:
        vocabulary = list(feature.vocabulary)
        np.testing.assert_array_equal(features[feature.name].numpy(), reference_ids(columns[feature.name], vocabulary))
    view = with_vocabulary_ids(model, schema)
    assert view.count_params() == model.count_params()
    np.testing.assert_allclose(view(features).numpy(), model(raw).numpy(), rtol=0, atol=1e-6)
    before = model(raw).numpy()
    bias = view.trainable_weights[-1]
    bias.assign(bias + 1.0)  # training the view trains the model: the weights are the same variables
    after = model(raw).numpy()
    assert np.abs(after - before).max() > 0.1
    np.testing.assert_allclose(view(features).numpy(), after, rtol=0, atol=1e-6)


WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import trainer.pipeline as pipeline
    from trainer.config import RunConfig

    data, run_dir, weights_path = sys.argv[1:4]
    export = pipeline.finalize

    def observe(model, *args, **kwargs):  # this worker's trained weights, before export
        np.savez(weights_path, *model.get_weights())
        return export(model, *args, **kwargs)

    pipeline.finalize = observe
    config = RunConfig(data=data, label="target", output_dir=run_dir, epochs=2, verbose=0,
                       distribute="multi_worker", selection="validation")
    print(json.dumps(pipeline.train_and_export(config).to_json(), default=str))
""")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(data: str, run_dir: str, tmp_path) -> list[dict]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        log = open(tmp_path / f"worker-{index}.log", "w")
        command = [sys.executable, "-c", WORKER, data, run_dir, str(tmp_path / f"weights-{index}.npz")]
        workers.append((subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True),
                        log))
    summaries = []
    try:
        for process, log in workers:
            out, _ = process.communicate(timeout=600)
            log.close()
            tail = open(log.name).read()[-3000:]
            assert process.returncode == 0, tail
            summaries.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.kill()
    return summaries


@pytest.mark.slow
def test_two_workers_train_together_and_the_chief_exports(tmp_path, tiny_csv):
    from trainer.crossval import load_arrays, predict_margin
    from trainer.data.dataset import read_serialized
    from trainer.data.prepare import PreparedData
    from trainer.data.schema import load_schema
    from trainer.data.split import load_counts

    run_dir = str(tmp_path / "run")
    chief, other = run_two_workers(tiny_csv, run_dir, tmp_path)
    assert chief["replicas"] == other["replicas"] == 2 and chief["workers"] == 2
    # Only the chief wrote the run; the other worker's scratch directory is gone.
    assert chief["version_dir"] == os.path.join(run_dir, "serving_model", "1")
    assert not other["version_dir"].startswith(run_dir) and not os.path.exists(other["version_dir"])
    assert sorted(os.listdir(os.path.join(run_dir, "serving_model"))) == ["1"]
    assert json.load(open(os.path.join(run_dir, "run.json")))["weighted"]["workers"] == 2

    # Synchronous training: both workers hold the same weights.
    weights = [np.load(tmp_path / f"weights-{index}.npz") for index in range(2)]
    assert len(weights[0].files) == len(weights[1].files) > 0
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])

    # The export takes raw features (strings included) and gives what the package's own
    # Keras model with those weights predicts, built afresh on one device.
    directory = os.path.join(run_dir, "data")
    data = PreparedData(directory, load_schema(directory), load_counts(directory), {})
    model = build_model(hparams_lib.with_values(data.train_counts, chief["hyperparameters"]), data.schema)
    model.set_weights([weights[0][name] for name in weights[0].files])
    test = load_arrays([data.pattern("test")], data.schema)
    loaded = tf.saved_model.load(chief["version_dir"])
    served = loaded.signatures["serving_default"](examples=tf.constant(read_serialized(data.pattern("test"))))
    np.testing.assert_allclose(served["logits"].numpy(), predict_margin(model, test), rtol=0, atol=1e-4)
    few = {name: tf.constant(values[:5]) for name, values in test.features.items()}
    by_features = loaded.signatures["predict_features"](**few)
    np.testing.assert_allclose(by_features["scores"].numpy(), served["scores"].numpy()[:5], rtol=0, atol=1e-6)
    assert chief["test"]["roc_auc"] > 0.6  # it learned something
