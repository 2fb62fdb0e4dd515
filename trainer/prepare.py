"""`RUN/data/`: validated, split, schema'd data, written once and reused.

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
import uuid

from trainer import ingest, split
from trainer.config import RunConfig
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


def prepare_data(config: RunConfig) -> PreparedData:
    """Returns the run's prepared data, creating it if needed.

    Raises:
      ingest.DataError: bad input data, or `RUN/data` made from other settings.
    """
    directory = os.path.join(config.output_dir, "data")
    source = data_source(config)
    if os.path.exists(os.path.join(directory, SOURCE_FILE)):
        return _reuse(directory, source)
    frame = ingest.load(config.data, config.label, config.positive_label, config.seed, config.synthetic_rows)
    assignment = split.assign_splits(frame.labels, config.split, config.seed)
    schema = infer_schema(frame.features[assignment == 0], frame.label_name)
    counts = split.class_counts(frame.labels, assignment)
    source = {**source, "positive_value": frame.positive_value, "renamed_columns": frame.renamed}
    created = not os.path.exists(config.output_dir)
    os.makedirs(config.output_dir, exist_ok=True)
    staging = os.path.join(config.output_dir, f".data-staging-{uuid.uuid4().hex}")
    try:
        split.write_splits(frame.features, frame.labels, frame.label_name, assignment, staging,
                           config.beam_pipeline_args)
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
    except OSError as error:  # e.g. a full disk: say where, leave no empty run directory behind
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            _remove_if_empty(config.output_dir)
        reason = error.strerror or str(error)
        raise OSError(error.errno, f"cannot write the prepared data under {config.output_dir}: {reason}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PreparedData(directory, schema, counts, source)


def _remove_if_empty(path: str) -> None:
    try:
        os.rmdir(path)  # only ever removes an empty directory
    except OSError:
        pass


def _reuse(directory: str, source: dict) -> PreparedData:
    with open(os.path.join(directory, SOURCE_FILE)) as handle:
        saved = json.load(handle)
    differing = sorted(k for k in source if saved.get(k) != source[k])
    if differing:
        raise ingest.DataError(
            f"{directory} was prepared with other settings ({', '.join(differing)}); "
            "use a new --output-dir or remove that run"
        )
    return PreparedData(directory, load_schema(directory), split.load_counts(directory), saved)
