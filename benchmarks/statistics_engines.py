"""Training statistics: tensorflow-transform's analyzers vs the package's own Beam combiners.

    python -m benchmarks.statistics_engines [--workdir /tmp/stats-engines] [--repeats 2] [--keep]
    python -m benchmarks.statistics_engines one ENGINE TRAIN_GLOB OUT [--beam-pipeline-args ARGS] [--epsilon E]

Per size (531,000 and 132,750 synthetic rows, `benchmarks.data_step
write-csv`), `prepare_data` writes the run directory once (not timed); both
engines then read the same files, the training split's gzipped TFRecord
shards (`data/train/data-*.tfrecord.gz`), so the reading cost is the same
kind on both sides (tfx-bsl's C++ `tf.Example` -> Arrow decoder, one
process, same runner) and only the statistics differ. The package computes
its statistics inside the data step's write pass from batches it parsed
anyway, so no statistics-only path exists there; the `package` engine is a
statistics-only pipeline of its own pieces: `beam_files.plan_ranges` /
`read_range`, `beam_stats.TrainStats` added per batch and merged per bundle
(`beam_ingest._PerBundle`) and by `beam_ingest._MergeFn`, then
`TrainStats.schema` (the Schema the model's layers are built from).

Engines (each `one` run is a fresh interpreter; imports are done before the
clock starts; the clock covers the pipeline and writing its result):

- `read`: the same pipeline without statistics (counts rows): the floor.
- `package`: as above; per numeric feature count, missing fraction, mean,
  variance, 129 quantiles (levels i/128, exact up to 4,096 values then a
  KLL-style sketch); per categorical feature the exact value counts, top
  1,000 with min count 1.
- `tft`: `tft_beam.AnalyzeDataset` over `tfxio.TFExampleRecord` (features
  as `VarLenFeature`s, missing = absent) with a `preprocessing_fn` of
  `tft.size`, `tft.mean`, `tft.var`, `tft.min`, `tft.max`,
  `tft.quantiles(num_buckets=128, epsilon)` (128 buckets = 127 interior
  boundaries at levels i/128; min and max make the 129) and
  `tft.vocabulary(top_k=1000, frequency_threshold=1, store_frequency=True)`;
  then `tft_beam.WriteTransformFn`. Values are read back (after the clock)
  by running the transform graph on one row, and from the vocabulary files.

Peak RSS: the driver's VmHWM; workers': the largest VmHWM of its descendant
processes, sampled every 0.1 s from /proc (their own, unlike `ru_maxrss`).
Values are compared against exact NumPy on the same training rows (float32
as stored, in float64): mean/variance relative error, quantiles' max rank
error (distance in ranks from NumPy's position p*(n-1), over n), vocabularies
(values, counts, order). Load averages are recorded before and after every
run (2 shared cores: compare ratios). Writes
`benchmarks/results/statistics_engines.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from trainer.layout import DATA_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "statistics_engines.json")
SIZES = {"531k": (500_000, 31_000), "133k": (125_000, 7_750)}
TWO_WORKERS = "--direct_num_workers=2 --direct_running_mode=multi_processing"
TOP_K, MIN_COUNT, BUCKETS = 1000, 1, 128


def loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def _vm_hwm(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


class DescendantPeak(threading.Thread):
    """The largest VmHWM (MiB) of this process's descendants, sampled."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._done = 0, threading.Event()

    def run(self):
        me = os.getpid()
        while not self._done.wait(0.1):
            parents = {}
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/stat") as handle:
                            parents[int(pid)] = int(handle.read().rsplit(")", 1)[1].split()[1])
                    except (OSError, IndexError, ValueError):
                        pass
            for pid in parents:
                p = pid
                while p in parents and p not in (0, 1, me):
                    p = parents[p]
                if p == me and pid != me:
                    self.peak = max(self.peak, _vm_hwm(pid))

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


# ---------------------------------------------------------------- the package's engine (and the read floor)

