"""`RUN/data/`: validated, split, schema'd data, written once and reused.

Two engines, one contract (`prepare_data`): files go through two Apache Beam
pipelines (`trainer.beam_ingest`: read, validate and profile every record,
then split, encode, write and compute the training statistics, with the
driver holding only counts and statistics); the built-in datasets, which
are Python objects, go through the in-memory path (`trainer.ingest`: a
pandas frame, then a Beam pipeline that writes it). Up to a million rows
both split a file identically.

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

from trainer import ingest, split
from trainer.atomic import staging_directory
from trainer.config import RunConfig
from trainer.ingest import DataError
from trainer.schema import Schema, infer_schema, load_schema, save_schema

SOURCE_FILE = "source.json"


@dataclasses.dataclass(frozen=True)
class PreparedData:
    directory: str
    schema: Schema
    counts: dict[str, list[int]]  # {split: [N_0, N_1]}
    source: dict

    def pattern(self, name: str) -> str:
        return os.path.join(self.directory, name, "data-*.tfrecord.gz")

    @property
    def train_counts(self) -> tuple[int, int]:
        return tuple(self.counts["train"])


def data_source(config: RunConfig) -> dict:
    """The settings that determine the split's contents."""
    source = {"data": config.data, "label": config.label, "positive_label": config.positive_label,
              "seed": config.seed, "split": list(config.split)}
    if config.data == "synthetic":
        source["synthetic_rows"] = list(config.synthetic_rows)
    return source


ENGINES = ("auto", "beam", "in_memory")


def data_engine(config: RunConfig, engine: str = "auto") -> str:
    """Which data step runs: `in_memory` for the built-in datasets (Python objects), `beam` for files.

    Raises:
      DataError: `beam` asked for a built-in dataset, or an unknown engine.
    """
    if engine not in ENGINES:
        raise DataError(f"unknown data engine {engine!r}; use one of {', '.join(ENGINES)}")
    builtin = config.data in ingest.BUILTIN_DATASETS
    if engine == "beam" and builtin:
        raise DataError(f"the built-in dataset {config.data!r} is read in memory; the Beam data step reads files")
    if engine == "auto":
        return "in_memory" if builtin else "beam"
    return engine


def prepare_data(config: RunConfig, engine: str = "auto") -> PreparedData:
    """Returns the run's prepared data, creating it if needed.

    Args:
      config: The run's configuration.
      engine: `auto` (default: the Beam data step for files, the in-memory
        one for the built-in datasets), `beam` or `in_memory` (everything in
        a pandas frame in this process: for comparison and small files).

    Raises:
      ingest.DataError: bad input data, or `RUN/data` made from other settings.
    """
    directory = os.path.join(config.output_dir, "data")
    source = data_source(config)
    if os.path.exists(os.path.join(directory, SOURCE_FILE)):
        return _reuse(directory, source)
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
                return _reuse(directory, source)  # a concurrent worker prepared it first
    except DataError:
        _remove_if_empty(created)
        raise
    except OSError as error:  # e.g. a full disk: say where, leave no empty run directory behind
        _remove_if_empty(created)
        reason = error.strerror or str(error)
        raise OSError(error.errno, f"cannot write the prepared data under {config.output_dir}: {reason}") from None
    return PreparedData(directory, schema, counts, source)


def _in_memory_step(config: RunConfig):
    """Validates everything in a pandas frame now; returns the writer of a staging directory."""
    frame = ingest.load(config.data, config.label, config.positive_label, config.seed, config.synthetic_rows)
    assignment = split.assign_splits(frame.labels, config.split, config.seed)
    schema = infer_schema(frame.features[assignment == 0], frame.label_name)
    counts = split.class_counts(frame.labels, assignment)

    def write(staging: str) -> tuple[Schema, dict, dict]:
        split.write_splits(frame.features, frame.labels, frame.label_name, assignment, staging,
                           config.beam_pipeline_args)
        return schema, counts, {"positive_value": frame.positive_value, "renamed_columns": frame.renamed}

    return write


def _beam_step(config: RunConfig):
    """The writer of a staging directory that validates and writes in one Beam pipeline (`trainer.beam_ingest`)."""
    from trainer import beam_ingest

    if not config.label:
        raise DataError("--label is required for your own data")
    settings = beam_ingest.Settings(config.data, config.label, config.positive_label, tuple(config.split),
                                    config.seed)

    def write(staging: str) -> tuple[Schema, dict, dict]:
        plan, schema, counts = beam_ingest.run_data_step(settings, staging, config.beam_pipeline_args)
        return schema, counts, {"positive_value": plan.positive_value, "renamed_columns": plan.renamed,
                                "split_order": "assign_splits" if plan.split.by_rank is not None else "record_hash"}

    return write


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


def _reuse(directory: str, source: dict) -> PreparedData:
    with open(os.path.join(directory, SOURCE_FILE)) as handle:
        saved = json.load(handle)
    differing = sorted(k for k in source if saved.get(k) != source[k])
    if differing:
        raise DataError(
            f"{directory} was prepared with other settings ({', '.join(differing)}); "
            "use a new --output-dir or remove that run"
        )
    return PreparedData(directory, load_schema(directory), split.load_counts(directory), saved)
