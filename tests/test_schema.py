"""Schema inference against pandas, and its tensorflow_metadata form."""

import numpy as np
import pandas as pd
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from trainer.ingest import validate
from trainer.schema import infer_schema, load_schema, save_schema, to_metadata_proto_text


def test_inferred_statistics_match_pandas(tiny_frame):
    frame = validate(tiny_frame, "target", None)
    schema = infer_schema(frame.features, frame.label_name)
    by_name = {f.name: f for f in schema.features}
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
    schema = infer_schema(pd.DataFrame({"c": [2.0, 2.0, 2.0]}), "y")
    assert schema.features[0].std == 1.0


def test_json_round_trip_and_metadata_proto(tmp_path, tiny_frame):
    frame = validate(tiny_frame, "target", None)
    schema = infer_schema(frame.features, frame.label_name)
    save_schema(schema, str(tmp_path))
    assert load_schema(str(tmp_path)) == schema
    proto = text_format.Parse(to_metadata_proto_text(schema), schema_pb2.Schema())
    types = {f.name: f.type for f in proto.feature}
    assert types["x0"] == schema_pb2.FLOAT and types["region"] == schema_pb2.BYTES
    assert types["target"] == schema_pb2.INT
    assert (tmp_path / "schema.pbtxt").read_text() == to_metadata_proto_text(schema)
