"""The batch-scoring pipeline: read ranges, score with RunInference, write per range.

    Create(ranges) -> Reshuffle -> ReadRange -> rows: Blocks --RunInference--> Scored -> WritePredictions
                                                                        +--> refused batches -> WriteErrors
                                            -> errors: RowErrors ------------------------------> WriteErrors

Everything is checked in the driver before the pipeline starts (the model
version and its signatures, the input files, their columns, the output
directory), so a bad argument ends the job with one line and nothing
written. The workers write into a hidden staging directory next to
`--output`, renamed to `--output` only when the pipeline has succeeded.
On object storage (gs://, s3://: `--data`, `--output`, `--model_base_path`,
through `trainer.storage`), which has no rename, the part files are written
under `--output` and `_SUCCESS` last; a failed job removes them. A model on
s3:// is copied to local disk first (TensorFlow 2.21 cannot open s3://).
No step shuffles rows, so the driver holds no rows whatever the input size;
the counts come back through Beam metrics.
"""

from __future__ import annotations

import logging
import os

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from serving.batch_config import BatchConfig, BatchResult
from serving.batch_handlers import (
    METRICS_NAMESPACE,
    FeatureModelHandler,
    ModelRef,
    example_handler,
    keyed_examples,
    scored_example,
)
from serving.batch_rows import ModelInputs, RowError, _Locator, check_columns, read_part
from serving.batch_write import (
    ERRORS_COUNTER,
    PREDICTION_LOG,
    REFUSED,
    SCORED_COUNTER,
    SUCCESS_FILE,
    WriteErrors,
    WritePredictions,
)
from serving.servable import DEFAULT_SIGNATURE, FEATURES_SIGNATURE, _read_signature_defs
from trainer import storage
from trainer.atomic import staging_directory
from trainer.beam_runner import make_pipeline
from trainer.data.beam_files import Range, plan_ranges
from trainer.data.ingest import DataError
from trainer.layout import SAVED_MODEL_FILE, list_versions


class _BeamMemoryProbeNoise(logging.Filter):
    """Drops Beam's "Resource module is not available" warning (two a model load, on Linux).

    apache_beam.ml.inference.base imports `resource` in one `try` with a
    module that needs PyTorch, so without PyTorch its memory probe, which only
    feeds a metric, is missing and warns on every load.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "Resource module is not available" not in record.getMessage()


class BatchError(ValueError):
    """A bad argument or input, found before anything is written; the message is one line."""


def resolve_model(config: BatchConfig) -> tuple[ModelRef, ModelInputs]:
    """The version to score with and the raw features it reads, from its saved_model.pb (no TensorFlow load)."""
    try:
        remote = storage.is_remote(config.model_base_path)
        if remote:
            storage.check_bucket(config.model_base_path)
    except OSError as error:
        raise BatchError(f"--model_base_path {error}") from None
    if not remote and not os.path.isdir(config.model_base_path):
        raise BatchError(f"--model_base_path {config.model_base_path!r} is not a directory")
    versions = list_versions(config.model_base_path)
    if not versions:
        raise BatchError(f"no SavedModel version (<version>/{SAVED_MODEL_FILE}) under {config.model_base_path}")
    version = max(versions) if config.model_version is None else config.model_version
    if version not in versions:
        raise BatchError(f"--model_version {version} is not under {config.model_base_path} "
                         f"(versions: {', '.join(map(str, sorted(versions)))})")
    path = versions[version]
    if not storage.tensorflow_can_open(path):  # s3:// (TensorFlow 2.21 cannot open it): a local copy
        path = _local_copy(path)
    signatures = _read_signature_defs(path)
    missing = [name for name in (FEATURES_SIGNATURE, DEFAULT_SIGNATURE) if name not in signatures]
    if missing:
        raise BatchError(f"{versions[version]} has no {' or '.join(missing)} signature; export it with this package")
    inputs = signatures[FEATURES_SIGNATURE].inputs
    numeric = tuple(sorted(name for name, info in inputs.items() if info.dtype != _DT_STRING))
    text = tuple(sorted(name for name, info in inputs.items() if info.dtype == _DT_STRING))
    return ModelRef(path, version, config.model_name), ModelInputs(numeric, text)


def _local_copy(version_dir: str) -> str:
    """A version on s3:// copied to the driver's local disk (the in-process runner's workers share it)."""
    import atexit
    import shutil
    import tempfile

    local = tempfile.mkdtemp(prefix="imbalance-batch-model-")
    atexit.register(shutil.rmtree, local, True)
    storage.copy_tree(version_dir, local)
    return local


_DT_STRING = 7  # types_pb2.DT_STRING, without importing TensorFlow in the driver's checks


def _plan(config: BatchConfig, inputs: ModelInputs) -> list[Range]:
    try:
        ranges = plan_ranges(config.data)
        check_columns(ranges, inputs, config.id_column)
        if config.data_format == PREDICTION_LOG and ranges[0].kind != "tfrecord":
            raise DataError(f"--data-format {PREDICTION_LOG} reads TFRecord files; {ranges[0].path} is {ranges[0].kind}")
    except DataError as error:
        raise BatchError(str(error)) from None
    return ranges


def _check_output(output: str) -> None:
    if storage.is_remote(output):
        try:
            storage.check_bucket(output)
            taken = bool(storage.list_files(output)) or storage.exists(output)
        except OSError as error:
            raise BatchError(f"--output {error}") from None
        if taken:
            raise BatchError(f"--output {output} exists and is not empty; choose a new one")
    elif os.path.isfile(output) or (os.path.isdir(output) and os.listdir(output)):
        raise BatchError(f"--output {output} exists and is not an empty directory; choose a new one")


