"""The exported SavedModel: TF Serving layout, signatures, exact round trip."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from trainer.data.dataset import read_labels, read_serialized
from trainer.data.prepare import prepare_data
from trainer.layout import CLASSIFY_METHOD, next_version

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tiny_run):
    config, weighted, _ = tiny_run
    data = prepare_data(config)  # reuses RUN/data
    serialized = read_serialized(data.pattern("test"))
    return config, weighted, data, serialized, tf.saved_model.load(weighted.version_dir)


def test_layout_is_versioned_and_has_no_staging_left(tiny_run):
    config, weighted, baseline = tiny_run
    assert weighted.version_dir == os.path.join(config.output_dir, "serving_model", "1")
    assert baseline.version_dir == os.path.join(config.output_dir, "baseline_model", "1")
    assert os.listdir(os.path.join(config.output_dir, "serving_model")) == ["1"]
    assert next_version(os.path.join(config.output_dir, "serving_model")) == 2


def test_serving_default_outputs(exported):
    _, weighted, _, serialized, loaded = exported
    out = {k: v.numpy() for k, v in loaded.signatures["serving_default"](examples=tf.constant(serialized)).items()}
    n = len(serialized)
    assert out["probabilities"].shape == (n, 2)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(out["probabilities"][:, 1], out["scores"])
    threshold = np.float32(weighted.threshold.value)
    np.testing.assert_array_equal(out["class_ids"], (out["scores"] >= threshold).astype(np.int64))
    calibration = weighted.calibration
    expected = 1 / (1 + np.exp(-(calibration["scale"] * out["logits"].astype(np.float64) + calibration["offset"])))
    np.testing.assert_allclose(out["scores"], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("values", [
    {"numeric_encoding": "standard", "body": "mlp"},
    {"numeric_encoding": "quantile_normal", "body": "tabm"},
    {"numeric_encoding": "ple", "body": "tabm"},
    {"numeric_encoding": "periodic", "body": "mlp"},
    "fold_ensemble",
    "trees_blend",
], ids=["standard-mlp", "quantile_normal-tabm", "ple-tabm", "periodic-mlp", "fold_ensemble", "trees_blend"])
def test_save_load_predict_reproduces_the_in_memory_model(tiny_run, tmp_path, values):
    """Every encoding and body (and a fold ensemble), saved and reloaded, gives bit-identical outputs."""
    from trainer.calibration import Calibration
    from trainer.crossval import fold_ensemble
    from trainer.export import ServingModule, export_version
    from trainer.hparams import with_values
    from trainer.model import build_model

    config, _, _ = tiny_run
    data = prepare_data(config)
    if values == "fold_ensemble":
        models = [build_model(with_values(data.train_counts, {"body": body}), data.schema) for body in ("mlp", "tabm")]
        model = fold_ensemble(models, data.schema)
    elif values == "trees_blend":  # LightGBM in TensorFlow ops, mixed with a neural model
        from trainer.candidates import Blend
        from trainer.crossval import load_arrays
        from trainer.hparams import declare_tree_hparams
        from trainer.trees import feature_matrix, fit_trees, to_keras

        train = load_arrays([data.pattern("train")], data.schema)
        params = declare_tree_hparams(with_values(data.train_counts, {}))
        booster, rounds = fit_trees(feature_matrix(train.features, data.schema), train.labels, (1.0, 5.0), params,
                                    seed=0, rounds=30)
        neural = build_model(with_values(data.train_counts, {"body": "mlp"}), data.schema)
        model = Blend([to_keras(booster, data.schema, rounds), neural], [0.75, 0.25])
    else:
        model = build_model(with_values(data.train_counts, values), data.schema)
    module = ServingModule(model, data.schema, Calibration("platt", 1.3, -0.2), threshold=0.3)
    serialized = tf.constant(read_serialized(data.pattern("test")))
    in_memory = module.serve_examples(serialized)
    path = export_version(module, str(tmp_path / "models"))
    reloaded = tf.saved_model.load(path).signatures["serving_default"](examples=serialized)
    for key in ("probabilities", "scores", "class_ids", "logits"):
        np.testing.assert_array_equal(in_memory[key].numpy(), reloaded[key].numpy())


def test_feature_signature_matches_examples_signature(exported):
    _, _, data, serialized, loaded = exported
    parsed = tf.io.parse_example(tf.constant(serialized), data.schema.feature_spec(with_label=False))
    by_features = loaded.signatures["predict_features"](**parsed)
    by_examples = loaded.signatures["serving_default"](examples=tf.constant(serialized))
    np.testing.assert_allclose(by_features["scores"].numpy(), by_examples["scores"].numpy(), rtol=1e-6)


def test_classification_signature(exported):
    _, _, _, serialized, loaded = exported
    out = loaded.signatures["classification"](inputs=tf.constant(serialized[:5]))
    assert out["classes"].numpy().tolist() == [[b"0", b"1"]] * 5
    scores = loaded.signatures["serving_default"](examples=tf.constant(serialized[:5]))["probabilities"]
    np.testing.assert_array_equal(out["scores"].numpy(), scores.numpy())


def test_saved_model_cli_lists_the_signatures(exported):
    _, weighted, *_ = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", weighted.version_dir, "--all"], capture_output=True,
                           text=True, check=True).stdout
    for text in ("signature_def['serving_default']", "signature_def['predict_features']",
                 "signature_def['classification']", CLASSIFY_METHOD, "outputs['probabilities']",
                 "shape: (-1, 2)", "dtype: DT_INT64"):
        assert text in shown


def test_run_json_records_threshold_and_metrics(tiny_run):
    config, weighted, _ = tiny_run
    with open(os.path.join(config.output_dir, "run.json")) as handle:
        run = json.load(handle)
    assert run["weighted"]["threshold"]["value"] == weighted.threshold.value
    assert run["baseline"]["weight_ratio"] == 1.0
    assert run["weighted"]["weight_ratio"] > 1.0
    labels = read_labels(os.path.join(config.output_dir, "data", "test", "data-*.tfrecord.gz"),
                         prepare_data(config).schema)
    assert run["weighted"]["test"]["positives"] == int(labels.sum())
    for key in ("brier_before", "brier", "ece_before", "ece", "pr_auc", "recall", "precision"):
        assert 0.0 <= run["weighted"]["test"][key] <= 1.0
