"""TFMA vs plain batch inference at 1/10, 1/4 and 1/1 of the 531k-row synthetic set.

Per size, on one trained run (prepared and trained once, 1 epoch per model;
reused when `--workdir` already holds it), each job in its own process
(`benchmarks.worker`):

  * `evaluate` with the default options (`--intervals auto`: jackknife up to
    50,000 test examples), then with `--intervals none`, then with
    `--intervals none` on two Beam worker processes;
  * `infer`: both SavedModels over the same test TFRecords in batches of
    4,096 plus scikit-learn / NumPy metrics over the same slices (the plain
    reference).

Ratios are TFMA pipeline seconds over plain seconds, measured in the same
script. Results: `benchmarks/results/evaluation_speed.json`.

    .venv/bin/python -m benchmarks.evaluation_speed [--workdir DIR] [--sizes 10,4,1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from benchmarks.datasets import FULL_SYNTHETIC
from benchmarks.speed import prepare, run_worker
from trainer.layout import RUN_JSON

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "evaluation_speed.json")
TWO_WORKERS = "--direct_num_workers=2 --direct_running_mode=multi_processing"
VARIANTS = (("default", ("--intervals", "auto")), ("no_intervals", ("--intervals", "none")),
            ("no_intervals_two_workers", ("--intervals", "none", "--beam-args", TWO_WORKERS)))


def ensure_run(run_dir: str, divisor: int, log) -> dict:
    """Prepares and trains the run at 1/divisor of the reference scale unless `run_dir` already holds it."""
    if os.path.exists(os.path.join(run_dir, RUN_JSON)):
        return {"reused": True}
    rows = (FULL_SYNTHETIC[0] // divisor, FULL_SYNTHETIC[1] // divisor)
    _, _, seconds = prepare(rows, run_dir)
    log(f"[evaluation-speed] {sum(rows)} rows prepared in {seconds:.0f} s; training")
    train = run_worker("train", run_dir, "--epochs", "1")
    return {"prepare_seconds": seconds, "train_seconds": train["process_wall_seconds"]}


def measure(run_dir: str, log) -> dict:
    entry = {"infer": run_worker("infer", run_dir)}
    plain = entry["infer"]["infer_seconds"]
    for name, args in VARIANTS:
        result = run_worker("evaluate", run_dir, *args)
        result["tfma_vs_plain"] = result["tfma_seconds"] / plain
        entry[name] = result
        log(f"[evaluation-speed]   {name}: TFMA {result['tfma_seconds']:.1f} s ({result['intervals']}) vs plain "
            f"{plain:.2f} s: {result['tfma_vs_plain']:.0f}x")
    entry["test_examples"] = entry["infer"]["examples"]
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="keep (and reuse) the trained runs here")
    parser.add_argument("--sizes", default="10,4,1", help="divisors of the 531k-row reference scale")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)
    log = lambda message: print(message, flush=True)  # noqa: E731
    payload = {"cpus": os.cpu_count(), "sizes": []}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-evaluation-") as scratch:
        workdir = args.workdir or scratch
        for divisor in (int(d) for d in args.sizes.split(",")):
            run_dir = os.path.join(workdir, f"s{divisor}")
            entry = {"rows": sum(FULL_SYNTHETIC) // divisor, **ensure_run(run_dir, divisor, log)}
            entry.update(measure(run_dir, log))
            payload["sizes"].append(entry)
            payload["seconds"] = round(time.time() - started, 1)
            _write(payload, args.output)
    return 0


def _write(payload: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.tmp", "w") as handle:
        json.dump(payload, handle, indent=1, default=float)
    os.replace(f"{path}.tmp", path)


if __name__ == "__main__":
    sys.exit(main())
