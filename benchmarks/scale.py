"""Scale: the data step and one training epoch at ~0.5M, 2M and 5M synthetic rows read from CSV.

    python -m benchmarks.scale [--workdir /tmp/imbalance-scale] [--multiples 1 4 10] [--keep]
    python -m benchmarks.scale train RUN_DIR [--input auto|cache|stream] [--validation-input auto|cache|stream]

Per size, a multiple of the reference scale (500,000 negatives + 31,000 positives,
the synthetic set's 94% / 6% mix): 531,000, 2,124,000 and 5,310,000 rows.

1. The CSV: `benchmarks.data_step write-csv` in a child process, kept in
   `--workdir` between runs (about 1.3 GB at 5.3M rows).
2. The data step, each in a fresh process (`benchmarks.data_step run`): the
   in-process runner (the default the README uses; its prepared run
   directory is what training reads) and the multi-process direct runner
   with two workers. Rows/s, driver peak RSS (VmHWM) and the workers' peak
   RSS (`ru_maxrss` of the driver's finished children).
3. One training epoch in a fresh process (`benchmarks.scale train`): the
   default model (`trainer.hparams.with_values(counts, {})`, `build_model`)
   fitted by `trainer.train.compile_and_fit` for one epoch, its training input
   `make_dataset` as `trainer.train` builds it (cached or streamed by
   `trainer.data.dataset.caches`), plus the validation pass. Training rows/s = the
   training split's examples / the epoch's training phase (up to the
   validation pass, which is timed apart); peak RSS = the process's VmHWM.
   Where the rule caches the training or the validation split, the same
   epoch again with both streamed, so both paths are compared at the same
   size and the streamed path's memory is measured at every size.

Writes `benchmarks/results/scale.json` after every step (a partial run keeps
what it measured) and prints the table of docs/benchmarks.md's "Scale"
section. Every child is a fresh interpreter started by this small process, so
no child inherits a large high-water mark at exec. Load averages are recorded
before and after every child (2 shared cores: compare ratios, not seconds).
CSVs and run directories are removed at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from trainer.config import SYNTHETIC_ROWS as FULL_SYNTHETIC  # the reference scale: 500,000 + 31,000
from trainer.layout import DATA_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "scale.json")
MULTIPLES = (1, 4, 10)  # x 531,000 rows
TWO_WORKERS = "--direct_num_workers=2 --direct_running_mode=multi_processing"


def sizes(multiples) -> list[tuple[int, int]]:
    return [(FULL_SYNTHETIC[0] * m, FULL_SYNTHETIC[1] * m) for m in multiples]


def load() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())


def child(args: list[str], log_path: str) -> dict:
    """`python -m ARGS` in a fresh process; its last stdout line as JSON, with load averages around it."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    before, started = load(), time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=log, text=True)
    if done.returncode != 0:
        with open(log_path) as log:
            raise RuntimeError(f"{' '.join(args[:2])} exited {done.returncode}:\n{log.read()[-3000:]}")
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    return {**result, "process_seconds": round(time.perf_counter() - started, 1), "load_before": before,
            "load_after": load()}


def write_csv(rows: tuple[int, int], workdir: str, log) -> str:
    path = os.path.join(workdir, f"synthetic_{sum(rows)}.csv")
    if not os.path.exists(path):
        started = time.perf_counter()
        child(["benchmarks.data_step", "write-csv", f"{path}.tmp", "--rows", str(rows[0]), str(rows[1])],
              f"{path}.log")
        os.replace(f"{path}.tmp", path)
        log(f"[scale] wrote {path} ({os.path.getsize(path) / 2**20:,.0f} MiB) in {time.perf_counter() - started:.0f} s")
    return path


def data_step(csv: str, beam_args: str, run_dir: str | None, log_path: str) -> dict:
    args = ["benchmarks.data_step", "run", csv, "--engine", "beam", "--beam-pipeline-args", beam_args]
    return child([*args, "--output-dir", run_dir] if run_dir else args, log_path)


