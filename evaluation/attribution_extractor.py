"""Attributions in TFMA: an extractor that fills `extracts['attributions']`, and the metrics that read it.

`explain_models` explains a bounded sample of test rows before the pipeline
runs (evaluation/attributions.py). In the pipeline, `AttributionExtractor`
is two stages:

* after TFMA's FeaturesExtractor (batched, raw bytes in `input`, before the
  ExampleWeightsExtractor): each example's explained row, found by the SHA-1
  of its serialized bytes (as TFMA reads them, after any slice buckets are
  added), as the feature `ROW_FEATURE` (-1: not explained), and its
  sampling weight (class count in test / class rows explained; 0 when not
  explained) as `WEIGHT_FEATURE`;
* after the UnbatchExtractor (one example): `extracts['attributions'] =
  {model: {'logits': {feature: value}}}`, the layout TFMA's attribution
  metrics read (`metrics/attributions.py`); an example not explained gets
  a single zero (TFMA's `get_by_keys` refuses an empty dict), at weight 0.

`add_attribution_specs` makes `WEIGHT_FEATURE` the example weight of the
explained models' `logits` output only (`ModelSpec.example_weight_keys`; the
metrics on `scores` stay unweighted; other models get `NO_WEIGHT_FEATURE`,
0) and adds `evaluation.attribution_metrics.ExplainedAttributions` on
`logits`: TFMA's total_attributions, mean_attributions and
mean_absolute_attributions, weighted, over the explained rows only. So a
slice's mean is the weighted mean over the explained rows in it, an
estimate of the slice's mean over the whole test split, and
`tfma.load_attributions(evaluation_dir)` reads them per slice (the label
slice `label = 1` is the minority's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2 as tfma_config

from evaluation import attribution_metrics
from evaluation.attributions import (
    COMPLETENESS_TOLERANCE,
    LOGITS,
    AttributionOptions,
    Attributions,
    feature_columns,
    has_trees_file,
    margin_function,
    sample_rows,
    sample_sizes,
    sampled_shapley,
    take,
    tree_shap,
)
from evaluation.run_files import BASELINE, CANDIDATE, EvaluatedModel, split_pattern
from evaluation.slicing import SlicePlan, add_buckets
from trainer.atomic import write_json_atomically
from trainer.data.schema import Schema

SUMMARY_FILE = "attributions.json"  # in RUN/evaluation/: how each model was explained
EXPLAINED = (CANDIDATE, BASELINE)  # the run's own two models; a served older version is not explained
WEIGHT_FEATURE = "__attribution_weight__"
NO_WEIGHT_FEATURE = "__attribution_weight_none__"  # 0 everywhere: the weight of models not explained
ROW_FEATURE = "__attribution_row__"  # the example's row in `ExplainedRows`, -1 when not explained
WEIGHTS_STAGE, STAGE = "ExtractAttributionWeights", "ExtractAttributions"
FEATURES_STAGE = "ExtractFeatures"  # tensorflow_model_analysis/extractors/features_extractor.py
UNBATCH_STAGE = "ExtractUnbatchedInputs"  # tensorflow_model_analysis/extractors/unbatch_extractor.py
MEAN_ABSOLUTE = "mean_absolute_attributions"


@dataclasses.dataclass(frozen=True)
class ExplainedRows:
    """The explained test rows and every explained model's attributions of them.

    Attributes:
      digests: SHA-1 of each explained row's serialized bytes, as TFMA reads them.
      weights: [n] each row's weight, divided among identical rows of the test split.
      labels: [n] the rows' labels.
      models: model name -> its `Attributions` (rows in `digests` order).
      unexplained: The other evaluated models (the served one, or one without
        `predict_features`). TFMA's `load_eval_result` wants attributions for
        every model once any has them, so these get zeros at weight 0: TFMA
        reports their mean attributions as NaN, "not computed".
      features: The schema's raw features (the unexplained models' zeros).
    """

    digests: tuple[bytes, ...]
    weights: np.ndarray
    labels: np.ndarray
    models: dict[str, Attributions]
    unexplained: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    def rows_of(self, serialized) -> tuple[np.ndarray, np.ndarray]:
        """Explained row [N] (-1: none) and weight [N] of each serialized example of a batch."""
        index = {key: i for i, key in enumerate(self.digests)}
        rows = np.array([index.get(digest(record), -1) for record in serialized], np.int64)
        weights = np.where(rows >= 0, self.weights[np.maximum(rows, 0)], 0.0) if self.digests else np.zeros(len(rows))
        return rows, weights

    def attributions(self, row: int) -> dict:
        """`{model: {'logits': {feature: value}}}` of one example; one zero per model when it is not explained."""
        result = {}
        for name, explained in self.models.items():
            result[name] = {LOGITS: dict(zip(explained.features, explained.values[row].tolist(), strict=True))
                            if row >= 0 else {explained.features[0]: 0.0}}
        for name in self.unexplained:
            result[name] = {LOGITS: {self.features[0]: 0.0}}
        return result


def digest(record: bytes) -> bytes:
    return hashlib.sha1(bytes(record)).digest()


def explain_models(models: list[EvaluatedModel], schema: Schema, test_records: list[bytes], test: dict,
                   labels: np.ndarray, train: dict, options: AttributionOptions,
                   loaded: dict | None = None) -> ExplainedRows:
    """Explains a sample of the test rows for each model that exposes raw features.

    Args:
      models: Evaluated models: the candidate and the baseline are explained
        (`EXPLAINED`) unless they lack a `predict_features` signature (e.g. a
        hand-made SavedModel); the others are `unexplained`.
      schema: The run's schema.
      test_records: The test split's serialized examples as TFMA reads them.
      test, labels: The same rows parsed ({name: [N]}) and their labels [N].
      train: Training rows ({name: [M]}), the background's source.
      options: Sample sizes and seed.
      loaded: SavedModels the caller already loaded, by model name (else each is loaded here).
    """
    candidates = [m for m in models if m.name in EXPLAINED]
    trees = {m.name for m in candidates if has_trees_file(m.path)}
    functions = {m.name: margin_function((loaded or {}).get(m.name, m.path), schema)
                 for m in candidates if m.name not in trees}
    sampled = {name: f for name, f in functions.items() if f is not None}
    cap, size = sample_sizes(options, len(schema.features), bool(sampled))
    indices, weights = sample_rows(labels, cap, options.seed)
    rows = feature_columns(take(test, indices), schema)
    available = len(next(iter(train.values())))
    background = feature_columns(take(train, np.random.default_rng(options.seed).choice(
        available, size=min(size, available), replace=False)), schema)
    explained = {}
    for model in candidates:
        if model.name in trees:
            explained[model.name] = tree_shap(model.path, rows, schema)
        elif model.name in sampled:
            result = sampled_shapley(sampled[model.name], rows, background, options.seed)
            result.check_completeness()
            explained[model.name] = result
    digests = [digest(test_records[i]) for i in indices]
    copies: dict[bytes, int] = {}
    chosen = set(digests)
    for record in test_records:  # identical rows share their row's weight: the slice totals stay right
        key = digest(record)
        if key in chosen:
            copies[key] = copies.get(key, 0) + 1
    shared = np.array([weights[i] / copies[key] for i, key in enumerate(digests)])
    return ExplainedRows(tuple(digests), shared, labels[indices], explained,
                         tuple(m.name for m in models if m.name not in explained), tuple(f.name for f in schema.features))


def weights_extractor(explained: ExplainedRows) -> tfma.extractors.Extractor:
    """Stage 1, after the FeaturesExtractor: `ROW_FEATURE`, `WEIGHT_FEATURE` and `NO_WEIGHT_FEATURE`."""
    def fill(batch: dict) -> dict:
        rows, weights = explained.rows_of(batch[tfma.INPUT_KEY])
        features = {**batch[tfma.FEATURES_KEY], ROW_FEATURE: rows, WEIGHT_FEATURE: weights,
                    NO_WEIGHT_FEATURE: np.zeros_like(weights)}
        return {**batch, tfma.FEATURES_KEY: features}

    return tfma.extractors.Extractor(stage_name=WEIGHTS_STAGE, ptransform=beam.Map(fill))


def attributions_extractor(explained: ExplainedRows) -> tfma.extractors.Extractor:
    """Stage 2, after the UnbatchExtractor: `extracts['attributions']` of one example."""
    def fill(extracts: dict) -> dict:
        row = int(np.asarray(extracts[tfma.FEATURES_KEY][ROW_FEATURE]).reshape(-1)[0])
        return {**extracts, tfma.ATTRIBUTIONS_KEY: explained.attributions(row)}

    return tfma.extractors.Extractor(stage_name=STAGE, ptransform=beam.Map(fill))


def tfma_extractors(eval_shared_models: list, eval_config: tfma_config.EvalConfig, explained: ExplainedRows) -> list:
    """TFMA's default extractors, as `ExtractEvaluateAndWriteResults` builds them, plus the two stages.

    Stage 1 goes right after the FeaturesExtractor (the batch still holds the
    raw bytes, and the ExampleWeightsExtractor after it reads
    `WEIGHT_FEATURE`), stage 2 right after the UnbatchExtractor.
    """
    from tensorflow_model_analysis.utils import config_util, model_util

    shared = model_util.verify_and_update_eval_shared_models(eval_shared_models)
    config = config_util.update_eval_config_with_defaults(eval_config, has_baseline=len(shared) > 1,
                                                         rubber_stamp=model_util.has_rubber_stamp(shared))
    extractors = tfma.default_extractors(eval_config=config, eval_shared_model=eval_shared_models)
    stages = [e.stage_name for e in extractors]
    for stage in (FEATURES_STAGE, UNBATCH_STAGE):
        if stage not in stages:
            raise RuntimeError(f"TFMA's extractors changed: no {stage} among {stages}")
    first, second = stages.index(FEATURES_STAGE) + 1, stages.index(UNBATCH_STAGE) + 1
    return (extractors[:first] + [weights_extractor(explained)] + extractors[first:second]
            + [attributions_extractor(explained)] + extractors[second:])


def add_attribution_specs(eval_config: tfma_config.EvalConfig, explained: ExplainedRows) -> None:
    """Weights the explained models' `logits` output by `WEIGHT_FEATURE` and adds the attribution metrics."""
    if not explained.models:
        return
    for spec in eval_config.model_specs:
        spec.example_weight_keys[LOGITS] = WEIGHT_FEATURE if spec.name in explained.models else NO_WEIGHT_FEATURE
    for name in [*explained.models, *explained.unexplained]:  # one spec per model, as evaluation.eval_config's
        eval_config.metrics_specs.add(
            model_names=[name], output_names=[LOGITS],
            metrics=[tfma_config.MetricConfig(class_name="ExplainedAttributions", module=attribution_metrics.MODULE)],
            example_weights=tfma_config.ExampleWeightOptions(weighted=True))


