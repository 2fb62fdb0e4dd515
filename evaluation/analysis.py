"""The TFMA Beam pipeline over the test split.

Reads the gzipped tf.Example shards, adds numeric slice buckets when asked,
turns them into Arrow record batches (the form TFMA's batched extractors take)
and runs `tfma.ExtractEvaluateAndWriteResults` for all models in one pass, so
each example is read once and both models' metrics and the
candidate-vs-baseline diffs come out of the same run. The pipeline is built by
`trainer.beam_runner.make_pipeline`: in-process by default, any runner's
options pass through.
"""

from __future__ import annotations

import os
import time
import warnings

import apache_beam as beam
import tensorflow_model_analysis as tfma
from tfx_bsl.public import tfxio

from evaluation.run_files import EvaluatedModel
from evaluation.slicing import SlicePlan, add_buckets
from trainer import storage
from trainer.atomic import replace_directory, staging_directory
from trainer.beam_runner import make_pipeline
from trainer.data.dataset import list_files


def eval_shared_models(models: list[EvaluatedModel], eval_config: tfma.EvalConfig) -> list:
    return [tfma.default_eval_shared_model(eval_saved_model_path=m.path, model_name=m.name, eval_config=eval_config)
            for m in models]


def run_tfma(models: list[EvaluatedModel], eval_config: tfma.EvalConfig, data_pattern: str, plan: SlicePlan,
             output_path: str, beam_pipeline_args: tuple[str, ...] = (), explained=None) -> float:
    """Runs TFMA and writes its output into `output_path` (replacing it).

    A local output is written into a temporary sibling and renamed into
    place, so an interrupted run never leaves a mix of old and new results; a
    remote one (gs://, where Beam's workers on other machines can write) is
    written in place, into a prefix `evaluation.remote_tfma` emptied first.

    Args:
      models: Models to evaluate (the EvalConfig names them the same way).
      eval_config: From `evaluation.eval_config.build_eval_config`.
      data_pattern: Glob of gzipped tf.Example shards.
      plan: Slicing plan (numeric features get bucket features added).
      output_path: Final TFMA output directory.
      beam_pipeline_args: Beam options, e.g. `--direct_num_workers=2`.
      explained: `evaluation.attribution_extractor.ExplainedRows`: adds the
        extractor that fills `extracts['attributions']` (None: no attributions).

    Returns:
      The pipeline's wall-clock seconds.
    """
    files = list_files(data_pattern)  # fails early, with the pattern, when the split is missing
    started = time.time()
    if storage.is_remote(output_path):  # written in place (no rename there); `evaluation.remote_tfma` says when
        _pipeline(models, eval_config, files, data_pattern, plan, output_path, beam_pipeline_args, explained)
        return time.time() - started
    with staging_directory(os.path.dirname(os.path.abspath(output_path)), "evaluation-staging") as staging:
        _pipeline(models, eval_config, files, data_pattern, plan, staging, beam_pipeline_args, explained)
        seconds = time.time() - started
        replace_directory(staging, output_path)
    return seconds


def _pipeline(models, eval_config, files: list[str], data_pattern: str, plan: SlicePlan, output_path: str,
              beam_pipeline_args, explained) -> None:
    """Builds and runs TFMA's pipeline, writing into `output_path`."""
    pipeline = make_pipeline(beam_pipeline_args)
    # The pipeline runs when its `with` block exits, so the filter wraps it.
    # TFMA divides 0/0 for thresholds no example reaches and handles the NaN
    # itself; its RuntimeWarnings would only bury the run's own output.
    with warnings.catch_warnings(), pipeline:
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="tensorflow_model_analysis")
        shared = eval_shared_models(models, eval_config)
        extractors = None
        if explained is not None and explained.models:
            from evaluation.attribution_extractor import tfma_extractors

            extractors = tfma_extractors(shared, eval_config, explained)
        _ = _examples(pipeline, files, plan) | "TFMA" >> tfma.ExtractEvaluateAndWriteResults(
            eval_shared_model=shared,
            eval_config=eval_config,
            extractors=extractors,
            output_path=output_path,
            display_only_data_location=data_pattern,
            display_only_file_format="tfrecords",
        )


def _examples(pipeline: beam.Pipeline, files: list[str], plan: SlicePlan) -> beam.PCollection:
    """The test examples as the Arrow record batches TFMA's batched extractors take."""
    records = (pipeline | "ReadTest" >> beam.Create(files)
               | "ReadShards" >> beam.io.ReadAllFromTFRecord(compression_type=beam.io.filesystem.CompressionTypes.GZIP)
               # A gzipped shard cannot be split, so without this one reader's
               # bundle would carry every example through inference and the
               # metrics; redistributed, several workers share that work.
               | "Spread" >> beam.Reshuffle())
    if plan.numeric:
        records = records | "AddBuckets" >> beam.Map(add_buckets, dict(plan.numeric))
    return records | "ToArrow" >> tfxio.TFExampleBeamRecord(
        physical_format="inmem", raw_record_column_name=tfma.ARROW_INPUT_COLUMN).BeamSource()
