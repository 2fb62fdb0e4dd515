"""The data step's options: `data_engine`, the vocabulary rule on both engines, reusing prepared data,
and the bad rows in run.json.

References: the in-memory path's written examples (itself checked against
pandas in tests/test_beam_pipeline.py), a `collections.Counter` of the
training rows' values, and the rows we corrupted ourselves.
"""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pandas as pd
import pytest

from tests.conftest import tiny_config
from tests.test_bad_rows import BAD_CELLS, BAD_IDS, good_frame, write_csv
from trainer.config import RunConfig
from trainer.data.ingest import DataError
from trainer.data.prepare import data_engine, prepare_data


def test_auto_reads_files_on_beam_and_built_ins_in_memory_unless_the_config_says_otherwise():
    assert data_engine(RunConfig(data="sylva")) == "in_memory"
    assert data_engine(RunConfig(data="x.csv")) == "beam"
    assert data_engine(RunConfig(data="sylva", data_engine="beam")) == "beam"
    assert data_engine(RunConfig(data="x.csv", data_engine="in_memory")) == "in_memory"
    assert data_engine(RunConfig(data="x.csv", data_engine="in_memory"), "auto") == "beam"  # the argument wins
    with pytest.raises(DataError, match="unknown data engine 'spark'"):
        data_engine(RunConfig(), "spark")


def _written(data) -> pd.DataFrame:
    from tests.test_beam_pipeline import split_frame

    frame = split_frame(data.directory, data.schema)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _same_schema(ours, theirs) -> None:
    assert [(f.name, f.kind, f.vocabulary, f.missing_fraction) for f in ours.features] == \
        [(f.name, f.kind, f.vocabulary, f.missing_fraction) for f in theirs.features]
    for mine, other in zip(ours.numeric, theirs.numeric, strict=True):
        np.testing.assert_allclose([mine.mean, mine.std, *mine.quantiles], [other.mean, other.std, *other.quantiles],
                                   rtol=1e-9)


@pytest.mark.slow
def test_a_built_in_dataset_on_beam_prepares_what_the_in_memory_path_prepares(tmp_path):
    rows = (1500, 120)
    beam = prepare_data(RunConfig(data="synthetic", synthetic_rows=rows, output_dir=str(tmp_path / "beam"),
                                  data_engine="beam"))
    memory = prepare_data(RunConfig(data="synthetic", synthetic_rows=rows, output_dir=str(tmp_path / "memory")))
    assert (beam.source["engine"], memory.source["engine"]) == ("beam", "in_memory")
    assert beam.source["data"] == "synthetic" and beam.source["split_order"] == "assign_splits"
    assert beam.counts == memory.counts
    pd.testing.assert_frame_equal(_written(beam), _written(memory))
    _same_schema(beam.schema, memory.schema)
    assert sorted(os.listdir(beam.directory)) == sorted(os.listdir(memory.directory))  # no Parquet copy left
    assert not [name for name in os.listdir(tmp_path / "beam") if name.startswith(".")]


@pytest.mark.slow
def test_vocabulary_size_and_minimum_count_on_both_engines_and_reuse_checks_them(tmp_path, tiny_csv, tiny_frame):
    settings = {"vocabulary_size": 20, "vocabulary_min_count": 9}
    beam = prepare_data(tiny_config(str(tmp_path / "beam"), tiny_csv, **settings))
    memory = prepare_data(tiny_config(str(tmp_path / "memory"), tiny_csv, data_engine="in_memory", **settings))
    assert (beam.source["engine"], memory.source["engine"]) == ("beam", "in_memory")
    _same_schema(beam.schema, memory.schema)
    train = _written(beam)
    train = train[train["split"] == 0]
    for name in ("region", "channel", "merchant"):
        counts = collections.Counter(value for value in train[name] if value)  # "" = absent (missing)
        reference = sorted((v for v, c in counts.items() if c >= 9), key=lambda v: (-counts[v], v))[:20]
        assert {f.name: f for f in beam.schema.features}[name].vocabulary == tuple(reference)
    merchant = {f.name: f for f in beam.schema.features}["merchant"].vocabulary
    assert len(merchant) < 20 or min(collections.Counter(train["merchant"])[v] for v in merchant) >= 9
    assert len(set(tiny_frame["merchant"].dropna())) > len(merchant)  # some values share the OOV bucket
    with pytest.raises(DataError, match=r"prepared with other settings \(vocabulary_min_count\)"):
        prepare_data(tiny_config(str(tmp_path / "beam"), tiny_csv, vocabulary_size=20))
    assert prepare_data(tiny_config(str(tmp_path / "beam"), tiny_csv, **settings)).schema == beam.schema  # reused


@pytest.mark.slow
def test_prepared_data_is_reused_only_if_it_skipped_no_more_rows_than_now_allowed(tmp_path):
    path = write_csv(good_frame(), tmp_path / "d.csv", BAD_CELLS)
    out = str(tmp_path / "run")
    first = prepare_data(RunConfig(data=path, label="target", output_dir=out, max_bad_rows=5))
    assert first.bad_rows.skipped == 3
    again = prepare_data(RunConfig(data=path, label="target", output_dir=out, max_bad_rows=3))
    assert again.counts == first.counts and again.bad_rows == first.bad_rows
    with pytest.raises(DataError, match="prepared skipping 3 bad rows, more than --max-bad-rows 2; use a new "
                                        "--output-dir or --max-bad-rows 3"):
        prepare_data(RunConfig(data=path, label="target", output_dir=out, max_bad_rows=2))
    # Data prepared before the bad rows and vocabulary settings were recorded is still reused.
    source_path = os.path.join(out, "data", "source.json")
    source = json.load(open(source_path))
    for key in ("bad_rows", "vocabulary_size", "vocabulary_min_count"):
        source.pop(key)
    json.dump(source, open(source_path, "w"))
    assert prepare_data(RunConfig(data=path, label="target", output_dir=out)).bad_rows is None


@pytest.mark.slow
def test_run_json_records_the_skipped_rows(tmp_path):
    from trainer.layout import read_run_json
    from trainer.pipeline import train_and_export

    path = write_csv(good_frame(), tmp_path / "d.csv", BAD_CELLS)
    config = tiny_config(str(tmp_path / "run"), path, epochs=1, max_bad_rows=3)
    summary = train_and_export(config, values={"model_family": "neural", "body": "mlp"})
    run = read_run_json(config.output_dir)
    assert run["bad_rows"]["skipped"] == 3 and run["bad_rows"]["limit"] == 3
    assert [line.split(": ", 1)[0] for line in run["bad_rows"]["first"]] == \
        [f"{path} line {row + 2}" for row in BAD_IDS]
    assert run["config"]["max_bad_rows"] == 3
    assert sum(map(sum, summary.class_counts.values())) == 2000 - 3
