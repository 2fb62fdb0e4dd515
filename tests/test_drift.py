"""Skew and drift: TFDV's comparator test vectors, mergeable statistics, the drift command end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import statistics_pb2

from evaluation import comparators
from trainer.data import statistics


def _feature(text: str) -> statistics_pb2.FeatureNameStatistics:
    return text_format.Parse(text, statistics_pb2.FeatureNameStatistics())


def _numeric(buckets: str, num_nan: int = 0) -> statistics_pb2.FeatureNameStatistics:
    return _feature(f"name: 'float' type: FLOAT num_stats {{ common_stats {{}} histograms {{ num_nan: {num_nan} "
                    f"{buckets} type: STANDARD }} }}")


def _tokens(tokens: dict[str, float]) -> statistics_pb2.FeatureNameStatistics:
    """TFDV's GetFeatureNameStatisticsWithTokens (metrics_test.cc)."""
    feature = _feature("name: 'bar' type: STRING string_stats { common_stats { num_missing: 0 max_num_values: 1 } }")
    feature.string_stats.unique = len(tokens)
    for label, count in tokens.items():
        feature.string_stats.rank_histogram.buckets.add(label=label, sample_count=count)
    return feature


# metrics_test.cc: GetLInftyDistanceTests and GetNormalizedAbsDifferenceTests.
L_INFINITY = [({}, {}, 0.0), ({"hello": 0.1, "world": 0.9}, {"hello": 0.3, "world": 0.7}, 0.2),
              ({"b": 0.9, "c": 0.1}, {"a": 0.3, "b": 0.7}, 0.3), ({"a": 0.3, "b": 0.7}, {"b": 0.9, "c": 0.1}, 0.3)]
NORMALIZED_ABS = [({}, {}, 0.0), ({"hello": 0.1, "world": 0.9}, {"hello": 0.3, "world": 0.7}, 0.1),
                  ({"hello": 1.0, "world": 5.0}, {"hello": 10.0, "world": 50.0}, 0.68181818)]

# metrics_test.cc: JensenShannonDivergence tests (dataset 1 buckets, dataset 2 buckets, expected).
JSD = {
    "different bucket boundaries": (
        "buckets { low_value: 1.0 high_value: 2.0 sample_count: 2.0 } "
        "buckets { low_value: 2.0 high_value: 3.0 sample_count: 2.0 }",
        "buckets { low_value: 2.0 high_value: 4.0 sample_count: 2.0 } "
        "buckets { low_value: 4.0 high_value: 6.0 sample_count: 2.0 }", 0.65563906222),
    "no overlap": (
        "buckets { low_value: 0.0 high_value: 1.0 sample_count: 2.0 } "
        "buckets { low_value: 1.0 high_value: 2.0 sample_count: 2.0 }",
        "buckets { low_value: 3.0 high_value: 4.0 sample_count: 2.0 } "
        "buckets { low_value: 4.0 high_value: 6.0 sample_count: 2.0 }", 1.0),
    "one has all values in one bucket": (
        "buckets { low_value: 1.0 high_value: 1.0 sample_count: 4.0 }",
        "buckets { low_value: 2.0 high_value: 4.0 sample_count: 2.0 } "
        "buckets { low_value: 4.0 high_value: 6.0 sample_count: 2.0 }", 1.0),
    "one bucket vs many": (
        "buckets { low_value: 10 high_value: 10 sample_count: 21 }",
        "buckets { low_value: 0 high_value: 4 sample_count: 150 } buckets { low_value: 4 high_value: 12 "
        "sample_count: 200 } buckets { low_value: 12 high_value: 20 sample_count: 20 }", 1.0),
    "multiple point bins, partial overlap": (
        "buckets { low_value: 0.0 high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: 1.0 high_value: 1.0 sample_count: 1.0 }",
        "buckets { low_value: 0.0 high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: 2.0 high_value: 2.0 sample_count: 1.0 }", 0.5),
    "mix of point and non-point boundaries": (
        "buckets { low_value: 0.0 high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: 1.0 high_value: 2.0 sample_count: 1.0 }",
        "buckets { low_value: 1.0 high_value: 1.0 sample_count: 1.0 } "
        "buckets { low_value: 2.0 high_value: 2.0 sample_count: 1.0 }", 1.0),
    "infinite bin boundaries": (
        "buckets { low_value: -inf high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: inf high_value: inf sample_count: 1.0 }",
        "buckets { low_value: -inf high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: inf high_value: inf sample_count: 1.0 }", 1.0),
}


