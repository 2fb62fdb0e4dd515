"""The run directory's names: one home for every name in it.

The tree these names make, what each directory and file holds and how a
`trainer.task` run differs from a `tuning.task` run's executions are
described once, in docs/design.md §10. Execution ids are zero-padded
counters (`0001`, `0002`, ...), so they sort by age as text and as numbers.
A model directory holds `<version>/saved_model.pb` versions, as TF Serving
reads them.

This module imports neither TensorFlow nor Keras: the server, the readers and
the push list directories without loading a model.
"""

from __future__ import annotations

import json
import os

RUN_JSON = "run.json"
SERVING_DIR = "serving_model"
CANDIDATE_DIR = "candidate_model"  # an execution's weighted candidate, before the push gate
EXECUTIONS_DIR = "executions"
MODEL_DIRS = {"weighted": SERVING_DIR, "baseline": "baseline_model"}  # a trainer.task run's exports
COMPLETE = "complete"
TUNING_DIR = "tuning"  # an execution's keras-tuner project, trials.csv, best_hyperparameters.json
# keras-tuner writes one TensorBoard run per trial under it (<trial id>/execution0/), with the
# trial's hyperparameters for the HParams dashboard: `tensorboard --logdir` this directory.
TUNING_TENSORBOARD_DIR = os.path.join(TUNING_DIR, "tensorboard")
TRIALS_FILE = "trials.csv"  # in TUNING_DIR: one row per trial
DATA_DIR = "data"  # the split's shards, schema, statistics, class counts and source
SHARD_PREFIX, SHARD_SUFFIX = "data", ".tfrecord.gz"  # DATA_DIR/<split>/data-00000-of-00002.tfrecord.gz
HISTORY_DIR = "history"  # <model>.json: per-epoch metrics (the report's training curves)
LOGS_DIR = "logs"  # <model>/: TensorBoard logs of the final training
EVALUATION_DIR = "evaluation"  # TFMA's output and summary.json
REPORT_DIR, REPORT_PAGE = "report", "index.html"  # the HTML report: REPORT_DIR/REPORT_PAGE
WEIGHTING_STUDY_DIR = "weighting_study"  # <variant>.npz: raw predictions of the weighting study's variants
HISTORY_JSON, HISTORY_HTML = "history.json", "history.html"  # a tuning run's executions, at its top
# In DATA_DIR: the training split's statistics, a tensorflow_metadata DatasetFeatureStatisticsList (binary; a
# text copy beside it with the suffix `txt`): the reference of `evaluation.drift` (trainer/data/statistics.py).
TRAIN_STATISTICS = "train_statistics.pb"
# At a run's top: one JSON record per `evaluation.drift` or live-evaluation run against it
# (MONITORING_DIR/<kind>-<UTC time>.json, kinds DRIFT_RECORD and LIVE_RECORD), and the page drawn from them.
MONITORING_DIR, MONITORING_PAGE = "monitoring", "monitoring.html"
DRIFT_RECORD, LIVE_RECORD = "drift", "live"
MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving's protos
SAVED_MODEL_FILE = "saved_model.pb"  # a version directory is complete once it holds this
# On object storage (no rename) a version counts once this is there, written after every other object
# (`trainer.storage.publish_tree`); in assets.extra, which TF Serving ignores.
VERSION_MARKER = "assets.extra/published"
PUSH_FILE = os.path.join("assets.extra", "push.json")  # in a served version: which execution and model, and why
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")  # TF Serving's warm-up records
# A trees-only model's LightGBM booster as text, beside its SavedModel (TF Serving ignores assets.extra):
# exact TreeSHAP at evaluation (evaluation/attributions.py) on the trees that are served.
TREES_FILE = os.path.join("assets.extra", "lightgbm_model.txt")
CLASSIFY_METHOD = "tensorflow/serving/classify"  # the method name TF Serving's Classify API requires


def shard_pattern(data_dir: str, split: str) -> str:
    """Glob of one split's gzipped tf.Example shards under a data directory (`RUN/data`)."""
    return os.path.join(data_dir, split, f"{SHARD_PREFIX}-*{SHARD_SUFFIX}")


def split_pattern(run_dir: str, split: str) -> str:
    """Glob of one split's gzipped tf.Example shards in a run."""
    return shard_pattern(os.path.join(run_dir, DATA_DIR), split)


def history_path(run_dir: str, model: str) -> str:
    """`RUN/history/<model>.json`: the model's per-epoch metrics."""
    return os.path.join(run_dir, HISTORY_DIR, f"{model}.json")


def trials_path(run_dir: str) -> str:
    """`RUN/tuning/trials.csv`: one row per trial of the search."""
    return os.path.join(run_dir, TUNING_DIR, TRIALS_FILE)


def parse_version(name: str) -> int | None:
    """A version directory name (or URL segment) as TF Serving reads it, or None.

    Plain ASCII digits within int64 only: `"007"` is 7, while `"٣"` (an
    Arabic-Indic digit, which `str.isdigit` accepts), `"-1"`, `"1.0"` and
    hidden staging names are not versions.
    """
    if not (name.isascii() and name.isdigit()) or int(name) > MAX_VERSION:
        return None
    return int(name)


def list_versions(base_path: str) -> dict[int, str]:
    """Complete versions under `base_path`: version -> directory.

    Ignores names that are not plain non-negative integers (the exporter's
    hidden `.staging-*` directories, stray files) and directories without a
    `saved_model.pb` (still being copied by hand).
    """
    if "://" in base_path:  # object storage: a version counts once its marker is there (trainer/storage.py)
        from trainer import storage

        marked = storage.version_dirs(base_path).items()
        return {v: storage.join(base_path, n) for n, done in marked if done and (v := parse_version(n)) is not None}
    try:
        names = os.listdir(base_path)
    except OSError:
        return {}
    versions = {}
    for name in names:
        version = parse_version(name)
        path = os.path.join(base_path, name)
        if version is not None and os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
            versions[version] = path
    return versions


def next_version(base: str) -> int:
    """One more than the highest integer version under `base` (1 if none), complete or not."""
    if "://" in base:
        from trainer import storage

        names = list(storage.version_dirs(base))
    else:
        names = os.listdir(base) if os.path.isdir(base) else []
    return max((v for v in map(parse_version, names) if v is not None), default=0) + 1


def execution_ids(run_dir: str) -> list[str]:
    """The run's execution ids, oldest first ([] for a trainer.task run)."""
    root = os.path.join(run_dir, EXECUTIONS_DIR)
    names = os.listdir(root) if os.path.isdir(root) else []
    return sorted((name for name in names if parse_version(name) is not None), key=int)


def execution_dir(run_dir: str, execution_id: str) -> str:
    return os.path.join(run_dir, EXECUTIONS_DIR, execution_id)


def read_run_json(directory: str) -> dict:
    """`directory/run.json`, or {} when there is none yet."""
    path = os.path.join(directory, RUN_JSON)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def read_push_record(version_dir: str) -> dict:
    """A pushed version's `PUSH_FILE` (its execution, model, threshold, verdict, when), or {} when it has none
    (a version pushed by hand, or before the record existed)."""
    path = os.path.join(version_dir, PUSH_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def is_complete(directory: str) -> bool:
    return read_run_json(directory).get("status") == COMPLETE


def resolve_run(run_dir: str) -> str:
    """The directory that holds a run's models: its latest execution, or itself.

    `evaluation.task --run RUN` accepts the run directory of either entry
    point; for a tuning run it evaluates the latest execution.
    """
    ids = execution_ids(run_dir)
    return execution_dir(run_dir, ids[-1]) if ids else run_dir
