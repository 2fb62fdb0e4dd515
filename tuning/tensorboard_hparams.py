"""The search in TensorBoard's HParams dashboard: one run per trial, its hyperparameters and objective.

keras-tuner does the bookkeeping: given a `keras.callbacks.TensorBoard` in
`tuner.search(callbacks=...)`, it gives each trial its own log directory
(`<log_dir>/<trial id>/execution0`, `keras_tuner.Tuner._configure_tensorboard_dir`)
and adds TensorBoard's `hparams` Keras callback, which writes the trial's
hyperparameters when training begins. Two things are this package's own:

- the objective: a trial is scored by scikit-learn on held-out predictions
  (`trainer.candidates`), not by a Keras metric, so the score the tuner
  receives is written as a scalar of the same name into the trial's run
  (`record_objective`), where the dashboard finds it as the trial's metric;
- trials that train no Keras epochs (boosted trees, cross-validation) still
  take their callbacks through a whole `fit` lifecycle (`report_without_fit`),
  so their hyperparameters are written too.

    tensorboard --logdir RUN/executions/<id>/tuning/tensorboard
"""

from __future__ import annotations

import os

import keras

from trainer.layout import TUNING_TENSORBOARD_DIR


def search_callbacks(execution_dir: str) -> list[keras.callbacks.Callback]:
    """The callbacks to pass to `tuner.search`: TensorBoard under the execution's tuning directory.

    keras-tuner deep-copies them for every trial and moves the copy's
    `log_dir` to the trial's own directory.
    """
    # No graph: a trial's graph is the same model family after family, and writing it costs time.
    return [keras.callbacks.TensorBoard(log_dir=os.path.join(execution_dir, TUNING_TENSORBOARD_DIR),
                                        write_graph=False)]


def trial_log_dirs(callbacks) -> list[str]:
    """The log directories of the TensorBoard callbacks among a trial's callbacks."""
    return [callback.log_dir for callback in callbacks if isinstance(callback, keras.callbacks.TensorBoard)]


def record_objective(callbacks, name: str, value: float) -> None:
    """Writes the trial's objective as the scalar `name` (step 0) into the trial's TensorBoard run(s).

    The HParams dashboard shows, per trial, the last value of every scalar
    in the trial's run: this one is exactly the score the tuner was given.
    """
    import tensorflow as tf

    for log_dir in trial_log_dirs(callbacks):
        writer = tf.summary.create_file_writer(log_dir)
        with writer.as_default():
            tf.summary.scalar(name, value, step=0)
        writer.close()  # flushed now: the dashboard may be reading already


def report_without_fit(callbacks, model: keras.Model, logs: dict) -> None:
    """Takes callbacks through begin, one epoch's end, and end, for a trial without Keras epochs.

    keras-tuner's checkpoint (`SaveBestEpoch`) needs the epoch end (Hyperband
    reloads it when it promotes a trial); the hparams callback writes the
    hyperparameters at the beginning and closes the session at the end.
    """
    for callback in callbacks:
        callback.set_model(model)
    for callback in callbacks:
        callback.on_train_begin()
    for callback in callbacks:
        # TensorBoard's epoch summary would read the optimizer an unfit model lacks,
        # and its one value is the objective, which `record_objective` writes.
        if not isinstance(callback, keras.callbacks.TensorBoard):
            callback.on_epoch_end(0, logs=dict(logs))
    for callback in callbacks:
        callback.on_train_end(logs=dict(logs))