def test_tfdv_comparator_vectors():
    for training, serving, expected in L_INFINITY:
        assert comparators.l_infinity(training, serving)[1] == pytest.approx(expected, abs=1e-5)
    for training, serving, expected in NORMALIZED_ABS:
        assert comparators.normalized_abs_difference(training, serving)[1] == pytest.approx(expected, abs=1e-5)
    for name, (first, second, expected) in JSD.items():
        value = comparators.jensen_shannon(_numeric(first), _numeric(second))
        assert value == pytest.approx(expected, abs=1e-5), name
    with_nan = comparators.jensen_shannon(
        _numeric("buckets { low_value: 1.0 high_value: 2.0 sample_count: 3.0 }", num_nan=1),
        _numeric("buckets { low_value: 1.0 high_value: 2.0 sample_count: 4.0 }"))
    assert with_nan == pytest.approx(0.13792538096, abs=1e-5)
    only_nan = _numeric("", num_nan=1)
    assert comparators.jensen_shannon(only_nan, only_nan) == pytest.approx(1.0)  # NaN is not equal to itself
    rank = comparators.jensen_shannon(_tokens({"b": 2.0, "a": 2.0, "c": 1.0}),
                                      _tokens({"a": 2.0, "Z": 1.0, "Y": 1.0, "X": 1.0}))
    assert rank == pytest.approx(0.6, abs=1e-5)
    for empty in ("", "buckets { low_value: 0 high_value: 4 sample_count: 0 }"):
        with pytest.raises(comparators.ComparisonError):
            comparators.jensen_shannon(_numeric(empty), _numeric("buckets { low_value: 0 high_value: 4 "
                                                                 "sample_count: 10 }"))
    with pytest.raises(comparators.ComparisonError):
        comparators.jensen_shannon(_tokens({"a": 1.0}), _numeric("buckets { low_value: 1 high_value: 2 "
                                                                  "sample_count: 4 }"))
    # validation_api_test.py: drift of {a: 1, b: 1} against the previous span's {a: 3, b: 1}; skew of
    # serving {a: 3, b: 1, c: 6} against training {a: 1, b: 2, c: 7}.
    assert comparators.l_infinity({"a": 1, "b": 1}, {"a": 3, "b": 1}) == ("b", pytest.approx(0.25))
    assert comparators.l_infinity({"a": 1, "b": 2, "c": 7}, {"a": 3, "b": 1, "c": 6}) == ("a", pytest.approx(0.2))


