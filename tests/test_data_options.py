"""The data step's options: a built-in dataset on the one (Beam) engine, the retired `--data-engine`, the
vocabulary rule, reusing prepared data, and the bad rows in run.json.

References: the generated frame itself with pandas / NumPy / Counter
statistics of its training rows (`tests.test_beam_pipeline.assert_prepared_as_reference`),
a `collections.Counter` of the training rows' values, and the rows we corrupted ourselves.
"""

from __future__ import annotations

import collections
import json
import os

import pandas as pd
import pytest

from tests.conftest import tiny_config
from tests.test_bad_rows import BAD_CELLS, BAD_IDS, good_frame, write_csv
from trainer.config import ConfigError, RunConfig
from trainer.data.ingest import DataError, builtin_frame
from trainer.data.prepare import prepare_data


def test_the_retired_data_engine_flag_warns_and_a_saved_config_with_it_still_loads(capsys):
    import argparse

    from trainer.cli import add_run_flags, config_from_args

    parser = argparse.ArgumentParser()
    add_run_flags(parser, ("data", "training"))
    args = parser.parse_args(["--data", "x.csv", "--data-engine", "in_memory"])
    assert capsys.readouterr().err == ("warning: --data-engine is retired and ignored: the data step always runs "
                                       "on Beam (docs/design.md §2)\n")
    assert config_from_args(args, ("data", "training")) == RunConfig(data="x.csv")
    assert "data-engine" not in parser.format_help()
    saved = {**RunConfig(data="x.csv").to_dict(), "data_engine": "in_memory"}  # a run.json config from before
    assert RunConfig.from_dict(saved) == RunConfig(data="x.csv")
    assert "data_engine" not in RunConfig().to_dict()
    with pytest.raises(ConfigError, match="unknown config keys: data_engin$"):
        RunConfig.from_dict({"data_engin": "beam"})


def test_data_prepared_by_the_retired_in_memory_engine_is_reused(tmp_path, tiny_csv):
    config = tiny_config(str(tmp_path / "run"), tiny_csv)
    first = prepare_data(config)
    source_path = os.path.join(first.directory, "source.json")
    source = json.load(open(source_path))
    json.dump({**source, "engine": "in_memory"}, open(source_path, "w"))  # as the in-memory step recorded it
    again = prepare_data(config)
    assert again.counts == first.counts and again.schema == first.schema and again.source["engine"] == "in_memory"


def _written(data) -> pd.DataFrame:
    from tests.test_beam_pipeline import split_frame

    frame = split_frame(data.directory, data.schema)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.mark.slow
def test_a_built_in_dataset_goes_through_beam_from_a_parquet_copy_and_leaves_none(tmp_path):
    from tests.test_beam_pipeline import assert_prepared_as_reference

    config = RunConfig(data="synthetic", synthetic_rows=(1500, 120), output_dir=str(tmp_path / "run"))
    data = prepare_data(config)
    assert data.source["data"] == "synthetic" and data.source["split_order"] == "assign_splits"
    raw, _ = builtin_frame("synthetic", None, config.seed, config.synthetic_rows)
    assert_prepared_as_reference(data, raw, config)
    assert sorted(os.listdir(data.directory)) == ["class_counts.json", "schema.json", "schema.pbtxt", "source.json",
                                                  "test", "train", "train_statistics.pb", "train_statistics.pbtxt",
                                                  "validation"]
    assert not [name for name in os.listdir(tmp_path / "run") if name.startswith(".")]  # no Parquet copy left


@pytest.mark.slow
def test_vocabulary_size_and_minimum_count_and_reuse_checks_them(tmp_path, tiny_csv, tiny_frame):
    settings = {"vocabulary_size": 20, "vocabulary_min_count": 9}
    beam = prepare_data(tiny_config(str(tmp_path / "beam"), tiny_csv, **settings))
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
