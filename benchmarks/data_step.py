"""The data step's speed and the driver's memory: one `prepare_data` per process.

    python -m benchmarks.data_step write-csv /tmp/synthetic_531k.csv [--rows 500000 31000]
    python -m benchmarks.data_step run /tmp/synthetic_531k.csv|sylva|synthetic \
        [--beam-pipeline-args "--direct_num_workers=2 --direct_running_mode=multi_processing"] [--output-dir RUN]

`run` imports everything first, then times `prepare_data` (the Beam data
step; a built-in name goes through its temporary Parquet copy) alone on a fresh
run directory (removed afterwards, unless `--output-dir` names one to keep)
and prints one JSON line: rows, seconds, rows/s, this process's peak RSS
(VmHWM: the driver; with the in-process runner the workers are threads of
it) and the largest peak RSS of its finished child processes (the
multi-process runner's workers; `ru_maxrss` of the children, which Linux
floors at the driver's high-water mark when each worker was forked).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import tempfile
import time


def write_csv(path: str, rows: tuple[int, int], seed: int = 0) -> None:
    from trainer.data.synthetic import make_synthetic

    make_synthetic(negatives=rows[0], positives=rows[1], seed=seed).to_csv(path, index=False)


def run(path: str, beam_args: str, output_dir: str | None = None) -> dict:
    """One `prepare_data` of the CSV at `path`; `output_dir`: the run directory to prepare and keep."""
    import apache_beam  # noqa: F401  (imports are not the data step)
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from benchmarks.worker import peak_rss_mib
    from trainer.config import RunConfig
    from trainer.data import beam_ingest  # noqa: F401
    from trainer.data.prepare import prepare_data

    rss_before = round(peak_rss_mib())
    out = None if output_dir else tempfile.mkdtemp(prefix="data-step-")
    try:
        config = RunConfig(data=path, label="target", output_dir=output_dir or f"{out}/run",
                           beam_pipeline_args=tuple(shlex.split(beam_args)))
        started = time.perf_counter()
        data = prepare_data(config)
        seconds = time.perf_counter() - started
    finally:
        if out:
            shutil.rmtree(out, ignore_errors=True)
    rows = sum(sum(counts) for counts in data.counts.values())
    return {"data": path, "beam_args": beam_args, "rows": rows, "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds), "driver_peak_rss_mib": round(peak_rss_mib()),
            "driver_rss_after_imports_mib": rss_before,
            "worker_peak_rss_mib": _peak_mib(resource.RUSAGE_CHILDREN)}


def _peak_mib(who: int) -> int:
    return round(resource.getrusage(who).ru_maxrss / 1024)  # Linux reports KiB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_step", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    writer = commands.add_parser("write-csv")
    writer.add_argument("path")
    writer.add_argument("--rows", type=int, nargs=2, default=(500_000, 31_000))
    runner = commands.add_parser("run")
    runner.add_argument("path")
    runner.add_argument("--beam-pipeline-args", default="")
    runner.add_argument("--output-dir", help="prepare this run directory and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.command == "write-csv":
        write_csv(args.path, tuple(args.rows))
    else:
        print(json.dumps(run(args.path, args.beam_pipeline_args, args.output_dir)))


if __name__ == "__main__":
    main()