def train_epoch(run_dir: str, input_path: str, validation_path: str = "auto") -> dict:
    """One epoch of the default model on a prepared run (the child job); timings and peak RSS."""
    import keras

    from benchmarks.worker import peak_rss_mib
    from trainer import hparams as hparams_lib
    from trainer.config import RunConfig
    from trainer.data.dataset import caches, make_dataset
    from trainer.data.prepare import SOURCE_FILE, PreparedData
    from trainer.data.schema import load_schema
    from trainer.data.split import load_counts
    from trainer.model import build_model, class_priors
    from trainer.train import EVAL_BATCH, compile_and_fit, fit_settings

    directory = os.path.join(run_dir, DATA_DIR)
    with open(os.path.join(directory, SOURCE_FILE)) as handle:
        source = json.load(handle)
    data = PreparedData(directory, load_schema(directory), load_counts(directory), source)
    config = RunConfig(seed=source["seed"], epochs=1, verbose=0)
    counts, examples = data.train_counts, sum(data.counts["train"])
    hp = hparams_lib.with_values(counts, {})
    settings = fit_settings(hp, counts, config)
    keras.utils.set_random_seed(config.seed)
    model = build_model(hp, data.schema, priors=class_priors(counts))
    paths = {"auto": None, "cache": True, "stream": False}
    cache, validation_cache = paths[input_path], paths[validation_path]
    validation = sum(data.counts["validation"])
    cached = caches(data.schema, examples) if cache is None else cache
    validation_cached = caches(data.schema, validation) if validation_cache is None else validation_cache
    train = make_dataset(data.pattern("train"), data.schema, settings.batch_size, shuffle=True, seed=config.seed,
                         examples=examples, cache=cache)
    held_out = make_dataset(data.pattern("validation"), data.schema, EVAL_BATCH, examples=validation,
                            cache=validation_cache)  # as trainer.train builds it, the path forced or not
    rss_before_fit = peak_rss_mib()
    timer = PhaseTimer()
    started = time.perf_counter()
    compile_and_fit(model, settings, data, config, callbacks=[timer], train=train, validation=held_out)
    fit_seconds = time.perf_counter() - started
    return {"input": input_path, "validation_input": validation_path, "train_path": "cache" if cached else "stream",
            "validation_path": "cache" if validation_cached else "stream",
            "train_examples": examples, "validation_examples": validation, "batch_size": settings.batch_size,
            "eval_batch": EVAL_BATCH, "train_seconds": round(timer.train, 2),
            "validation_seconds": round(timer.validation, 2), "fit_seconds": round(fit_seconds, 2),
            "train_rows_per_s": round(examples / timer.train), "peak_rss_mib": round(peak_rss_mib()),
            "rss_before_fit_mib": round(rss_before_fit)}


