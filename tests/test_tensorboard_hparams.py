"""The search in TensorBoard's HParams dashboard: read back from the event files, against keras-tuner's trial.json."""

import glob
import json
import os

import pytest

pytestmark = pytest.mark.slow  # a (tiny) search trains models

TRIALS = 4  # the session's tiny search (conftest's tiny_search): the portfolio's first four: trees and the linear (neural-family) model


@pytest.fixture
def searched(tiny_search):
    """The execution of the session's 4-trial random search over the tiny data, as `tuning.pipeline` runs it."""
    config, summary = tiny_search
    return config.replace(output_dir=summary.execution["path"])


def _keras_tuner_trials(execution_dir):
    """keras-tuner's own record of each trial: {trial id: (hyperparameter values, score)}."""
    trials = {}
    for path in glob.glob(os.path.join(execution_dir, "tuning", "search", "trial_*", "trial.json")):
        with open(path) as handle:
            trial = json.load(handle)
        trials[trial["trial_id"]] = (trial["hyperparameters"]["values"], trial["score"])
    return trials


def _dashboard_sessions(log_dir):
    """What the HParams plugin reads: per run holding a session start, its hyperparameters and scalars.

    Runs are found as TensorBoard finds them (`AddRunsFromDirectory`); a
    session's metrics are the scalars of its run and of the runs below it.
    """
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2
    from tensorboard.util import tensor_util

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(log_dir)
    multiplexer.Reload()
    sessions = {}
    for run, tags in multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME).items():
        if metadata.SESSION_START_INFO_TAG not in tags:
            continue
        data = plugin_data_pb2.HParamsPluginData.FromString(tags[metadata.SESSION_START_INFO_TAG])
        start = data.session_start_info
        hparams = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
                   for name, value in start.hparams.items()}
        scalars = {}
        for other, other_tags in multiplexer.PluginRunToTagToContent("scalars").items():
            if other == run or other.startswith(run + "/"):
                for tag in other_tags:
                    events = multiplexer.Tensors(other, tag)
                    scalars[(other[len(run):].lstrip("/"), tag)] = float(tensor_util.make_ndarray(events[-1].tensor_proto))
        sessions[run] = {"trial_id": start.group_name, "hparams": hparams, "scalars": scalars}
    return sessions


def test_every_trial_is_a_dashboard_session_with_its_hyperparameters_and_objective(searched):
    trials = _keras_tuner_trials(searched.output_dir)
    assert len(trials) == TRIALS
    sessions = _dashboard_sessions(os.path.join(searched.output_dir, "tuning", "tensorboard"))
    assert sorted(sessions) == sorted(f"{trial_id}/execution0" for trial_id in trials)  # one run per trial
    families = set()
    for run, session in sessions.items():
        values, score = trials[run.split("/")[0]]
        assert session["trial_id"] == run.split("/")[0]
        # Every hyperparameter keras-tuner recorded (the space is declared whole in every trial),
        # the fit-time ones (weight ratio, loss, batch size) in the first trial too...
        assert set(session["hparams"]) == set(values), run
        for name, value in session["hparams"].items():  # (the proto holds numbers as floats)
            assert value == (pytest.approx(values[name]) if isinstance(value, float) else values[name]), name
        families.add(session["hparams"]["model_family"])
        # ...and the objective the tuner ranked it by, as the session's metric.
        assert session["scalars"][("", "val_pr_auc")] == pytest.approx(score, rel=1e-6)
    assert families == {"neural", "trees"}  # trials with and without Keras epochs


def test_neural_trials_also_log_their_epochs(searched):
    sessions = _dashboard_sessions(os.path.join(searched.output_dir, "tuning", "tensorboard"))
    neural = [s for s in sessions.values() if s["hparams"]["model_family"] == "neural"]
    assert neural
    for session in neural:
        assert ("train", "epoch_loss") in session["scalars"]
        assert ("validation", "epoch_pr_auc") in session["scalars"]