class _ReadRange(beam.DoFn):
    def __init__(self, inputs: ModelInputs, id_column: str | None, logs: bool):
        self._inputs, self._id_column, self._logs = inputs, id_column, logs

    def process(self, part: Range):
        for item in read_part(part, self._inputs, self._id_column, self._logs):
            yield beam.pvalue.TaggedOutput("errors", item) if isinstance(item, RowError) else item


def _failed_rows(failed: tuple, ranges: list[Range]):
    """A batch the model refused: every row of it is an error, with the model's reason."""
    batch, error = failed
    reason = f"the model refused the batch holding this row: {str(error).strip().splitlines()[0]}"
    for block in batch:
        locator = _Locator(ranges[block.part])
        for ordinal in block.ordinals.tolist():
            yield RowError(block.part, ordinal, ranges[block.part].path, locator.where(ordinal), reason)


def _failed_examples(failed: tuple, ranges: list[Range]):
    """A batch of tf.Examples the model refused: every example of it is an error."""
    batch, error = failed
    reason = f"the model refused the batch holding this example: {str(error).strip().splitlines()[0]}"
    for (part, ordinal, _), _ in batch:
        yield RowError(part, ordinal, ranges[part].path, _Locator(ranges[part]).where(ordinal), reason)


def build(pipeline: beam.Pipeline, config: BatchConfig, model: ModelRef, inputs: ModelInputs,
          ranges: list[Range], directory: str) -> None:
    """Adds the scoring steps to `pipeline`, writing into `directory`."""
    from apache_beam.ml.inference.base import RunInference

    with_logs = config.output_format == PREDICTION_LOG
    logs = config.data_format == PREDICTION_LOG
    # The reshuffle spreads the ranges (a few bytes each) over the workers: without it the in-process
    # runner hands every range of the Create to one worker.
    read = (pipeline | "Ranges" >> beam.Create(ranges) | "Spread ranges" >> beam.Reshuffle()
            | "Read ranges" >> beam.ParDo(_ReadRange(inputs, config.id_column, logs)).with_outputs("errors", main="rows"))
    if ranges[0].kind == "tfrecord":
        main, other = (read.rows
                       | "Examples" >> beam.FlatMap(keyed_examples)
                       | "RunInference serving_default" >> RunInference(example_handler(model)
                                                                        ).with_exception_handling())
        scored = main | "As scores" >> beam.Map(scored_example, model, with_logs)
        refused = other.failed_inferences | "Refused examples" >> beam.FlatMap(_failed_examples, ranges)
    else:
        main, other = read.rows | "RunInference predict_features" >> RunInference(
            FeatureModelHandler(model, with_logs)).with_exception_handling()
        scored = main
        refused = other.failed_inferences | "Refused rows" >> beam.FlatMap(_failed_rows, ranges)
    _ = scored | "Write predictions" >> beam.ParDo(
        WritePredictions(directory, config.output_format, config.id_column, model.version))
    # Two writers, not a Flatten: the in-process runner runs a Flatten as a stage of its own whose input
    # it holds until the reading stage ends. Refused rows go to errors-<range>-refused.jsonl.
    _ = read.errors | "Write errors" >> beam.ParDo(WriteErrors(directory))
    _ = refused | "Write refused rows" >> beam.ParDo(WriteErrors(directory, REFUSED))


def score(config: BatchConfig) -> BatchResult:
    """Scores `config.data` into `config.output`.

    Raises:
      BatchError: a bad argument or input, before anything is written.
    """
    storage.configure(config.beam_pipeline_args)  # the driver's own reads: `--s3_endpoint_url`, credentials
    model, inputs = resolve_model(config)
    ranges = _plan(config, inputs)
    output = config.output if storage.is_remote(config.output) else os.path.abspath(config.output)
    _check_output(output)
    logging.getLogger().addFilter(_BeamMemoryProbeNoise())
    if storage.is_remote(output):
        return _score_to_object_storage(config, model, inputs, ranges, output)
    parent = os.path.dirname(output)
    with staging_directory(parent, prefix=f"{os.path.basename(output)}.staging") as staging:
        os.makedirs(staging)
        pipeline = make_pipeline(config.beam_pipeline_args)
        build(pipeline, config, model, inputs, ranges, staging)
        result = pipeline.run()
        result.wait_until_finish()
        scored, errors = (_counter(result, name) for name in (SCORED_COUNTER, ERRORS_COUNTER))
        if os.path.isdir(output):
            os.rmdir(output)  # empty (checked above)
        os.rename(staging, output)
    return BatchResult(scored, errors, model.version, output)


def _score_to_object_storage(config: BatchConfig, model: ModelRef, inputs: ModelInputs, ranges: list[Range],
                             output: str) -> BatchResult:
    """Object storage has no rename: the part files go under `output` (each whole or absent), `_SUCCESS` last.

    A failed job removes what it wrote, so `output` holds a complete result
    with `_SUCCESS`, or nothing.
    """
    try:
        pipeline = make_pipeline(config.beam_pipeline_args)
        build(pipeline, config, model, inputs, ranges, output)
        result = pipeline.run()
        result.wait_until_finish()
        scored, errors = (_counter(result, name) for name in (SCORED_COUNTER, ERRORS_COUNTER))
        storage.write_text(storage.join(output, SUCCESS_FILE), f"scored {scored} rows, {errors} errors\n")
    except BaseException:
        storage.remove_tree(output)
        raise
    return BatchResult(scored, errors, model.version, output)


def _counter(result, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name(name))["counters"]
    return int(sum(counter.committed or 0 for counter in found))