class PhaseTimer:
    """A Keras callback: seconds of the epoch's training phase and of its validation pass."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            train = validation = 0.0

            def on_epoch_begin(self, epoch, logs=None):
                self._started = time.perf_counter()

            def on_test_begin(self, logs=None):
                self._validating = time.perf_counter()
                self.train += self._validating - self._started

            def on_test_end(self, logs=None):
                self.validation += time.perf_counter() - self._validating

        return _Timer()


def run(workdir: str, multiples, keep: bool, compare: bool, path: str = RESULTS, log=print) -> dict:
    os.makedirs(workdir, exist_ok=True)
    payload = {"cpus": os.cpu_count(), "workdir": workdir, "sizes": [],
               "note": "synthetic data (trainer.data.synthetic.make_synthetic, seed 0) as CSV; split 0.7/0.15/0.15; "
                       "each measurement a fresh process; load = 1/5/15-min load averages"}
    started = time.time()
    csvs, runs = [], []
    try:
        for rows in sizes(multiples):
            total = sum(rows)
            csv = write_csv(rows, workdir, log)
            csvs.append(csv)
            entry = {"rows": total, "negatives": rows[0], "positives": rows[1],
                     "csv_mib": round(os.path.getsize(csv) / 2**20)}
            payload["sizes"].append(entry)
            run_dir = os.path.join(workdir, f"run_{total}")
            shutil.rmtree(run_dir, ignore_errors=True)
            runs.append(run_dir)
            logs = os.path.join(workdir, f"log_{total}")
            entry["data_step"] = {
                "in_process": data_step(csv, "", run_dir, f"{logs}_prepare.log"),
                "two_workers": data_step(csv, TWO_WORKERS, None, f"{logs}_prepare2.log"),
            }
            for name, step in entry["data_step"].items():
                log(f"[scale] {total:,} rows: data step {name}: {step['seconds']} s, {step['rows_per_s']:,} rows/s, "
                    f"driver {step['driver_peak_rss_mib']} MiB, workers {step['worker_peak_rss_mib']} MiB "
                    f"(load {step['load_before'][0]})")
            _write(payload, path)
            entry["train"] = {"auto": child(["benchmarks.scale", "train", run_dir], f"{logs}_train.log")}
            auto = entry["train"]["auto"]
            if compare and "cache" in (auto["train_path"], auto["validation_path"]):
                entry["train"]["stream"] = child(["benchmarks.scale", "train", run_dir, "--input", "stream",
                                                  "--validation-input", "stream"], f"{logs}_train_stream.log")
            for name, epoch in entry["train"].items():
                log(f"[scale] {total:,} rows: one epoch ({name}: train {epoch['train_path']}, validation "
                    f"{epoch['validation_path']}): {epoch['train_rows_per_s']:,} rows/s ({epoch['train_seconds']} s "
                    f"+ validation {epoch['validation_seconds']} s), peak RSS {epoch['peak_rss_mib']} MiB "
                    f"(load {epoch['load_before'][0]})")
            payload["seconds"] = round(time.time() - started)
            _write(payload, path)
    finally:
        if not keep:
            for leftover in runs:
                shutil.rmtree(leftover, ignore_errors=True)
            for csv in csvs:
                if os.path.exists(csv):
                    os.remove(csv)
    payload["growth"] = growth(payload["sizes"])
    payload["seconds"] = round(time.time() - started)
    _write(payload, path)
    log(table(payload))
    return payload


def growth(entries: list[dict]) -> dict:
    """Percent change of each peak RSS from the smallest size to the largest."""
    if len(entries) < 2 or "train" not in entries[-1]:
        return {}
    first, last = entries[0], entries[-1]

    def percent(pick) -> float:
        return round(100.0 * (pick(last) / pick(first) - 1.0), 1)

    return {
        "rows": [first["rows"], last["rows"]],
        "data_step_in_process_driver": percent(lambda e: e["data_step"]["in_process"]["driver_peak_rss_mib"]),
        "data_step_two_workers_driver": percent(lambda e: e["data_step"]["two_workers"]["driver_peak_rss_mib"]),
        "data_step_two_workers_worker": percent(lambda e: e["data_step"]["two_workers"]["worker_peak_rss_mib"]),
        "train_default": percent(lambda e: e["train"]["auto"]["peak_rss_mib"]),
        "train_streamed": percent(lambda e: e["train"].get("stream", e["train"]["auto"])["peak_rss_mib"]),
    }


def table(payload: dict) -> str:
    lines = ["| rows (CSV) | step | path | seconds | rows/s | driver / process peak RSS | worker peak RSS | load |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for entry in payload["sizes"]:
        label = f"{entry['rows']:,} ({entry['csv_mib']:,} MiB)"
        for name, step in entry.get("data_step", {}).items():
            workers = f"{step['worker_peak_rss_mib']:,} MiB" if name == "two_workers" else "–"
            lines.append(f"| {label} | data step | {name.replace('_', ' ')} | {step['seconds']} | "
                         f"{step['rows_per_s']:,} | {step['driver_peak_rss_mib']:,} MiB | {workers} | "
                         f"{step['load_before'][0]} |")
            label = ""
        for epoch in entry.get("train", {}).values():
            lines.append(f"| | one epoch | train {epoch['train_path']}, validation {epoch['validation_path']} | "
                         f"{epoch['train_seconds']} + {epoch['validation_seconds']} | {epoch['train_rows_per_s']:,} | "
                         f"{epoch['peak_rss_mib']:,} MiB | – | {epoch['load_before'][0]} |")
    if payload.get("growth"):
        lines.append("")
        lines.append("growth of peak RSS, smallest to largest size: " +
                     ", ".join(f"{k} {v:+.1f}%" for k, v in payload["growth"].items() if k != "rows"))
    return "\n".join(lines)


def _write(payload: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.tmp", "w") as handle:
        json.dump(payload, handle, indent=1)
    os.replace(f"{path}.tmp", path)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        parser = argparse.ArgumentParser(prog="python -m benchmarks.scale train")
        parser.add_argument("run_dir", help="a run directory with prepared data (RUN/data)")
        parser.add_argument("--input", choices=("auto", "cache", "stream"), default="auto", help="training input")
        parser.add_argument("--validation-input", choices=("auto", "cache", "stream"), default="auto")
        args = parser.parse_args(argv[1:])
        print(json.dumps(train_epoch(args.run_dir, args.input, args.validation_input)))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "imbalance-scale"),
                        help="CSVs (kept between runs) and run directories")
    parser.add_argument("--multiples", type=int, nargs="+", default=list(MULTIPLES),
                        help="sizes as multiples of 531,000 rows")
    parser.add_argument("--keep", action="store_true", help="keep the CSVs and prepared run directories")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the all-streamed epoch at sizes where the rule caches a split")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    run(args.workdir, args.multiples, args.keep, not args.no_compare, args.out)


if __name__ == "__main__":
    main()