def _columns(batch, features):
    """Arrow batch of one-value lists (null = missing) -> numeric float64 (NaN) / categorical object (None)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    numeric, categorical = {}, {}
    n = batch.num_rows
    for name, kind in features:
        column = batch.column(name)
        present = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False) > 0
        values = column.flatten()
        if kind == "numeric":
            out = np.full(n, np.nan)
            out[present] = values.to_numpy(zero_copy_only=False)
            numeric[name] = out
        else:
            out = np.full(n, None, dtype=object)
            out[present] = values.cast(pa.string()).to_numpy(zero_copy_only=False)
            categorical[name] = out
    return numeric, categorical


def _package_pipeline(pattern: str, features, pipeline, stats: bool, out: str):
    import apache_beam as beam

    from trainer.data.beam_files import plan_ranges, read_range
    from trainer.data.beam_ingest import _MergeFn, _PerBundle
    from trainer.data.beam_stats import TrainStats

    class Add(_PerBundle):
        def process(self, part):
            accumulator = TrainStats()
            for _, batch in read_range(part):
                if stats:
                    accumulator.add(batch.num_rows, *_columns(batch, features))
                else:
                    accumulator.rows += batch.num_rows
            self._keep(accumulator)
            return ()

    def hand_back(merged):
        result = merged.schema(features, "target", TOP_K, MIN_COUNT) if stats else None
        with open(out, "wb") as handle:
            pickle.dump({"rows": merged.rows, "schema": result,
                         "vocabulary_counts": merged.vocabularies}, handle)

    _ = (pipeline | beam.Create(plan_ranges(pattern)) | beam.ParDo(Add())
         | beam.CombineGlobally(_MergeFn(TrainStats)) | beam.Map(hand_back))


# ---------------------------------------------------------------- tensorflow-transform

def _tft_preprocessing_fn(features, epsilon: float):
    import tensorflow as tf
    import tensorflow_transform as tft

    def preprocessing_fn(inputs):
        label = inputs["target"]
        batch = tf.shape(label)[0]
        outputs = {"rows": tf.fill([batch], tft.size(label))}

        def wide(value, dtype):  # outputs may be int64, float32 or string: float64 goes out bit-cast to int64
            value = tf.reshape(tf.cast(value, dtype), [1, -1])
            if dtype == tf.float64:
                value = tf.bitcast(value, tf.int64)
            return tf.tile(value, [batch, 1])

        for name, kind in features:
            x = inputs[name]
            outputs[f"{name}__count"] = wide(tft.size(x), tf.int64)
            if kind == "numeric":
                outputs[f"{name}__mean"] = wide(tft.mean(x, output_dtype=tf.float64), tf.float64)
                outputs[f"{name}__var"] = wide(tft.var(x, output_dtype=tf.float64), tf.float64)
                outputs[f"{name}__min"] = wide(tft.min(x), tf.float64)
                outputs[f"{name}__max"] = wide(tft.max(x), tf.float64)
                outputs[f"{name}__quantiles"] = wide(tft.quantiles(x.values, BUCKETS, epsilon), tf.float64)  # dense only
            else:
                path = tft.vocabulary(x, top_k=TOP_K, frequency_threshold=MIN_COUNT,
                                      vocab_filename=f"vocabulary_{name}", store_frequency=True)
                outputs[f"{name}__vocabulary"] = wide(tf.strings.length(path), tf.int64)
        return outputs

    return preprocessing_fn


def _tft_pipeline(pattern: str, features, pipeline, epsilon: float, out_dir: str, temp_dir: str):
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    from tfx_bsl.public import tfxio

    spec = {"target": tf.io.FixedLenFeature([], tf.int64)}
    for name, kind in features:
        spec[name] = tf.io.VarLenFeature(tf.float32 if kind == "numeric" else tf.string)
    from tensorflow_transform.tf_metadata import schema_utils

    source = tfxio.TFExampleRecord(file_pattern=pattern, schema=schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=temp_dir):
        transform_fn = ((pipeline | source.BeamSource(), source.TensorAdapterConfig())
                        | tft_beam.AnalyzeDataset(_tft_preprocessing_fn(features, epsilon)))
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)


def _tft_values(out_dir: str, features) -> dict:
    """Runs the transform graph on one row: every output is an analyzer's value."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(out_dir)
    row = {"target": tf.constant([0], tf.int64)}
    for name, kind in features:
        value = tf.constant([0.0] if kind == "numeric" else [b"a"])
        row[name] = tf.SparseTensor([[0, 0]], value, [1, 1])
    values = {k: np.asarray(v)[0] for k, v in output.transform_raw_features(row).items()}
    result = {"rows": int(values["rows"])}
    for name, kind in features:
        stats = {"count": int(values[f"{name}__count"][0])}
        if kind == "numeric":
            for key in ("mean", "var", "min", "max"):
                stats[key] = float(values[f"{name}__{key}"].view(np.float64)[0])
            boundaries = values[f"{name}__quantiles"].view(np.float64)
            stats["quantiles"] = [stats["min"], *map(float, boundaries), stats["max"]]
        else:
            with open(output.vocabulary_file_by_name(f"vocabulary_{name}"), "rb") as handle:
                pairs = [line.rstrip(b"\n").split(b" ", 1) for line in handle]
            stats["vocabulary"] = [(value.decode(), int(count)) for count, value in pairs]
        result[name] = stats
    return result