def _frame(rows: int, seed: int) -> pd.DataFrame:
    """Numbers with missing values, zeros and infinities; text with missing values and ties."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"amount": np.exp(rng.normal(size=rows)), "count": rng.integers(0, 4, rows).astype(float),
                          "color": rng.choice(["red", "green", "blue", "teal"], rows, p=[0.4, 0.3, 0.2, 0.1])})
    frame.loc[rng.random(rows) < 0.05, "amount"] = np.nan
    frame.loc[rng.random(rows) < 0.01, "count"] = np.inf
    frame.loc[rng.random(rows) < 0.05, "color"] = None
    return frame


def _assert_same(first, second) -> None:
    """Two protos equal up to float rounding (merge order changes the last bits of a mean)."""
    from google.protobuf import json_format

    def close(a, b, where):
        if isinstance(a, dict):
            assert a.keys() == b.keys(), where
            for key in a:
                close(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, list):
            assert len(a) == len(b), where
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                close(x, y, f"{where}[{index}]")
        elif isinstance(a, float):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-12), where
        else:
            assert a == b, where

    close(json_format.MessageToDict(first), json_format.MessageToDict(second), "")


def _by_name(proto) -> dict:
    return {feature.path.step[0]: feature for feature in proto.datasets[0].features}


def test_statistics_merge_agree_with_numpy_and_round_trip(tmp_path):
    from evaluation.drift_data import Reading, compute_statistics

    frame = _frame(3000, 3)
    whole = statistics.to_proto(statistics.DataStatistics().add(statistics.frame_columns(frame)))
    merged = statistics.DataStatistics()
    for part in np.array_split(np.arange(len(frame)), 3):  # three accumulators merged, as Beam's combiner does
        merged.merge(statistics.DataStatistics().add(statistics.frame_columns(frame.iloc[part])))
    _assert_same(statistics.to_proto(merged), whole)
    for index, part in enumerate(np.array_split(np.arange(len(frame)), 3)):  # a file in three parts, by Beam
        frame.iloc[part].to_csv(tmp_path / f"part-{index}.csv", index=False)
    frame.to_csv(tmp_path / "whole.csv", index=False)
    reading = Reading({"amount": "numeric", "count": "numeric", "color": "categorical"})
    _assert_same(statistics.to_proto(compute_statistics(str(tmp_path / "part-*.csv"), reading)),
                 statistics.to_proto(compute_statistics(str(tmp_path / "whole.csv"), reading)))
    _assert_same(statistics.to_proto(compute_statistics(str(tmp_path / "whole.csv"), reading)), whole)

    features = _by_name(whole)
    amount, values = features["amount"].num_stats, frame["amount"].dropna().to_numpy()
    assert amount.common_stats.num_missing == frame["amount"].isna().sum()
    assert (amount.mean, amount.std_dev) == (pytest.approx(values.mean()), pytest.approx(values.std()))
    assert (amount.min, amount.median, amount.max) == (values.min(), pytest.approx(np.median(values)), values.max())
    standard, quantiles = amount.histograms
    counts, edges = np.histogram(values, 10)
    assert [b.sample_count for b in standard.buckets] == pytest.approx(counts)
    assert [b.low_value for b in standard.buckets] == pytest.approx(edges[:-1])
    assert [b.high_value for b in quantiles.buckets] == pytest.approx(np.quantile(values, np.linspace(0.1, 1, 10)))
    assert [b.sample_count for b in quantiles.buckets] == pytest.approx([values.size / 10] * 10)
    count = features["count"].num_stats
    finite = frame["count"][np.isfinite(frame["count"])]
    assert count.num_zeros == (finite == 0).sum() and count.max == np.inf
    assert count.common_stats.num_non_missing == len(frame)  # an infinite value is present
    assert count.histograms[0].buckets[-1].low_value == np.inf
    assert count.histograms[0].buckets[-1].sample_count == np.isinf(frame["count"]).sum()
    color = features["color"].string_stats
    expected = frame["color"].value_counts()
    assert color.unique == expected.size and color.common_stats.num_missing == frame["color"].isna().sum()
    assert [(v.value, v.frequency) for v in color.top_values] == list(expected.items())
    assert [(b.label, b.sample_count) for b in color.rank_histogram.buckets] == list(expected.items())

    for proto in (whole, statistics.to_proto(merged)):
        assert text_format.Parse(text_format.MessageToString(proto), type(proto)()) == proto
        assert type(proto).FromString(proto.SerializeToString()) == proto
    statistics.save_statistics(whole, str(tmp_path / "stats.pb"))
    assert statistics.load_statistics(str(tmp_path / "stats.pb")) == whole
    assert statistics.load_statistics(str(tmp_path / "stats.pbtxt")) == whole


SIGNAL_SHIFT = 2.0  # x0 carries the label's signal: moves the score distribution, not only x0


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> dict[str, str]:
    """CSV files of 3,000 synthetic rows: a reference, an unshifted sample, one with x0 and channel shifted, 100 rows."""
    from trainer.data.synthetic import make_synthetic

    directory = tmp_path_factory.mktemp("traffic")
    shifted = make_synthetic(2700, 300, seed=23)
    shifted["x0"] += SIGNAL_SHIFT
    moved = shifted["channel"].notna().to_numpy() & (np.random.default_rng(5).random(len(shifted)) < 0.5)
    shifted.loc[moved, "channel"] = "app"
    frames = {"reference": make_synthetic(2700, 300, seed=21), "unshifted": make_synthetic(2700, 300, seed=22),
              "shifted": shifted, "small": make_synthetic(90, 10, seed=24)}
    paths = {}
    for name, frame in frames.items():
        paths[name] = str(directory / f"{name}.csv")
        frame.to_csv(paths[name], index=False)
    return paths


def _drift(capsys, *args: str) -> tuple[int, list[str], dict]:
    """Runs the command in this process: (exit status, stdout lines, drift.json by comparison name)."""
    import json
    import os

    from evaluation.drift import main

    output = args[args.index("--output") + 1]
    status = main(list(args))
    lines = capsys.readouterr().out.splitlines()
    with open(os.path.join(output, "drift.json")) as handle:
        features = json.load(handle)["features"]
    # One entry per feature; a feature with two comparators is keyed `name/TYPE` for each.
    return status, lines, {f["name"] if len(f["measurements"]) == 1 else f"{f['name']}/{m['type']}": {**f, **m}
                           for f in features for m in f["measurements"]}


def _flagged(comparisons: dict) -> set[str]:
    return {name for name, c in comparisons.items() if c["status"] == "breach"}


def test_drift_flags_exactly_the_shifted_features(traffic, tmp_path, capsys):
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    reference = ("--reference", traffic["reference"], "--label", "target")
    status, lines, comparisons = _drift(capsys, *reference, "--data", traffic["shifted"], "--output",
                                        str(tmp_path / "shifted"))
    assert status == 1 and _flagged(comparisons) == {"x0", "channel"}
    assert sorted(line.split(":")[0] for line in lines) == ["channel", "x0"]
    assert len(comparisons) == 12 + 3 + 1  # every feature, and the label rate
    anomalies = anomalies_pb2.Anomalies.FromString((tmp_path / "shifted" / "anomalies.pb").read_bytes())
    assert set(anomalies.anomaly_info) == {"x0", "channel"}
    assert len(anomalies.drift_skew_info) == len(comparisons)  # breach or not
    assert all(info.drift_measurements for info in anomalies.drift_skew_info)
    assert text_format.Parse((tmp_path / "shifted" / "anomalies.pbtxt").read_text(), anomalies_pb2.Anomalies()) \
        == anomalies

    status, lines, comparisons = _drift(capsys, *reference, "--data", traffic["unshifted"], "--output",
                                        str(tmp_path / "unshifted"))
    assert (status, lines, _flagged(comparisons)) == (0, [], set())
    # The reference's statistics written by that run, as the reference: the same distances.
    _, _, again = _drift(capsys, "--reference", str(tmp_path / "unshifted" / "reference_statistics.pb"), "--label",
                         "target", "--data", traffic["unshifted"], "--output", str(tmp_path / "from-statistics"))
    assert {name: c["value"] for name, c in again.items()} == {name: c["value"] for name, c in comparisons.items()}
    status, lines, comparisons = _drift(capsys, *reference, "--data", traffic["small"], "--output",
                                        str(tmp_path / "small"))
    assert (status, lines) == (0, [])
    assert {c["status"] for c in comparisons.values()} == {"too few rows to judge"}


def test_drift_thresholds_come_from_the_schema(traffic, tmp_path, capsys):
    from tensorflow_metadata.proto.v0 import schema_pb2

    (tmp_path / "schema.pbtxt").write_text(
        'feature { name: "x0" drift_comparator { jensen_shannon_divergence { threshold: 0.99 } } }\n'
        'feature { name: "channel" drift_comparator { infinity_norm { threshold: 0.5 } '
        'normalized_abs_difference { threshold: 0.01 } } }\n')
    status, lines, comparisons = _drift(capsys, "--reference", traffic["reference"], "--label", "target", "--data",
                                        traffic["shifted"], "--schema", str(tmp_path / "schema.pbtxt"),
                                        "--output", str(tmp_path / "out"))
    assert status == 1 and len(lines) == 1 and lines[0].startswith("channel: NORMALIZED_ABSOLUTE_DIFFERENCE")
    assert comparisons["channel/L_INFTY"]["status"] == "ok" and "channel" not in comparisons  # one entry, two
    assert comparisons["channel/NORMALIZED_ABSOLUTE_DIFFERENCE"]["status"] == "breach"
    assert comparisons["x0"]["threshold"] == 0.99 and comparisons["x0"]["status"] == "ok"
    used = text_format.Parse((tmp_path / "out" / "schema.pbtxt").read_text(), schema_pb2.Schema())
    by_name = {feature.name: feature.drift_comparator for feature in used.feature}
    assert by_name["channel"].infinity_norm.threshold == 0.5
    assert by_name["x1"].jensen_shannon_divergence.threshold == pytest.approx(0.1)  # the default
    assert by_name["x1"].jensen_shannon_divergence.source.type == schema_pb2.HistogramSelection.QUANTILES


def test_drift_bad_input_is_one_line(traffic, tmp_path, capsys):
    from evaluation.drift import main

    assert main(["--reference", traffic["reference"], "--data", str(tmp_path / "none*.csv"),
                 "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    (tmp_path / "broken.pb").write_bytes(b"\xff\x00 not a proto")
    assert main(["--reference", str(tmp_path / "broken.pb"), "--data", traffic["small"],
                 "--output", str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_drift_of_a_served_run_compares_its_scores(tiny_run, traffic, tmp_path, capsys):
    run = tiny_run[0].output_dir
    reference = ("--run", run, "--reference", traffic["reference"])
    status, lines, comparisons = _drift(capsys, *reference, "--data", traffic["shifted"], "--output",
                                        str(tmp_path / "shifted"))
    assert status == 1
    assert _flagged(comparisons) == {"x0", "channel", "served_model.score", "served_model.predicted_positive_rate"}
    assert comparisons["label_rate.target"]["status"] == "ok"
    status, lines, comparisons = _drift(capsys, *reference, "--data", traffic["unshifted"], "--output",
                                        str(tmp_path / "unshifted"))
    assert (status, _flagged(comparisons)) == (0, set())
    # Skew against the training statistics the data step kept; the scores' reference is the held-out splits.
    status, lines, comparisons = _drift(capsys, "--run", run, "--data", traffic["unshifted"], "--output",
                                        str(tmp_path / "skew"))
    assert (status, _flagged(comparisons)) == (0, set())
    train = statistics.load_statistics(f"{run}/data/train_statistics.pb").datasets[0]
    assert comparisons["x1"]["reference_n"] == _by_name_dataset(train)["x1"].num_stats.common_stats.num_non_missing
    assert comparisons["served_model.score"]["reference_n"] > 0
    # A run made before the statistics were kept: they are computed from its training split's records.
    import shutil

    old_run = tmp_path / "old-run"
    shutil.copytree(run, old_run)
    (old_run / "data" / "train_statistics.pb").unlink()
    _, _, recomputed = _drift(capsys, "--run", str(old_run), "--data", traffic["unshifted"], "--no-score",
                              "--output", str(tmp_path / "old"))
    for name, comparison in recomputed.items():  # the records hold float32 values: equal up to rounding
        assert comparison["value"] == pytest.approx(comparisons[name]["value"], abs=1e-3), name


def _by_name_dataset(dataset) -> dict:
    return {feature.path.step[0]: feature for feature in dataset.features}


def _write_request_log(path: str, frame: pd.DataFrame, version_dir: str) -> None:
    """The rows as the server's request logger writes them: half Predict on predict_features, half Classify."""
    import tensorflow as tf
    from tensorflow_serving.config import logging_config_pb2

    from serving import prediction_log
    from tests.conftest import serialized_example
    from trainer.data.beam_files import frame_records

    features = frame.drop(columns=["target"])
    inputs = {name: (features[name].to_numpy(np.float32) if features[name].dtype.kind == "f"
                     else features[name].fillna("").to_numpy(object).astype(bytes)) for name in features}
    scores = tf.saved_model.load(version_dir).signatures["predict_features"](
        **{name: tf.constant(values) for name, values in inputs.items()})["scores"].numpy()
    half = len(frame) // 2
    predicts = prediction_log.rest_predict("imbalance", 1, "predict_features",
                                           {name: values[:half] for name, values in inputs.items()},
                                           {"scores": scores[:half]})
    examples = [serialized_example(row) for row in features.iloc[half:].to_dict(orient="records")]
    classifies = prediction_log.rest_classify("imbalance", 1, "classification", examples,
                                              [[("0", 1.0 - s), ("1", s)] for s in scores[half:].tolist()])
    sampling = logging_config_pb2.SamplingConfig(sampling_rate=1.0)
    records = [*prediction_log.records(prediction_log.Entry("predict", lambda: predicts, 0), sampling),
               *prediction_log.records(prediction_log.Entry("classify", lambda: classifies, 0), sampling)]
    with open(path, "wb") as handle:
        handle.write(frame_records(records))


