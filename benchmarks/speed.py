"""Speed and scale on the synthetic reference-scale data, at 1/10, 1/4 and 1/1 of a size.

Per size:
  * prepare: `prepare_data` (Beam split to TFRecords) wall time;
  * throughput: the same compiled model fed by the package's `make_dataset`
    (gzipped TFRecords, parsed once and cached as columns in epoch 1, a fresh
    permutation per epoch) vs stepping over tensors already in memory (the
    ceiling), examples/s;
  * train / evaluate / infer, each in its own subprocess (`benchmarks.worker`):
    wall time and peak RSS. TFMA (`evaluation.run_evaluation`) vs plain batch
    inference + scikit-learn metrics over the same test TFRecords.
(Quick mode runs the subprocess jobs at the largest size only.)
Once, at the largest size: wall time per trial of a small `run_tuning`.

Ratios are against the reference measured in the same script.

The throughput alone, on an already prepared run (e.g. a 531k synthetic one):
    python -m benchmarks.speed throughput RUN_DIR [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.datasets import FULL_SYNTHETIC
from trainer.layout import DATA_DIR

QUICK_BASE = (10_000, 620)  # 1/50 of the reference scale, same 5.8% positive rate
GROWTH = (10, 4, 1)  # divisors of the base size


def sizes(full: bool) -> list[tuple[int, int]]:
    base = FULL_SYNTHETIC if full else QUICK_BASE
    return [(base[0] // d, base[1] // d) for d in GROWTH]


class EpochTimer:
    """A Keras callback recording each epoch's wall time."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self._started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._started)

        return _Timer()


def prepare(rows: tuple[int, int], run_dir: str, seed: int = 0):
    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data

    config = RunConfig(data="synthetic", synthetic_rows=rows, seed=seed, output_dir=run_dir, verbose=0)
    started = time.time()
    data = prepare_data(config)
    return config, data, time.time() - started


def throughput(config, data, epochs: int) -> dict:
    """Examples/s of training from TFRecords vs from in-memory tensors, same compiled model.

    Epoch 1 of the package pipeline is cold (reads, decompresses and parses
    the shards, fills the in-memory cache); later epochs are warm. The ceiling
    materializes the parsed batches first and steps over them from memory.
    """
    import keras
    import tensorflow as tf

    from trainer import hparams as hparams_lib
    from trainer.config import parse_tuning_objective
    from trainer.data.dataset import make_dataset
    from trainer.model import build_model, class_priors, training_metrics
    from trainer.train import fit_settings

    counts = data.train_counts
    examples = sum(counts)
    hp = hparams_lib.with_values(counts, {})
    settings = fit_settings(hp, counts, config)
    keras.utils.set_random_seed(config.seed)
    model = build_model(hp, data.schema, priors=class_priors(counts))
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=settings.loss(),
                  metrics=training_metrics(parse_tuning_objective(config.objective)[1]))
    batch = settings.batch_size

    pipeline = make_dataset(data.pattern("train"), data.schema, batch, shuffle=True, seed=config.seed)
    timer = EpochTimer()
    model.fit(pipeline, epochs=epochs, verbose=0, callbacks=[timer])
    package_epochs = list(timer.seconds)

    started = time.perf_counter()
    for _ in make_dataset(data.pattern("train"), data.schema, batch, shuffle=True, seed=config.seed):
        pass
    input_only_cold = time.perf_counter() - started

    parts = list(make_dataset(data.pattern("train"), data.schema, batch).as_numpy_iterator())
    features = {name: np.concatenate([p[0][name] for p in parts]) for name in parts[0][0]}
    labels = np.concatenate([p[1] for p in parts])
    in_memory = tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch).cache()
    for _ in in_memory:  # fill the cache: afterwards every epoch steps over tensors in memory
        pass
    timer = EpochTimer()
    model.fit(in_memory, epochs=epochs, verbose=0, callbacks=[timer])
    ceiling_epochs = list(timer.seconds)

    warm = float(np.mean(package_epochs[1:])) if len(package_epochs) > 1 else package_epochs[0]
    ceiling = float(np.mean(ceiling_epochs[1:])) if len(ceiling_epochs) > 1 else ceiling_epochs[0]
    return {
        "train_examples": examples, "batch_size": batch, "epochs": epochs,
        "package_epoch_seconds": package_epochs, "in_memory_epoch_seconds": ceiling_epochs,
        "package_cold_examples_per_s": examples / package_epochs[0],
        "package_warm_examples_per_s": examples / warm,
        "in_memory_examples_per_s": examples / ceiling,
        "input_pipeline_only_cold_examples_per_s": examples / input_only_cold,
        "warm_ratio_vs_in_memory": (examples / warm) / (examples / ceiling),
        "cold_ratio_vs_in_memory": (examples / package_epochs[0]) / (examples / ceiling),
    }


