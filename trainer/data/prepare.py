"""`RUN/data/`: validated, split, schema'd data, written once and reused.

Two engines, one contract (`prepare_data`): files go through two Apache Beam
pipelines (`trainer.data.beam_ingest`: read, validate and profile every record,
then split, encode, write and compute the training statistics, with the
driver holding only counts and statistics); the built-in datasets, which
are Python objects, go through the in-memory path (`trainer.data.ingest`: a
pandas frame, then a Beam pipeline that writes it). Up to a million rows
both split a file identically, bad rows skipped under `--max-bad-rows`
included. `--data-engine` chooses: `beam` reads a built-in dataset from a
temporary Parquet copy, `in_memory` reads a file into pandas.

Both engines keep the training split's statistics beside the schema
(`layout.TRAIN_STATISTICS`, TFDV's format: `trainer.data.statistics`), the
reference `evaluation.drift` compares served data with.

All validation happens before the first byte is written; the directory is
built under a temporary name and renamed into place, so an interrupted run
leaves either a complete `RUN/data/` or none. A rerun with the same data
settings reuses it; with different settings it refuses rather than mixing
two datasets in one run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

from trainer.atomic import staging_directory
from trainer.config import DATA_ENGINES, VOCABULARY_SIZE, RunConfig
from trainer.data import ingest, split, statistics
from trainer.data.beam_stats import TrainStats
from trainer.data.ingest import BadRows, DataError
from trainer.data.schema import Schema, infer_schema, load_schema, save_schema
from trainer.layout import DATA_DIR, shard_pattern

SOURCE_FILE = "source.json"
# Settings recorded in source.json since they exist: data prepared before lacks them and had these values.
SOURCE_DEFAULTS = {"vocabulary_size": VOCABULARY_SIZE, "vocabulary_min_count": 1}
BUILTIN_ROW_GROUP = 65_536  # rows per Parquet row group of a built-in dataset's copy: one Beam range each


@dataclasses.dataclass(frozen=True)
class PreparedData:
    directory: str
    schema: Schema
    counts: dict[str, list[int]]  # {split: [N_0, N_1]}
    source: dict

    def pattern(self, name: str) -> str:
        return shard_pattern(self.directory, name)

    @property
    def train_counts(self) -> tuple[int, int]:
        return tuple(self.counts["train"])

    @property
    def bad_rows(self) -> BadRows | None:
        """The rows skipped under `--max-bad-rows` (None: prepared before they were recorded)."""
        recorded = self.source.get("bad_rows")
        return BadRows.from_json(recorded) if recorded is not None else None


def data_source(config: RunConfig) -> dict:
    """The settings that determine the split's contents and the schema."""
    source = {"data": config.data, "label": config.label, "positive_label": config.positive_label,
              "seed": config.seed, "split": list(config.split), "vocabulary_size": config.vocabulary_size,
              "vocabulary_min_count": config.vocabulary_min_count}
    if config.data == "synthetic":
        source["synthetic_rows"] = list(config.synthetic_rows)
    return source


ENGINES = DATA_ENGINES