def test_drift_reads_request_logs(tiny_run, traffic, tmp_path, capsys):
    """Logged requests give the statistics of the same rows read from a file, and the scores the model gave."""
    config, weighted, _ = tiny_run
    _write_request_log(str(tmp_path / "requests-0001.tfrecord"), pd.read_csv(traffic["shifted"]),
                       weighted.version_dir)
    common = ("--run", config.output_dir, "--reference", traffic["reference"])
    status, lines, logged = _drift(capsys, *common, "--logs", str(tmp_path / "requests-*"), "--output",
                                   str(tmp_path / "logs"))
    _, _, read = _drift(capsys, *common, "--data", traffic["shifted"], "--output", str(tmp_path / "files"))
    assert status == 1 and _flagged(logged) == _flagged(read) - {"label_rate.target"}
    for name, comparison in read.items():
        if name != "label_rate.target":
            assert logged[name]["value"] == pytest.approx(comparison["value"], rel=1e-4, abs=1e-6), name
            assert logged[name]["current_n"] == comparison["current_n"], name
    from_logs = _by_name(statistics.load_statistics(str(tmp_path / "logs" / "statistics.pb")))
    from_file = _by_name(statistics.load_statistics(str(tmp_path / "files" / "statistics.pb")))
    assert from_logs["channel"].string_stats == from_file["channel"].string_stats
    assert from_logs["x4"].num_stats.mean == pytest.approx(from_file["x4"].num_stats.mean, rel=1e-6)
