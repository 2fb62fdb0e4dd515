"""The data step as one Apache Beam pipeline over the input files, in two passes.

1. Profile (`beam_profile`): every range of every file is read and profiled
   by a worker; one combiner merges the profiles, and the merged profile is
   validated and turned into the plan of the second pass (`beam_plan`), or
   into the one-line refusal of bad data.
2. Write (`beam_write`), with the plan as a side input: every range is read
   again, split, encoded and written by a worker; the records of the buckets
   holding a split's cut are grouped, ranked and written; a combiner merges
   class counts and training statistics (`beam_stats`). With a refusal, the
   second pass writes nothing.

One pipeline, so a multi-process or remote runner starts its workers once
(about 5 s each time with the multi-process direct runner on 2 cores). The
driver gets one small value back, through a file: the plan, or the refusal,
and the merged counts and statistics; its size depends on the number of
columns, never on the number of rows.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from trainer import storage
from trainer.beam_runner import make_pipeline
from trainer.data.beam_files import RANGE_BYTES, plan_ranges
from trainer.data.beam_plan import Plan, make_plan, profile_keep
from trainer.data.beam_profile import Profile, profile_range
from trainer.data.beam_split import EXACT_ORDER_ROWS
from trainer.data.beam_write import Written, write_boundary, write_range
from trainer.data.ingest import DataError
from trainer.data.schema import MAX_VOCABULARY, Schema
from trainer.data.split import SPLITS, _os_error, _QuietOSErrors
from trainer.data.statistics import save_training_statistics

RESULT_FILE = ".data-step-result.pkl"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the plan is made from, besides the profile."""

    pattern: str
    label: str
    positive_label: str | None
    fractions: tuple[float, float, float]
    seed: int
    exact_order_rows: int = EXACT_ORDER_ROWS
    max_bad_rows: int = 0  # leave out at most this many bad rows (0: refuse the first)
    vocabulary_size: int = MAX_VOCABULARY
    vocabulary_min_count: int = 1


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the pipeline hands back: a plan and what was written, or a refusal."""

    plan: Plan | None
    written: Written | None
    refusal: str | None = None


def run_data_step(settings: Settings, directory: str, beam_pipeline_args: Sequence[str] = (),
                  range_bytes: int = RANGE_BYTES, records: str | None = None) -> tuple[Plan, Schema, dict]:
    """Validates the input and writes `directory/{train,validation,test}/data-*.tfrecord.gz`.

    Args:
      settings: The input and how to split it.
      directory: A fresh (staging) directory, or a prefix on object storage
        with nothing under it: the workers write there, and hand their result
        back through a file there.
      beam_pipeline_args: Options for Beam (runner, workers).
      range_bytes: CSV files are cut into ranges of this many bytes.
      records: The local directory the driver writes the training statistics
        into (default: `directory`).

    Returns:
      (the plan, the training split's schema, {split: [N_0, N_1]}); the training
      split's statistics are written into `records` (`layout.TRAIN_STATISTICS`).

    Raises:
      DataError: bad input (one line: the case, counts and first locations);
        then only empty split directories were created under `directory`.
    """
    ranges = plan_ranges(settings.pattern, range_bytes)
    for name in SPLITS:
        storage.makedirs(storage.join(directory, name))
    result = storage.join(directory, RESULT_FILE)
    with _quiet_os_errors(), make_pipeline(beam_pipeline_args) as pipeline:
        parts = pipeline | "Ranges" >> beam.Create(ranges)
        plan = beam.pvalue.AsSingleton(
            parts
            | "Profile" >> beam.ParDo(_ProfileRanges(settings.label, settings.seed,
                                                     profile_keep(settings.max_bad_rows)))
            | "Merge profiles" >> beam.CombineGlobally(_MergeFn(Profile))
            | "Plan" >> beam.Map(_plan_or_refusal, ranges, settings)
        )
        written = parts | "Write ranges" >> beam.ParDo(_WriteRange(directory), plan).with_outputs(
            "boundary", main="written")
        cuts = (
            written.boundary
            | "By bucket" >> beam.GroupByKey()
            | "Write cut buckets" >> beam.Map(lambda group, plan: write_boundary(plan, group, directory), plan)
        )
        _ = (
            (written.written, cuts)
            | "All" >> beam.Flatten()
            | "Merge written" >> beam.CombineGlobally(_MergeFn(Written))
            | "Hand back" >> beam.Map(_hand_back, plan, result)
        )
    outcome = _load(result)
    storage.remove_files([result])
    if outcome.refusal is not None:
        raise DataError(outcome.refusal)
    plan, schema, counts = _finish(outcome.plan, outcome.written, settings)
    save_training_statistics(outcome.written.stats, [(name, kind) for _, name, kind in plan.features],
                             plan.label_name, counts["train"], records or directory)
    return plan, schema, counts


def _finish(plan: Plan, written: Written, settings: Settings) -> tuple[Plan, Schema, dict]:
    counts = {name: [int(n) for n in written.counts[index]] for index, name in enumerate(SPLITS)}
    if counts != plan.split.counts:  # a file changed between the passes, or a bug: never train on it
        raise RuntimeError(f"the data step wrote {counts} examples, planned {plan.split.counts}")
    features = [(name, kind) for _, name, kind in plan.features]
    return plan, written.stats.schema(features, plan.label_name, settings.vocabulary_size,
                                      settings.vocabulary_min_count), counts


def _plan_or_refusal(profile: Profile, ranges, settings: Settings) -> Plan | str:
    try:
        return make_plan(ranges, profile, settings.pattern, settings.label, settings.positive_label,
                         settings.fractions, settings.seed, settings.exact_order_rows, settings.max_bad_rows)
    except DataError as error:
        return str(error)


def _hand_back(written: Written, plan: Plan | str, path: str) -> None:
    outcome = Outcome(None, None, plan) if isinstance(plan, str) else Outcome(plan, written)
    with storage.open_file(path, "wb") as handle:
        pickle.dump(outcome, handle)


class _PerBundle(beam.DoFn):
    """Merges its outputs within a bundle and emits one value per bundle.

    The runner then buffers one accumulator per bundle, not one per range
    (the training statistics' sketches are a few MB), so the driver's memory
    does not grow with the number of ranges.
    """

    def start_bundle(self):
        self._merged = None

    def _keep(self, value) -> None:
        self._merged = value if self._merged is None else self._merged.merge(value)

    def finish_bundle(self):
        if self._merged is not None:
            yield WindowedValue(self._merged, MIN_TIMESTAMP, [GlobalWindow()])


class _ProfileRanges(_PerBundle):
    def __init__(self, label: str, seed: int, keep: int):
        self._label, self._seed, self._samples = label, seed, keep

    def process(self, part):
        self._keep(profile_range(part, self._label, self._seed, self._samples))
        return ()


class _WriteRange(_PerBundle):
    def __init__(self, directory: str):
        self._directory = directory

    def process(self, part, plan):
        refused = isinstance(plan, str)  # then write nothing
        for tag, value in () if refused else write_range(plan, part, self._directory):
            if tag == "boundary":
                yield beam.pvalue.TaggedOutput(tag, value)
            else:
                self._keep(value)


class _MergeFn(beam.CombineFn):
    """Merges values that have a `merge` method (Profile, Written)."""

    def __init__(self, kind: type):
        self._kind = kind

    def create_accumulator(self):
        return self._kind()

    def add_input(self, accumulator, value):
        return accumulator.merge(value)

    def merge_accumulators(self, accumulators):
        merged = self._kind()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


def _load(path: str):
    with storage.open_file(path, "rb") as handle:
        return pickle.load(handle)


class _quiet_os_errors:
    """A worker's OSError (e.g. a full disk) comes back as itself, logged once by the caller."""

    def __enter__(self):
        self._filter = _QuietOSErrors()
        logging.getLogger("apache_beam.runners.common").addFilter(self._filter)

    def __exit__(self, kind, error, traceback):
        logging.getLogger("apache_beam.runners.common").removeFilter(self._filter)
        if isinstance(error, RuntimeError) and _os_error(error) is not None:
            raise _os_error(error) from None
        return False