def mean_absolute(output_path: str, model: str, slice_key: tuple = ()) -> dict[str, float]:
    """TFMA's weighted mean |attribution| per feature for one model and slice ({} when absent)."""
    if not os.path.isdir(output_path):
        return {}
    for record in tfma.load_attributions(output_path):
        key = tuple((s.column, _slice_value(s)) for s in record.slice_key.single_slice_keys)
        if key != tuple(slice_key):
            continue
        for entry in record.attributions_keys_and_values:
            if entry.key.name == MEAN_ABSOLUTE and entry.key.model_name == model:
                return {feature: value.double_value.value for feature, value in entry.values.items()}
    return {}


def _slice_value(single) -> object:
    kind = single.WhichOneof("kind")
    value = getattr(single, kind)
    return value.decode() if isinstance(value, bytes) else value



def explain_run(run_dir: str, models: list[EvaluatedModel], schema: Schema, plan: SlicePlan,
                options: AttributionOptions | None = None, loaded: dict | None = None) -> ExplainedRows:
    """Explains the run's candidate and baseline on a sample of its test split (`explain_models`).

    The test records get the same slice buckets as TFMA's input
    (`evaluation.slicing.add_buckets`), so the extractor finds them by their bytes.
    """
    from trainer.crossval import load_arrays
    from trainer.data.dataset import read_serialized

    records = read_serialized(split_pattern(run_dir))
    if plan.numeric:
        records = [add_buckets(record, dict(plan.numeric)) for record in records]
    test = load_arrays([split_pattern(run_dir)], schema)
    train = load_arrays([split_pattern(run_dir, "train")], schema)
    return explain_models(models, schema, records, test.features, test.labels, train.features,
                          options or AttributionOptions(), loaded)


def summary(explained: ExplainedRows) -> dict:
    """A JSON-able account of the explanations: method, sample sizes, completeness, per model."""
    positives = int((explained.labels == 1).sum())
    return {name: {"method": a.method, "output": LOGITS, "rows": int(len(a.margins)), "positive_rows": positives,
                   "background_rows": a.background, "expected_margin": a.expected,
                   "max_completeness_error": a.max_completeness_error,
                   "completeness_tolerance": COMPLETENESS_TOLERANCE}
            for name, a in explained.models.items()}


def write_summary(eval_dir: str, explained: ExplainedRows) -> None:
    write_json_atomically(os.path.join(eval_dir, SUMMARY_FILE), summary(explained))


def load_summary(eval_dir: str) -> dict:
    """`write_summary`'s content, or {} when the evaluation explained nothing."""
    path = os.path.join(eval_dir, SUMMARY_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
