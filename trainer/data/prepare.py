"""`RUN/data/`: validated, split, schema'd data, written once and reused.

One engine (docs/design.md §2): every dataset goes through the Apache Beam
data step (`trainer.data.beam_ingest`: read, validate and profile every
record, then split, encode, write and compute the training statistics, with
the driver holding only counts and statistics). A built-in dataset (`sylva`,
`synthetic`: Python objects) is first written to a temporary Parquet file in
the staging directory, which the pipeline reads as it reads any file.

The training split's statistics are kept beside the schema
(`layout.TRAIN_STATISTICS`, TFDV's format: `trainer.data.statistics`), the
reference `evaluation.drift` compares served data with.

All validation happens before the first byte is written; the directory is
built under a temporary name and renamed into place, so an interrupted run
leaves either a complete `RUN/data/` or none. A rerun with the same data
settings reuses it; with different settings it refuses rather than mixing
two datasets in one run.

A run on object storage (`trainer.run_storage`: the pipeline runs on a local
working copy) has its data step write where Beam's workers can, on any
runner: under the remote run's data directory (`run_storage.on_store`). There
is no rename there, so the directory is published by the rule a version is
(`storage.publish_tree`): the workers' shards and the result they hand back
are objects written whole, then the driver's schema, counts and statistics,
and `source.json` last, the marker (the file a data directory is already
trusted by: `prepare_data` reuses one that has it); a data directory
without it (a crash) is trusted by no one: the working copy does not copy
it and the next data step removes it first. The published files are then copied into the
working copy (TensorFlow reads local files; it cannot open s3://) and
recorded as on the store (`run_storage.published`), so the run's upload
leaves them out.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from trainer import storage
from trainer.atomic import staging_directory
from trainer.config import VOCABULARY_SIZE, RunConfig
from trainer.data import ingest, split
from trainer.data.ingest import BadRows, DataError
from trainer.data.schema import Schema, load_schema, save_schema
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


def run_record(data: PreparedData) -> dict:
    """What `run.json` records about the data step: the bad rows it skipped (when it recorded them)."""
    return {"bad_rows": data.source["bad_rows"]} if "bad_rows" in data.source else {}


def prepare_data(config: RunConfig) -> PreparedData:
    """Returns the run's prepared data, creating it with the Beam data step if needed.

    Args:
      config: The run's configuration.

    Raises:
      ingest.DataError: bad input data (more bad rows than
        `config.max_bad_rows`), or `RUN/data` made from other settings.
    """
    directory = os.path.join(config.output_dir, DATA_DIR)
    source = data_source(config)
    if os.path.exists(os.path.join(directory, SOURCE_FILE)):
        return _reuse(directory, source, config.max_bad_rows)
    # The pipeline validates before it writes; its refusal removes the staging directory
    # (and a run directory it created) again.
    write = _beam_step(config)
    remote = _remote_directory(directory)
    created = _missing_directories(config.output_dir)
    os.makedirs(config.output_dir, exist_ok=True)
    try:
        with staging_directory(config.output_dir, "data-staging") as staging:
            os.makedirs(staging)
            schema, counts, extras = write(staging, remote or staging)
            source = {**source, **extras}
            save_schema(schema, staging)
            split.save_counts(counts, staging)
            with open(os.path.join(staging, SOURCE_FILE), "w") as handle:
                json.dump(source, handle, indent=1)
            if remote:
                _publish_remote(staging, remote)
            try:
                os.rename(staging, directory)
            except OSError:
                if not os.path.exists(os.path.join(directory, SOURCE_FILE)):
                    raise
                return _reuse(directory, source, config.max_bad_rows)  # a concurrent worker prepared it first
    except DataError:
        _remove_if_empty(created)
        if remote:  # nothing left under the remote run (a refusal writes only the hand-back file)
            storage.remove_tree(remote)
        raise
    except OSError as error:  # e.g. a full disk: say where, leave no empty run directory behind
        _remove_if_empty(created)
        reason = error.strerror or str(error)
        raise OSError(error.errno, f"cannot write the prepared data under {config.output_dir}: {reason}") from None
    if remote:
        from trainer import run_storage

        run_storage.published(directory)
    bad_rows = BadRows.from_json(source["bad_rows"])
    if bad_rows.skipped:
        print(f"warning: {bad_rows.notice()}", file=sys.stderr, flush=True)
    return PreparedData(directory, schema, counts, source)


def _beam_step(config: RunConfig):
    """The writer of a staging directory that validates and writes in one Beam pipeline (`trainer.data.beam_ingest`).

    `write(staging, shards)`: the workers write the shards under `shards`
    (the staging directory, or the remote data directory), the driver its
    statistics into `staging`. A built-in dataset is first written to a
    Parquet file under `shards` (removed before the directory is published),
    which the pipeline reads as it reads any file.
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

    def write(staging: str, shards: str) -> tuple[Schema, dict, dict]:
        copy = storage.join(shards, ".builtin")
        pattern = _write_builtin(config, copy) if builtin else config.data
        settings = beam_ingest.Settings(pattern, label, config.positive_label, tuple(config.split), config.seed,
                                        max_bad_rows=config.max_bad_rows, vocabulary_size=config.vocabulary_size,
                                        vocabulary_min_count=config.vocabulary_min_count)
        try:
            plan, schema, counts = beam_ingest.run_data_step(settings, shards, config.beam_pipeline_args,
                                                             records=staging)
        finally:
            storage.remove_tree(copy)
        return schema, counts, {"positive_value": plan.positive_value, "renamed_columns": plan.renamed,
                                "split_order": "assign_splits" if plan.split.by_rank is not None else "record_hash",
                                "bad_rows": plan.bad_rows.to_json()}

    return write


def _write_builtin(config: RunConfig, directory: str) -> str:
    """Writes the built-in dataset `config.data` as one Parquet file under `directory`; returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame, _ = ingest.builtin_frame(config.data, config.label, config.seed, config.synthetic_rows)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    path = storage.join(directory, f"{config.data}.parquet")
    if not storage.is_remote(path):
        os.makedirs(directory)
        pq.write_table(table, path, row_group_size=BUILTIN_ROW_GROUP)
        return path
    with storage.local_stage() as local:  # written locally, then one object the workers read
        pq.write_table(table, os.path.join(local, "data.parquet"), row_group_size=BUILTIN_ROW_GROUP)
        storage.copy_file(os.path.join(local, "data.parquet"), path)
    return path


def _remote_directory(directory: str) -> str | None:
    """The remote data directory the workers write (a run on object storage; else None), emptied of what a
    crashed data step left there (unmarked: the working copy did not copy it)."""
    from trainer import run_storage

    remote = run_storage.on_store(directory)
    if remote is not None:
        storage.remove_tree(remote)
    return remote


def _publish_remote(staging: str, remote: str) -> None:
    """Copies the workers' shards from `remote` into `staging` and the driver's files to `remote`,
    `source.json` last: the marker that makes the remote directory trusted (module docstring)."""
    records = [n.replace(os.sep, "/") for n in storage.list_files(staging) if n != SOURCE_FILE]
    storage.copy_files(remote, staging, storage.list_files(remote))
    for name in split.SPLITS:  # as a local data step leaves them, even with no shard
        os.makedirs(os.path.join(staging, name), exist_ok=True)
    storage.copy_files(staging, remote, records)
    storage.copy_file(os.path.join(staging, SOURCE_FILE), storage.join(remote, SOURCE_FILE))


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
