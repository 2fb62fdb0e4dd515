"""Small-data selection: folds, held-out objective, out-of-fold coverage, the fold ensemble."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from trainer.config import RunConfig
from trainer.crossval import (
    CV_MAX_VALIDATION_POSITIVES,
    fold_ensemble,
    objective_value,
    selection_folds,
    uses_cross_validation,
)
from trainer.data.prepare import PreparedData
from trainer.data.schema import Feature, Schema, quantiles
from trainer.hparams import with_values
from trainer.model import build_model, model_inputs

SCHEMA = Schema(features=(
    Feature("x0", "numeric", mean=0.0, std=1.0, quantiles=quantiles(np.linspace(-2, 2, 50))),
    Feature("x1", "numeric", mean=1.0, std=2.0, missing_fraction=0.1, quantiles=quantiles(np.linspace(-3, 5, 50))),
    Feature("region", "categorical", vocabulary=("a", "b")),
), label="target")


def _data(validation_positives: int) -> PreparedData:
    counts = {"train": [900, 60], "validation": [190, validation_positives], "test": [190, 13]}
    return PreparedData("unused", SCHEMA, counts, {})


def test_cross_validation_is_chosen_by_validation_positives():
    config = RunConfig()
    assert uses_cross_validation(_data(CV_MAX_VALIDATION_POSITIVES - 1), config)
    assert not uses_cross_validation(_data(CV_MAX_VALIDATION_POSITIVES), config)
    assert uses_cross_validation(_data(500), config.replace(selection="cross_validation"))
    assert not uses_cross_validation(_data(3), config.replace(selection="validation"))


def test_folds_are_scikit_learns_stratified_folds(rng):
    labels = (rng.random(400) < 0.08).astype(np.int64)
    folds = selection_folds(labels, 5, seed=11)
    expected = StratifiedKFold(5, shuffle=True, random_state=11).split(np.zeros(400), labels)
    for (train, held), (ref_train, ref_held) in zip(folds, expected, strict=True):
        np.testing.assert_array_equal(train, ref_train)
        np.testing.assert_array_equal(held, ref_held)
    held_out = np.concatenate([held for _, held in folds])
    assert sorted(held_out.tolist()) == list(range(400))  # every example held out exactly once
    positives = [int(labels[held].sum()) for _, held in folds]
    assert max(positives) - min(positives) <= 1  # stratified
    with pytest.raises(ValueError, match="at least 5 minority"):
        selection_folds(np.array([0] * 20 + [1] * 3), 5, seed=0)


def test_objective_value_follows_scikit_learn(rng):
    labels = (rng.random(300) < 0.1).astype(np.int64)
    scores = rng.random(300) + labels * 0.3
    assert objective_value(labels, scores, "pr_auc") == pytest.approx(average_precision_score(labels, scores))
    # Recall at precision >= 0.5: the best recall among thresholds reaching the floor (brute force).
    best = 0.0
    for threshold in np.unique(scores):
        predicted = scores >= threshold
        precision = labels[predicted].mean()
        if precision >= 0.5:
            best = max(best, labels[predicted].sum() / labels.sum())
    assert objective_value(labels, scores, "recall_at_precision:0.5") == pytest.approx(best)


def test_in_memory_batches_hold_the_numeric_columns_as_one_matrix_in_schema_order(rng):
    """A row's numeric values stay together, in `numeric` order, through the shuffle; unpacked batches
    (for the trees) keep one column per feature."""
    from trainer.crossval import Arrays
    from trainer.data.dataset import NUMERIC_INPUT

    rows = np.arange(50)
    features = {"region": np.array([f"r{r}".encode() for r in rows], dtype=object),
                "x1": -rows.astype(np.float32), "x0": rows.astype(np.float32) * 10}
    arrays = Arrays(features, rows % 2, ("x0", "x1"))
    seen = []
    for batch, labels in arrays.dataset(16, shuffle=True, seed=1).as_numpy_iterator():
        ids = np.array([int(v[1:]) for v in batch["region"]])
        assert set(batch) == {NUMERIC_INPUT, "region"}
        np.testing.assert_array_equal(batch[NUMERIC_INPUT], np.column_stack([ids * 10.0, -ids]).astype(np.float32))
        np.testing.assert_array_equal(labels, ids % 2)
        seen.extend(ids)
    assert sorted(seen) == list(rows) and seen != sorted(seen)
    batch, _ = next(iter(arrays.dataset(64, packed=False)))
    np.testing.assert_array_equal(batch["x1"].numpy(), features["x1"])


@pytest.mark.parametrize("body", ["mlp", "tabm"])
def test_fold_ensemble_averages_every_members_probability(body):
    import keras

    hp = with_values((900, 60), {"body": body, "ensemble_size": 4})
    models = []
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        models.append(build_model(hp, SCHEMA, priors=(0.9, 0.1)))
    features = {"x0": tf.constant([0.1, -1.0, np.nan]), "x1": tf.constant([2.0, np.nan, 0.0]),
                "region": tf.constant(["a", "zzz", ""])}
    ensemble = fold_ensemble(models, SCHEMA)
    outputs = ensemble(features).numpy()
    assert outputs.shape == (3, 3 * (4 if body == "tabm" else 1), 2)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    members = [softmax(m(model_inputs(m, features)).numpy()) for m in models]
    members = [p if p.ndim == 3 else p[:, None] for p in members]
    expected = np.concatenate(members, axis=1).mean(axis=1)
    from trainer.bodies import ensemble_logits

    np.testing.assert_allclose(softmax(ensemble_logits(tf.constant(outputs)).numpy()), expected, atol=1e-6)


@pytest.mark.slow
def test_a_trained_fold_ensemble_exports_without_keras_input_structure_warning(tmp_path, rng):
    # Keras' SavedModel trace of the ensemble's default signature hands it a TrackedDict; each functional
    # fold model warned (one line listing every feature name twice: tens of kB on 1,617 features) until
    # the ensemble gave its folds a plain dict. Names out of sorted order, as a CSV's columns may be.
    import warnings
    from types import SimpleNamespace

    from trainer.calibration import Calibration
    from trainer.candidates import train_candidate
    from trainer.crossval import Arrays
    from trainer.export import ServingModule, export_version
    from trainer.train import fit_settings

    numeric = ("z9", "f10", "b", "f2")
    schema = Schema(features=tuple(Feature(name, "numeric", quantiles=quantiles(np.linspace(-2, 3, 50)))
                                   for name in numeric) + (Feature("a", "categorical", vocabulary=("u", "v")),),
                    label="target")
    labels = (rng.random(160) < 0.2).astype(np.int64)
    features = {name: (rng.normal(size=160) + labels).astype(np.float32) for name in numeric}
    features["a"] = rng.choice(np.array([b"u", b"v", b""], dtype=object), size=160)
    features = dict(sorted(features.items()))  # in tf.io.parse_example's order, as `load_arrays` reads them
    counts = {"train": [int((labels == 0).sum()), int(labels.sum())], "validation": [10, 2], "test": [10, 2]}
    data = PreparedData("unused", schema, counts, {})
    config = RunConfig(epochs=1, cv_folds=2, selection="cross_validation")
    hp = with_values(data.train_counts, {"body": "tabm", "numeric_encoding": "ple", "ensemble_size": 2,
                                         "depth": 1, "width": 8, "batch_size": 64})
    splits = SimpleNamespace(cross_validation=True, train_and_validation=Arrays(features, labels, numeric))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        candidate = train_candidate(hp, fit_settings(hp, data.train_counts, config), data, config, epochs=1,
                                    splits=splits)
        module = ServingModule(candidate.model, schema, Calibration("platt", 1.0, 0.0), threshold=0.5)
        tensors = {name: tf.constant(values) for name, values in features.items()}
        in_memory = module.predict_features(tensors)
        version = export_version(module, str(tmp_path / "models"))
    assert not [str(w.message)[:200] for w in caught if "structure of `inputs`" in str(w.message)]
    served = tf.saved_model.load(version).signatures["predict_features"](**tensors)
    for key in ("probabilities", "scores", "class_ids", "logits"):
        np.testing.assert_array_equal(in_memory[key].numpy(), served[key].numpy())