def one(engine: str, pattern: str, out: str, beam_args: str, epsilon: float, features) -> dict:
    """One timed run in this (fresh) process; values to `out` (pickle)."""
    import apache_beam  # noqa: F401  (imports are not the statistics)

    from trainer.beam_runner import make_pipeline
    from trainer.data import beam_files, beam_ingest, beam_stats  # noqa: F401

    if engine == "tft":
        try:
            import tensorflow_transform  # noqa: F401
        except ImportError:
            sys.exit("the tft engine needs tensorflow-transform (not a dependency of the package): "
                     ".venv/bin/pip install tensorflow-transform==1.21.0")
        import tensorflow  # noqa: F401
        import tensorflow_transform.beam  # noqa: F401
    from tfx_bsl.coders import example_coder  # noqa: F401

    after_imports = _vm_hwm()
    work = tempfile.mkdtemp(prefix="stats-engine-")
    watcher = DescendantPeak()
    watcher.start()
    try:
        started = time.perf_counter()
        with make_pipeline(shlex.split(beam_args)) as pipeline:
            if engine == "tft":
                _tft_pipeline(pattern, features, pipeline, epsilon, f"{work}/transform_fn", f"{work}/tmp")
            else:
                _package_pipeline(pattern, features, pipeline, engine == "package", out)
        seconds = time.perf_counter() - started
        driver, workers = _vm_hwm(), watcher.stop()
        if engine == "tft":
            values = _tft_values(f"{work}/transform_fn", features)
            with open(out, "wb") as handle:
                pickle.dump(values, handle)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with open(out, "rb") as handle:
        rows = pickle.load(handle)["rows"]
    return {"engine": engine, "epsilon": epsilon if engine == "tft" else None, "beam_args": beam_args,
            "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "driver_peak_rss_mib": driver, "driver_rss_after_imports_mib": after_imports,
            "worker_peak_rss_mib": workers or None}


# ---------------------------------------------------------------- values against exact NumPy

def exact(pattern: str, features) -> dict:
    import numpy as np

    from trainer.data.beam_files import plan_ranges, read_range

    parts = {name: [] for name, _ in features}
    rows = 0
    for part in plan_ranges(pattern):
        for _, batch in read_range(part):
            rows += batch.num_rows
            numeric, categorical = _columns(batch, features)
            for name, column in {**numeric, **categorical}.items():
                parts[name].append(column)
    result = {"rows": rows}
    for name, kind in features:
        column = np.concatenate(parts[name])
        if kind == "numeric":
            values = np.sort(column[~np.isnan(column)])
            result[name] = {"values": values, "mean": float(values.mean()), "var": float(values.var())}
        else:
            present = column[column != None]  # noqa: E711
            unique, counts = np.unique(present.astype(str), return_counts=True)
            result[name] = {"count": int(present.size), "counts": dict(zip(unique.tolist(), counts.tolist(), strict=True))}
    return result


