"""The schema the data step's accumulators (`beam_stats.TrainStats`) infer, against pandas and a Counter,
and its tensorflow_metadata form."""

import collections

import numpy as np
import pandas as pd
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from tests.conftest import schema_of
from trainer.data.beam_stats import TrainStats
from trainer.data.ingest import validate
from trainer.data.schema import load_schema, save_schema, to_metadata_proto_text


def test_inferred_statistics_match_pandas(tiny_frame):
    frame = validate(tiny_frame, "target", None)
    schema = schema_of(frame.features, frame.label_name)
    by_name = {f.name: f for f in schema.features}
    assert np.allclose(by_name["x4"].quantiles, np.nanquantile(frame.features["x4"], np.linspace(0, 1, 129)))
    x4 = frame.features["x4"]
    assert by_name["x4"].kind == "numeric"
    assert np.isclose(by_name["x4"].mean, x4.mean())
    assert np.isclose(by_name["x4"].std, x4.std(ddof=0))
    assert np.isclose(by_name["x4"].missing_fraction, x4.isna().mean())
    region = by_name["region"]
    assert region.kind == "categorical"
    counts = frame.features["region"].value_counts()
    assert set(region.vocabulary) == set(counts.index)
    assert region.vocabulary[0] == counts.idxmax()


def test_constant_column_gets_unit_std():
    schema = schema_of(pd.DataFrame({"c": [2.0, 2.0, 2.0]}), "y")
    assert schema.features[0].std == 1.0


def test_json_round_trip_and_metadata_proto(tmp_path, tiny_frame):
    frame = validate(tiny_frame, "target", None)
    schema = schema_of(frame.features, frame.label_name)
    save_schema(schema, str(tmp_path))
    assert load_schema(str(tmp_path)) == schema
    proto = text_format.Parse(to_metadata_proto_text(schema), schema_pb2.Schema())
    types = {f.name: f.type for f in proto.feature}
    assert types["x0"] == schema_pb2.FLOAT and types["region"] == schema_pb2.BYTES
    assert types["target"] == schema_pb2.INT
    assert (tmp_path / "schema.pbtxt").read_text() == to_metadata_proto_text(schema)


def _reference_vocabulary(values, size, min_count):
    """The vocabulary rule from a Counter: count >= min_count, most frequent first, ties by value, top size."""
    counts = collections.Counter(v for v in values if v is not None)
    kept = sorted((value for value, count in counts.items() if count >= min_count), key=lambda v: (-counts[v], v))
    return tuple(kept[:size])


@pytest.mark.parametrize("size,min_count", [(1000, 1), (4, 1), (1000, 5), (3, 7), (50, 1000)])
def test_vocabulary_top_k_and_minimum_count_from_one_and_from_merged_beam_statistics(size, min_count):
    rng = np.random.default_rng(5)
    # Zipf-like counts with ties: value v{i} drawn with weight 1/(i//2 + 1).
    names = np.array([f"v{i:02d}" for i in range(40)], dtype=object)
    weights = 1.0 / (np.arange(40) // 2 + 1)
    values = rng.choice(names, size=3000, p=weights / weights.sum()).astype(object)
    values[rng.random(3000) < 0.05] = None
    reference = _reference_vocabulary(values, size, min_count)
    assert 0 < len(reference) or min_count == 1000
    frame = pd.DataFrame({"c": pd.Series(values, dtype=object), "x": rng.normal(size=3000)})
    assert schema_of(frame, "y", size, min_count).features[0].vocabulary == reference
    stats = TrainStats()
    for chunk in np.array_split(np.arange(3000), 7):  # per-range accumulators, merged
        part = TrainStats()
        part.add(chunk.size, {"x": frame["x"].to_numpy()[chunk]}, {"c": values[chunk]})
        stats.merge(part)
    assert stats.schema([("c", "categorical"), ("x", "numeric")], "y", size, min_count).features[0].vocabulary \
        == reference
    if (size, min_count) == (1000, 1):  # the defaults keep today's vocabulary
        assert schema_of(frame, "y").features[0].vocabulary == reference


def test_a_trimmed_vocabulary_round_trips_through_schema_json_and_pbtxt(tmp_path, tiny_frame):
    frame = validate(tiny_frame, "target", None)
    schema = schema_of(frame.features, frame.label_name, vocabulary_size=10, vocabulary_min_count=12)
    merchant = {f.name: f for f in schema.features}["merchant"]
    counts = frame.features["merchant"].value_counts()
    assert merchant.vocabulary == _reference_vocabulary(frame.features["merchant"], 10, 12)
    assert len(merchant.vocabulary) == 10 and counts[list(merchant.vocabulary)].min() >= 12
    save_schema(schema, str(tmp_path))
    assert load_schema(str(tmp_path)) == schema
    proto = text_format.Parse((tmp_path / "schema.pbtxt").read_text(), schema_pb2.Schema())
    domain = {f.name: tuple(f.string_domain.value) for f in proto.feature}
    assert domain["merchant"] == merchant.vocabulary


def test_vocabulary_ties_go_by_value_and_rare_values_stay_out():
    column = pd.Series(["b", "a", "d", "b", "a", "c", "c", None, "e", "e", "e"], dtype=object)
    frame = pd.DataFrame({"c": column})
    assert schema_of(frame, "y").features[0].vocabulary == ("e", "a", "b", "c", "d")
    assert schema_of(frame, "y", vocabulary_min_count=2).features[0].vocabulary == ("e", "a", "b", "c")
    assert schema_of(frame, "y", vocabulary_size=2, vocabulary_min_count=2).features[0].vocabulary == ("e", "a")
    stats = TrainStats()
    stats.add(len(column), {}, {"c": column.to_numpy()})
    assert stats.schema([("c", "categorical")], "y", 2, 2).features[0].vocabulary == ("e", "a")