def data_engine(config: RunConfig, engine: str | None = None) -> str:
    """Which data step runs: `engine` (default `config.data_engine`); `auto` is `in_memory` for the
    built-in datasets (Python objects) and `beam` for files.

    Raises:
      DataError: an unknown engine.
    """
    engine = engine or config.data_engine
    if engine not in ENGINES:
        raise DataError(f"unknown data engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "in_memory" if config.data in ingest.BUILTIN_DATASETS else "beam"
    return engine


def run_record(data: PreparedData) -> dict:
    """What `run.json` records about the data step: the bad rows it skipped (when it recorded them)."""
    return {"bad_rows": data.source["bad_rows"]} if "bad_rows" in data.source else {}


def prepare_data(config: RunConfig, engine: str | None = None) -> PreparedData:
    """Returns the run's prepared data, creating it if needed.

    Args:
      config: The run's configuration.
      engine: Overrides `config.data_engine`: `auto` (the Beam data step
        for files, the in-memory one for the built-in datasets), `beam` or
        `in_memory` (everything in a pandas frame in this process: for
        comparison and small files).

    Raises:
      ingest.DataError: bad input data (more bad rows than
        `config.max_bad_rows`), or `RUN/data` made from other settings.
    """
    directory = os.path.join(config.output_dir, DATA_DIR)
    source = data_source(config)
    if os.path.exists(os.path.join(directory, SOURCE_FILE)):
        return _reuse(directory, source, config.max_bad_rows)
    engine = data_engine(config, engine)
    # The in-memory path validates before anything exists; the Beam one validates in its pipeline,
    # whose refusal removes the staging directory (and a run directory it created) again.
    write = _beam_step(config) if engine == "beam" else _in_memory_step(config)
    created = _missing_directories(config.output_dir)
    os.makedirs(config.output_dir, exist_ok=True)
    try:
        with staging_directory(config.output_dir, "data-staging") as staging:
            os.makedirs(staging)
            schema, counts, extras = write(staging)
            source = {**source, **extras, "engine": engine}
            save_schema(schema, staging)
            split.save_counts(counts, staging)
            with open(os.path.join(staging, SOURCE_FILE), "w") as handle:
                json.dump(source, handle, indent=1)
            try:
                os.rename(staging, directory)
            except OSError:
                if not os.path.exists(os.path.join(directory, SOURCE_FILE)):
                    raise
                return _reuse(directory, source, config.max_bad_rows)  # a concurrent worker prepared it first
    except DataError:
        _remove_if_empty(created)
        raise
    except OSError as error:  # e.g. a full disk: say where, leave no empty run directory behind
        _remove_if_empty(created)
        reason = error.strerror or str(error)
        raise OSError(error.errno, f"cannot write the prepared data under {config.output_dir}: {reason}") from None
    bad_rows = BadRows.from_json(source["bad_rows"])
    if bad_rows.skipped:
        print(f"warning: {bad_rows.notice()}", file=sys.stderr, flush=True)
    return PreparedData(directory, schema, counts, source)


def _in_memory_step(config: RunConfig):
    """Validates everything in a pandas frame now; returns the writer of a staging directory."""
    frame = ingest.load(config.data, config.label, config.positive_label, config.seed, config.synthetic_rows,
                        config.max_bad_rows)
    assignment = split.assign_splits(frame.labels, config.split, config.seed)
    schema = infer_schema(frame.features[assignment == 0], frame.label_name, config.vocabulary_size,
                          config.vocabulary_min_count)
    counts = split.class_counts(frame.labels, assignment)

    def write(staging: str) -> tuple[Schema, dict, dict]:
        split.write_splits(frame.features, frame.labels, frame.label_name, assignment, staging,
                           config.beam_pipeline_args)
        train = statistics.frame_columns(frame.features[assignment == 0])
        base = TrainStats()
        base.add(train.rows, train.numeric, train.categorical)
        statistics.save_training_statistics(base, [(f.name, f.kind) for f in schema.features], frame.label_name,
                                            counts["train"], staging)
        return schema, counts, {"positive_value": frame.positive_value, "renamed_columns": frame.renamed,
                                "bad_rows": frame.bad_rows.to_json()}

    return write


def _beam_step(config: RunConfig):
    """The writer of a staging directory that validates and writes in one Beam pipeline (`trainer.data.beam_ingest`).

    A built-in dataset is first written to a Parquet file in the staging
    directory (removed before the directory is published), which the
    pipeline reads as it reads any file.
    """
    from trainer.data import beam_ingest

    builtin = config.data in ingest.BUILTIN_DATASETS
    if not config.label and not builtin:
        raise DataError("--label is required for your own data")
    label = config.label
    if builtin:  # the label check before any work (the frame itself is made in the staging directory)
        label = config.label or "target"
        if label != "target":
            raise DataError(f"the built-in dataset {config.data!r} has label column 'target', not {label!r}")

    def write(staging: str) -> tuple[Schema, dict, dict]:
        copy = os.path.join(staging, ".builtin")
        pattern = _write_builtin(config, copy) if builtin else config.data
        settings = beam_ingest.Settings(pattern, label, config.positive_label, tuple(config.split), config.seed,
                                        max_bad_rows=config.max_bad_rows, vocabulary_size=config.vocabulary_size,
                                        vocabulary_min_count=config.vocabulary_min_count)
        try:
            plan, schema, counts = beam_ingest.run_data_step(settings, staging, config.beam_pipeline_args)
        finally:
            shutil.rmtree(copy, ignore_errors=True)
        return schema, counts, {"positive_value": plan.positive_value, "renamed_columns": plan.renamed,
                                "split_order": "assign_splits" if plan.split.by_rank is not None else "record_hash",
                                "bad_rows": plan.bad_rows.to_json()}

    return write


def _write_builtin(config: RunConfig, directory: str) -> str:
    """Writes the built-in dataset `config.data` as one Parquet file under `directory`; returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame, _ = ingest.builtin_frame(config.data, config.label, config.seed, config.synthetic_rows)
    os.makedirs(directory)
    path = os.path.join(directory, f"{config.data}.parquet")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=BUILTIN_ROW_GROUP)
    return path


def _missing_directories(path: str) -> list[str]:
    """`path` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _remove_if_empty(paths: list[str]) -> None:
    for path in paths:
        try:
            os.rmdir(path)  # only ever removes an empty directory
        except OSError:
            return


def _reuse(directory: str, source: dict, max_bad_rows: int) -> PreparedData:
    """The prepared data, if it was made with the same settings and skipped no more rows than now allowed."""
    with open(os.path.join(directory, SOURCE_FILE)) as handle:
        saved = json.load(handle)
    differing = sorted(k for k in source if saved.get(k, SOURCE_DEFAULTS.get(k)) != source[k])
    if differing:
        raise DataError(
            f"{directory} was prepared with other settings ({', '.join(differing)}); "
            "use a new --output-dir or remove that run"
        )
    skipped = saved.get("bad_rows", {}).get("skipped", 0)
    if skipped > max_bad_rows:
        raise DataError(f"{directory} was prepared skipping {skipped} bad rows, more than --max-bad-rows "
                        f"{max_bad_rows}; use a new --output-dir or --max-bad-rows {skipped}")
    return PreparedData(directory, load_schema(directory), split.load_counts(directory), saved)