def run_worker(job: str, run_dir: str, *extra: str) -> dict:
    """Runs `benchmarks.worker JOB` in a child; returns its result + wall time + peak RSS (MiB)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = handle.name
    log_path = result_path + ".log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    started = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", job, run_dir, result_path, *extra],
                                   cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - started
    try:
        if process.returncode != 0:
            with open(log_path) as log:
                tail = log.read()[-3000:]
            raise RuntimeError(f"benchmarks.worker {job} exited {process.returncode}:\n{tail}")
        with open(result_path) as handle:
            result = json.load(handle)
    finally:
        for path in (result_path, log_path):
            if os.path.exists(path):
                os.remove(path)
    # ru_maxrss is in KiB on Linux, and includes this (forking) process's own
    # high-water mark; the worker's VmHWM is the figure reported.
    return {**result, "process_wall_seconds": wall, "wait4_maxrss_mib": usage.ru_maxrss / 1024.0}


def tuning_per_trial(run_dir: str, trials: int, tuning_epochs: int, epochs: int) -> dict:
    """A small `run_tuning` (Bayesian) on the prepared data, in a subprocess; seconds per trial."""
    return run_worker("tune", run_dir, "--trials", str(trials), "--tuning-epochs", str(tuning_epochs),
                      "--epochs", str(epochs))


def measure_tuning(payload: dict, run_dir: str, full: bool, log) -> None:
    trials = 3 if full else 2
    try:
        payload["tuning"] = tuning_per_trial(run_dir, trials=trials, tuning_epochs=2, epochs=1)
    except Exception as error:  # recorded, so the other measurements still reach the document
        payload["tuning_error"] = repr(error)[-2000:]
        log(f"[speed] tuning FAILED: {error!r}"[:2000])
        return
    payload.pop("tuning_error", None)
    log(f"[speed] tuning: {payload['tuning']['seconds_per_trial']:.1f} s per trial "
        f"({trials} trials x 2 epochs, {payload['tuning']['train_examples']} training examples)")


def run_tuning_only(full: bool, path: str, log=print) -> dict:
    """Adds (or redoes) the tuning measurement of an existing results file, at its largest size."""
    with open(path) as handle:
        payload = json.load(handle)
    rows = sizes(full)[-1]
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as workdir:
        run_dir = os.path.join(workdir, f"synthetic-{sum(rows)}")
        prepare(rows, run_dir)
        measure_tuning(payload, run_dir, full, log)
    _write(payload, path)
    return payload


def run(full: bool, path: str, log=print, only_sizes: int | None = None) -> dict:
    """Runs the speed benchmark and writes `path`."""
    epochs = 3
    payload = {"mode": "full" if full else "quick", "sizes": [], "cpus": os.cpu_count(),
               "note": "synthetic data (trainer.data.synthetic.make_synthetic, seed 0); split 0.7/0.15/0.15"}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as workdir:
        plan = sizes(full)[-only_sizes:] if only_sizes else sizes(full)
        for rows in plan:
            run_dir = os.path.join(workdir, f"synthetic-{sum(rows)}")
            config, data, prepare_seconds = prepare(rows, run_dir)
            entry = {"rows": sum(rows), "negatives": rows[0], "positives": rows[1], "counts": data.counts,
                     "prepare_seconds": prepare_seconds, "prepare_rows_per_s": sum(rows) / prepare_seconds}
            log(f"[speed] {sum(rows)} rows: prepare_data {prepare_seconds:.1f} s")
            entry["throughput"] = throughput(config, data, epochs)
            t = entry["throughput"]
            log(f"[speed]   training: package warm {t['package_warm_examples_per_s']:.0f} ex/s, cold "
                f"{t['package_cold_examples_per_s']:.0f}, in-memory {t['in_memory_examples_per_s']:.0f} "
                f"(warm ratio {t['warm_ratio_vs_in_memory']:.2f})")
            payload["sizes"].append(entry)
            if not full and rows != plan[-1]:
                continue  # quick mode: the subprocess jobs at the largest size only
            entry["train"] = run_worker("train", run_dir, "--epochs", "2")
            log(f"[speed]   train_and_export x2 (2 epochs each): {entry['train']['process_wall_seconds']:.1f} s, "
                f"peak RSS {entry['train']['peak_rss_mib']:.0f} MiB")
            entry["evaluate"] = run_worker("evaluate", run_dir)
            entry["infer"] = run_worker("infer", run_dir)
            e, i = entry["evaluate"], entry["infer"]
            entry["tfma_vs_plain_ratio"] = e["tfma_seconds"] / i["infer_seconds"]
            entry["evaluate_vs_infer_process_ratio"] = e["process_wall_seconds"] / i["process_wall_seconds"]
            log(f"[speed]   TFMA {e['tfma_seconds']:.1f} s (run_evaluation {e['run_evaluation_seconds']:.1f} s, "
                f"RSS {e['peak_rss_mib']:.0f} MiB) vs plain inference+metrics {i['infer_seconds']:.2f} s "
                f"(RSS {i['peak_rss_mib']:.0f} MiB): {entry['tfma_vs_plain_ratio']:.0f}x")
            payload["seconds"] = round(time.time() - started, 1)
            _write(payload, path)
        measure_tuning(payload, os.path.join(workdir, f"synthetic-{sum(plan[-1])}"), full, log)
    payload["seconds"] = round(time.time() - started, 1)
    _write(payload, path)
    return payload


def _write(payload: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.tmp", "w") as handle:
        json.dump(payload, handle, indent=1, default=float)
    os.replace(f"{path}.tmp", path)


def throughput_of_run(run_dir: str, epochs: int = 3) -> dict:
    """`throughput` on the prepared data of an existing run directory (`RUN/data`, read only)."""
    from trainer.config import RunConfig
    from trainer.data.prepare import SOURCE_FILE, PreparedData
    from trainer.data.schema import load_schema
    from trainer.data.split import load_counts

    directory = os.path.join(run_dir, DATA_DIR)
    with open(os.path.join(directory, SOURCE_FILE)) as handle:
        source = json.load(handle)
    data = PreparedData(directory, load_schema(directory), load_counts(directory), source)
    return throughput(RunConfig(seed=source["seed"], verbose=0), data, epochs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed")
    parser.add_argument("job", choices=["throughput"])
    parser.add_argument("run_dir", help="a run directory with prepared data (RUN/data)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    result = throughput_of_run(args.run_dir, args.epochs)
    print(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
