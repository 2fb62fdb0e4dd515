"""LightGBM's OpenMP wait policy on a shared machine (trainer.trees.import_lightgbm).

    python -m benchmarks.lightgbm_threads [--busy 2] [--repeats 3] [--rounds 200] [--skip CASE ...]

Each case is one subprocess (libgomp reads `OMP_WAIT_POLICY` once, when it is
loaded) that grows `--rounds` LightGBM rounds on 11,123 x 216 synthetic rows
(sylva's training split's shape) with the package's tree settings: one thread
(the reference), and all cores with libgomp's default, with its spinning and
passive wait policies (the package sets passive) and with a short spin count.
`--busy N` runs N single-threaded busy loops
alongside, as another job or the second pytest worker would; `--busy 0`
measures an idle machine. Cases alternate within each repeat, so a change in
the machine's load hits them alike; the ratios are against the one-thread
reference of the same repeat. Results: benchmarks/results/lightgbm_threads.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

CASES = {"1 thread": (1, {}), "all cores, libgomp's default (spin, then sleep)": (0, {}),
         "all cores, OMP_WAIT_POLICY=ACTIVE": (0, {"OMP_WAIT_POLICY": "ACTIVE"}),
         "all cores, OMP_WAIT_POLICY=PASSIVE": (0, {"OMP_WAIT_POLICY": "PASSIVE"}),
         "all cores, GOMP_SPINCOUNT=10000": (0, {"GOMP_SPINCOUNT": "10000"})}
RESULTS = os.path.join(os.path.dirname(__file__), "results", "lightgbm_threads.json")


def grow(threads: int, rounds: int) -> float:
    """Seconds for `rounds` rounds in this process (threads 0: every core, as trainer.trees sets it)."""
    import lightgbm
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(11_123, 216))
    y = (x[:, 0] + rng.normal(size=len(x)) > 2).astype(int)
    settings = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 20,
                "bagging_fraction": 1.0, "bagging_freq": 1, "seed": 0, "deterministic": True,
                "num_threads": threads or os.cpu_count() or 1, "verbose": -1}
    started = time.perf_counter()
    lightgbm.train(settings, lightgbm.Dataset(x, y), num_boost_round=rounds)
    return time.perf_counter() - started


def _case(threads: int, settings: dict, rounds: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(settings)
    code = f"from benchmarks.lightgbm_threads import grow; print(grow({threads}, {rounds}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _busy_loop() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=2, help="busy single-threaded processes alongside")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--skip", nargs="*", default=[], help="case names to leave out")
    args = parser.parse_args(argv)
    hogs = [multiprocessing.Process(target=_busy_loop, daemon=True) for _ in range(args.busy)]
    for hog in hogs:
        hog.start()
    try:
        seconds = {name: [] for name in CASES}
        for _ in range(args.repeats):
            for name, (threads, settings) in CASES.items():
                if name in args.skip:
                    continue
                seconds[name].append(round(_case(threads, settings, args.rounds), 2))
    finally:
        for hog in hogs:
            hog.terminate()
    reference = seconds["1 thread"]
    seconds = {name: values for name, values in seconds.items() if values}
    rows = {name: {"seconds": values, "median_s": statistics.median(values),
                   "median_ratio_to_1_thread": round(statistics.median(
                       [v / r for v, r in zip(values, reference, strict=True)]), 2)}
            for name, values in seconds.items()}
    result = {"cores": os.cpu_count(), "busy_processes": args.busy, "rounds": args.rounds,
              "load_average_after": os.getloadavg()[0], "cases": rows}
    print(json.dumps(result, indent=1))
    known = json.load(open(RESULTS)) if os.path.exists(RESULTS) else {}
    known[f"busy={args.busy}"] = result
    with open(RESULTS, "w") as handle:
        json.dump(known, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
