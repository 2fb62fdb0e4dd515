"""Batch scoring (`python -m serving.batch`) at ~0.5M and 5M synthetic CSV rows, one and two workers.

    python -m benchmarks.batch_scoring [--workdir /tmp/imbalance-batch] [--multiples 1 10] [--keep]

1. A model: the default architecture (`build_model` with default
   hyperparameters) on the synthetic set's schema, exported by
   `trainer.export` as training exports it. Its weights are not trained:
   scoring costs the same whatever the weights.
2. The CSV per size (`benchmarks.scale.write_csv`, as `make bench-scale`).
3. Per size, each in a fresh process (`benchmarks.batch_scoring run`):
   `serving.batch.main` with the in-process runner (one worker, the default)
   and with the multi-process direct runner and two workers. Rows/s, the
   driver's peak RSS (VmHWM) and the workers' (`ru_maxrss` of finished
   children), measured as `benchmarks.data_step` measures the data step.
4. The reference, in the same run: the same model's `predict_features`
   signature called in one process on the CSV's rows already in memory
   (16,384 rows a call), so the table reads as the share of the model's own
   speed that reading, checking, batching and writing leave.

Writes `benchmarks/results/batch_scoring.json` after every step and prints the
table of docs/benchmarks.md's "Batch scoring" section. CSVs are removed at the
end unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

from benchmarks.scale import ROOT, TWO_WORKERS, _write, child, sizes, write_csv
from trainer.layout import SERVING_DIR

RESULTS = os.path.join(ROOT, "benchmarks", "results", "batch_scoring.json")
MULTIPLES = (1, 10)  # x 531,000 rows
SCHEMA_ROWS = (20_000, 1_240)  # the model's schema is computed on this many synthetic rows
REFERENCE_ROWS = 200_000
CALL_ROWS = 16_384


def export_model(workdir: str) -> str:
    """The default model on the synthetic schema, exported under `workdir/serving_model`; its base path."""
    import keras_tuner as kt

    from trainer.calibration import Calibration
    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data
    from trainer.export import ServingModule, export_version
    from trainer.model import build_model

    base = os.path.join(workdir, SERVING_DIR)
    if os.path.isdir(base):
        return base
    config = RunConfig(data="synthetic", synthetic_rows=SCHEMA_ROWS, output_dir=os.path.join(workdir, "schema-run"))
    data = prepare_data(config)
    module = ServingModule(build_model(kt.HyperParameters(), data.schema), data.schema, Calibration("none"), 0.5)
    export_version(module, base)
    shutil.rmtree(config.output_dir, ignore_errors=True)
    return base


def score_once(csv: str, base: str, beam_args: str) -> dict:
    """One `serving.batch` job in this (fresh) process; rows/s and peak RSS."""
    import apache_beam  # noqa: F401  (imports are not the job)
    import tensorflow  # noqa: F401

    from benchmarks.worker import peak_rss_mib
    from serving.batch import main

    rss_before = round(peak_rss_mib())
    output = tempfile.mkdtemp(prefix="batch-out-")
    try:
        started = time.perf_counter()
        status = main(["--model_base_path", base, "--data", csv, "--output", os.path.join(output, "scores"),
                       "--beam-pipeline-args", beam_args])
        seconds = time.perf_counter() - started
        files = os.listdir(os.path.join(output, "scores"))
        import pyarrow.parquet as pq

        rows = sum(pq.ParquetFile(os.path.join(output, "scores", f)).metadata.num_rows
                   for f in files if f.endswith(".parquet"))
    finally:
        shutil.rmtree(output, ignore_errors=True)
    if status != 0:
        raise RuntimeError(f"serving.batch exited {status}")
    return {"beam_args": beam_args, "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "driver_peak_rss_mib": round(peak_rss_mib()), "driver_rss_after_imports_mib": rss_before,
            "worker_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def reference(csv: str, base: str) -> dict:
    """The signature alone: REFERENCE_ROWS rows of the CSV, in memory, CALL_ROWS a call."""
    import numpy as np
    import pandas as pd

    from serving.servable import FEATURES_SIGNATURE, Servable
    from trainer.layout import list_versions

    version, path = max(list_versions(base).items())
    servable = Servable(version, path)
    signature = servable.signatures[FEATURES_SIGNATURE]
    frame = pd.read_csv(csv, nrows=REFERENCE_ROWS)
    inputs = {name: (frame[name].to_numpy(np.float32) if spec.dtype.is_floating
                     else frame[name].fillna("").astype(str).to_numpy(object))
              for name, spec in signature.inputs.items()}
    servable.run(signature, {k: v[:CALL_ROWS] for k, v in inputs.items()})  # first-call costs
    started = time.perf_counter()
    for start in range(0, len(frame), CALL_ROWS):
        servable.run(signature, {k: v[start:start + CALL_ROWS] for k, v in inputs.items()})
    seconds = time.perf_counter() - started
    return {"rows": len(frame), "seconds": round(seconds, 2), "rows_per_s": round(len(frame) / seconds)}


def run(workdir: str, multiples, keep: bool, path: str = RESULTS, log=print) -> dict:
    os.makedirs(workdir, exist_ok=True)
    payload = {"cpus": os.cpu_count(), "workdir": workdir, "sizes": [],
               "note": "synthetic CSV (trainer.data.synthetic, seed 0); default model architecture, untrained "
                       "weights; each measurement a fresh process; load = 1/5/15-min load averages"}
    started = time.time()
    base = export_model(workdir)
    csvs = []
    try:
        for rows in sizes(multiples):
            total = sum(rows)
            csv = write_csv(rows, workdir, log)
            csvs.append(csv)
            entry = {"rows": total, "csv_mib": round(os.path.getsize(csv) / 2**20)}
            payload["sizes"].append(entry)
            logs = os.path.join(workdir, f"log_{total}")
            entry["reference"] = child(["benchmarks.batch_scoring", "reference", csv, base], f"{logs}_ref.log")
            for name, args in (("one_worker", ""), ("two_workers", TWO_WORKERS)):
                entry[name] = child(["benchmarks.batch_scoring", "run", csv, base, "--beam-pipeline-args", args],
                                    f"{logs}_{name}.log")
                step = entry[name]
                log(f"[batch] {total:,} rows, {name}: {step['seconds']} s, {step['rows_per_s']:,} rows/s "
                    f"({step['rows_per_s'] / entry['reference']['rows_per_s']:.2f} of the signature alone), driver "
                    f"{step['driver_peak_rss_mib']} MiB, workers {step['worker_peak_rss_mib']} MiB "
                    f"(load {step['load_before'][0]})")
                _write(payload, path)
    finally:
        if not keep:
            for csv in csvs:
                if os.path.exists(csv):
                    os.remove(csv)
    payload["seconds"] = round(time.time() - started)
    _write(payload, path)
    log(table(payload))
    return payload


def table(payload: dict) -> str:
    lines = ["| rows (CSV) | workers | seconds | rows/s | share of signature alone | driver peak RSS | "
             "worker peak RSS | load |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for entry in payload["sizes"]:
        label = f"{entry['rows']:,} ({entry['csv_mib']:,} MiB)"
        reference_speed = entry["reference"]["rows_per_s"]
        lines.append(f"| {label} | signature alone, in memory | {entry['reference']['seconds']} | "
                     f"{reference_speed:,} | 1.00 | – | – | {entry['reference']['load_before'][0]} |")
        for name in ("one_worker", "two_workers"):
            if name in entry:
                step = entry[name]
                workers = f"{step['worker_peak_rss_mib']:,} MiB" if name == "two_workers" else "–"
                lines.append(f"| | {name.replace('_', ' ')} | {step['seconds']} | {step['rows_per_s']:,} | "
                             f"{step['rows_per_s'] / reference_speed:.2f} | {step['driver_peak_rss_mib']:,} MiB | "
                             f"{workers} | {step['load_before'][0]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["run"], ["reference"]):
        parser = argparse.ArgumentParser(prog=f"python -m benchmarks.batch_scoring {argv[0]}")
        parser.add_argument("csv")
        parser.add_argument("base")
        parser.add_argument("--beam-pipeline-args", default="")
        args = parser.parse_args(argv[1:])
        result = (score_once(args.csv, args.base, args.beam_pipeline_args) if argv[0] == "run"
                  else reference(args.csv, args.base))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_scoring", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "imbalance-batch"))
    parser.add_argument("--multiples", type=int, nargs="+", default=list(MULTIPLES),
                        help="sizes as multiples of 531,000 rows")
    parser.add_argument("--keep", action="store_true", help="keep the CSVs")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    run(args.workdir, args.multiples, args.keep, args.out)


if __name__ == "__main__":
    main()