def rank_error(sorted_values, estimates, levels) -> float:
    """Max over levels of the distance (in ranks / n) from an estimate's rank interval to p * (n - 1)."""
    import numpy as np

    n = sorted_values.size
    below = np.searchsorted(sorted_values, estimates, "left")
    upto = np.searchsorted(sorted_values, estimates, "right")
    low = np.where(upto > below, below, below - 1)
    high = np.where(upto > below, upto - 1, below)
    target = np.asarray(levels) * (n - 1)
    return float(np.max(np.maximum(0, np.maximum(low - target, target - high))) / n)


def compare(truth: dict, package: dict | None, tft: dict | None, features) -> dict:
    import numpy as np

    from trainer.data.schema import top_vocabulary

    levels = np.linspace(0.0, 1.0, 2 * (BUCKETS // 2) + 1)
    out = {"mean_max_rel_error": {}, "var_max_rel_error": {}, "quantile_max_rank_error": {},
           "quantile_interior_max_rank_error": {}, "missing_fraction_max_abs_error": {}, "vocabulary": {}}
    engines = {"package": package and {f.name: f for f in package["schema"].features}, "tft": tft}
    for engine, stats in engines.items():
        if stats is None:
            continue
        rel = lambda a, b: abs(a - b) / abs(b) if b else abs(a)  # noqa: E731
        means, variances, ranks, interior, missing, vocab = [], [], [], [], [], []
        for name, kind in features:
            t = truth[name]
            if kind == "numeric":
                if engine == "package":
                    f = stats[name]
                    mean, var, q = f.mean, f.std ** 2, np.array(f.quantiles)
                    miss = f.missing_fraction
                else:
                    s = stats[name]
                    mean, var, q = s["mean"], s["var"], np.array(s["quantiles"])
                    miss = 1 - s["count"] / tft["rows"]
                means.append(rel(mean, t["mean"]))
                variances.append(rel(var, t["var"]))
                ranks.append(rank_error(t["values"], q, levels))
                interior.append(rank_error(t["values"], q[1:-1], levels[1:-1]))
                missing.append(abs(miss - (1 - t["values"].size / truth["rows"])))
            else:
                expected = top_vocabulary(t["counts"].items(), TOP_K, MIN_COUNT)
                if engine == "package":
                    got = list(stats[name].vocabulary)
                    got_counts = [package["vocabulary_counts"][name][v] for v in got]
                    miss = stats[name].missing_fraction
                else:
                    got = [v for v, _ in stats[name]["vocabulary"]]
                    got_counts = [c for _, c in stats[name]["vocabulary"]]
                    miss = 1 - stats[name]["count"] / tft["rows"]
                missing.append(abs(miss - (1 - t["count"] / truth["rows"])))
                vocab.append({"feature": name, "size": len(expected), "same_values": set(got) == set(expected),
                              "same_order": got == list(expected),
                              "same_counts": got_counts == [t["counts"][v] for v in got]})
        out["mean_max_rel_error"][engine] = max(means)
        out["var_max_rel_error"][engine] = max(variances)
        out["quantile_max_rank_error"][engine] = max(ranks)
        out["quantile_interior_max_rank_error"][engine] = max(interior)
        out["missing_fraction_max_abs_error"][engine] = max(missing)
        out["vocabulary"][engine] = vocab
    return out


# ---------------------------------------------------------------- the driver

def _features(run_dir: str) -> list[tuple[str, str]]:
    with open(os.path.join(run_dir, DATA_DIR, "schema.json")) as handle:
        return [(f["name"], f["kind"]) for f in json.load(handle)["features"]]


def _child(args: list[str]) -> dict:
    load_before = loadavg()
    done = subprocess.run([sys.executable, "-m", "benchmarks.statistics_engines", *args], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        raise RuntimeError(f"{args}: exit {done.returncode}\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(load_before=load_before, load_after=loadavg())
    return result


def _versions() -> dict:
    from importlib import metadata

    names = ("apache-beam", "tensorflow", "tensorflow-transform", "tfx-bsl")
    return {name: metadata.version(name) for name in names}


def _save(results: dict) -> None:
    with open(RESULTS, "w") as handle:
        json.dump(results, handle, indent=1)
        handle.write("\n")


def main_all(args) -> None:
    os.makedirs(args.workdir, exist_ok=True)
    results = {"note": "see benchmarks/statistics_engines.py; seconds include runner start-up, not imports",
               "versions": _versions(), "runs": [], "values": {}}
    runners = {"in-process": "", "2 processes": TWO_WORKERS}
    for size in args.sizes:
        csv, run_dir = f"{args.workdir}/synthetic_{size}.csv", f"{args.workdir}/run_{size}"
        if not os.path.exists(csv):
            subprocess.run([sys.executable, "-m", "benchmarks.data_step", "write-csv", csv, "--rows",
                            *map(str, SIZES[size])], cwd=ROOT, check=True)
        if not os.path.exists(f"{run_dir}/data/schema.json"):
            subprocess.run([sys.executable, "-m", "benchmarks.data_step", "run", csv, "--output-dir", run_dir],
                           cwd=ROOT, check=True)
        features = json.dumps(_features(run_dir))
        pattern = f"{run_dir}/data/train/data-*.tfrecord.gz"
        values = {}
        for repeat in range(args.repeats):
            for runner, beam_args in runners.items():
                if runner != "in-process" and size not in args.multi_process_sizes:
                    continue
                order = ["read", "package", *[f"tft:{e}" for e in args.epsilons]]
                if repeat % 2:
                    order.reverse()  # interleaved, alternating who goes first
                for engine in order:
                    name, _, epsilon = engine.partition(":")
                    out = f"{args.workdir}/{size}-{engine}.pkl"
                    result = _child(["one", name, pattern, out, "--beam-pipeline-args", beam_args,
                                     "--epsilon", epsilon or "0", "--features", features])
                    result.update(size=size, runner=runner, repeat=repeat)
                    results["runs"].append(result)
                    print(json.dumps(result), flush=True)
                    _save(results)
                    if repeat == 0 and runner == "in-process" and name != "read":
                        with open(out, "rb") as handle:
                            values[engine] = pickle.load(handle)
        truth = exact(pattern, json.loads(features))
        results["values"][size] = {
            "train_rows": truth["rows"],
            **{f"tft_epsilon_{e}": compare(truth, None, values[f"tft:{e}"], json.loads(features))
               for e in args.epsilons},
            "package": compare(truth, values["package"], None, json.loads(features)),
        }
        print(json.dumps(results["values"][size], indent=1), flush=True)
        _save(results)
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "one":
        parser = argparse.ArgumentParser(prog="python -m benchmarks.statistics_engines one")
        parser.add_argument("engine", choices=("read", "package", "tft"))
        parser.add_argument("pattern")
        parser.add_argument("out")
        parser.add_argument("--beam-pipeline-args", default="")
        parser.add_argument("--epsilon", type=float, default=0.001)
        parser.add_argument("--features", required=True, help="JSON [[name, kind], ...]")
        a = parser.parse_args(argv[1:])
        print(json.dumps(one(a.engine, a.pattern, a.out, a.beam_pipeline_args, a.epsilon,
                             [tuple(f) for f in json.loads(a.features)])))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.statistics_engines",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/stats-engines")
    parser.add_argument("--sizes", nargs="+", default=["531k", "133k"], choices=sorted(SIZES))
    parser.add_argument("--multi-process-sizes", nargs="*", default=["531k"])
    parser.add_argument("--epsilons", nargs="+", default=["0.001"], help="tft.quantiles' epsilon(s)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the CSVs and run directories")
    main_all(parser.parse_args(argv))


if __name__ == "__main__":
    main()
