"""`--refit-full`: the judged model's members trained again on every row, test included.

After the push gate has judged a model on the test split, AutoGluon's
`refit_full` trains the same configurations once more on all the data, so
that the served model has seen every labelled row. Here each member is grown
again on train + validation + test with the size the held-out data chose
(a tree member's boosting rounds, a neural member's best epoch, one model per
fold for a fold ensemble), and exported with the judged model's calibration
and decision threshold: there are no held-out rows left to fit them on, and
the gate's numbers stay what was measured. The served model is therefore not
the one the test split measured; `run.json` and the model card say so and
count the rows it saw (docs/design.md §8).
"""

from __future__ import annotations

import os

import keras

from trainer import hparams as hparams_lib
from trainer.calibration import Calibration
from trainer.candidates import Blend
from trainer.config import RunConfig
from trainer.crossval import Arrays, fold_ensemble, load_arrays
from trainer.data.prepare import PreparedData
from trainer.export import ServingModule, export_version
from trainer.summary import MemberSummary, ModelSummary
from trainer.train import fit_for_epochs, fit_settings
from trainer.trees import feature_matrix, fit_trees, to_keras

REFIT_FULL_DIR = "refit_full_model"  # under the execution, beside candidate_model/ and baseline_model/


def refit_full(config: RunConfig, data: PreparedData, judged: ModelSummary, weighted: bool) -> dict:
    """Trains the judged model's members on every row and exports them as `RUN/refit_full_model/<N>`.

    Args:
      config: The execution's configuration.
      data: Its prepared splits.
      judged: The judged model's summary (run.json's `weighted` or `baseline`).
      weighted: False for the unweighted twin (its members train unweighted).

    Returns:
      {"version_dir", "rows", "members": [{"model_family", "rows", "rounds" | "epochs"}]}.
    """
    rows = load_arrays([data.pattern(split) for split in ("train", "validation", "test")], data.schema)
    members = judged.members or [_as_member(judged)]
    models, facts = [], []
    for member in members:
        model, fact = _refit_member(config, data, rows, member, weighted)
        models.append(model)
        facts.append(fact)
    model = models[0] if len(models) == 1 else Blend(models, [m.weight for m in members], name="blend")
    calibration = judged.calibration
    module = ServingModule(model, data.schema, Calibration.from_json(calibration), judged.threshold.value)
    version_dir = export_version(module, os.path.join(config.output_dir, REFIT_FULL_DIR))
    return {"version_dir": version_dir, "rows": int(len(rows.labels)), "members": facts,
            "calibration": calibration, "threshold": judged.threshold.value}


def _as_member(judged: ModelSummary) -> MemberSummary:
    """A single model as the one member of weight 1, with how it was grown."""
    return MemberSummary(weight=1.0, hyperparameters=judged.hyperparameters, model_family=judged.model_family,
                         rounds=judged.rounds, best_epochs=judged.best_epochs)


def _refit_member(config: RunConfig, data: PreparedData, rows: Arrays, member: MemberSummary, weighted: bool):
    counts = data.train_counts
    hp = hparams_lib.with_values(counts, member.hyperparameters)
    settings = fit_settings(hp, counts, config, weighted=weighted)
    if hparams_lib.declare_family(hp) == "trees":
        rounds = int(member.rounds)
        booster, _ = fit_trees(feature_matrix(rows.features, data.schema), rows.labels, settings.weights,
                               hparams_lib.declare_tree_hparams(hp), config.seed, rounds=rounds)
        return to_keras(booster, data.schema, rounds), {"model_family": "trees", "rows": len(rows.labels),
                                                         "rounds": rounds}
    from trainer.candidates import built

    models = []
    for index, epochs in enumerate(member.best_epochs):  # one per fold model, or the one model
        keras.utils.set_random_seed(config.seed + index)
        model = built(hp, data, config.seed + index)
        fit_for_epochs(model, settings, config, rows.dataset(settings.batch_size, shuffle=True,
                                                             seed=config.seed + index), epochs)
        models.append(model)
    model = models[0] if len(models) == 1 else fold_ensemble(models, data.schema)
    return model, {"model_family": "neural", "rows": len(rows.labels), "epochs": list(member.best_epochs)}
