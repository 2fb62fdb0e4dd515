"""What request logging costs: batched REST throughput at concurrency 32, logging at rate 1.0 vs off, paired.

  .venv/bin/python -m benchmarks.serving_logging [--seconds 3] [--rounds 5] [--run-dir DIR] [--no-write]

Part of `make bench-serving`. Trains (or reuses, with `--run-dir`) the tiny
model of `benchmarks/serving.py` and starts two `serving.server` subprocesses on
it with the same flags (`--enable_batching` as there, a `--model_config_file`,
Prometheus on): one whose model config has no `logging_config`, one with
`logging_config { log_collector_config { type: "tfrecord" ... }
sampling_config { sampling_rate: 1.0 } }`. Each round measures both (the
order alternating) with the same closed-loop clients as `benchmarks/serving.py`
(single-row `predict_features` requests, keep-alive), so the ratio logging /
off is taken within a round, minutes apart at most; the median and range over
rounds are reported. After the rounds the logging server is stopped with
SIGTERM and its files are read back: records written, requests dropped by a full
queue (from its Prometheus page) and bytes per record are part of the result,
because a cost hidden by dropping would not be a cost measured.

Writes benchmarks/results/serving_logging.json and the "## Serving: request
logging cost" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

from benchmarks.publish import DOC, publish, write_doc_section
from benchmarks.serving import (
    BATCHING_FLAGS,
    MODEL,
    ROOT,
    free_port,
    loadavg,
    measure,
    public,
    sample_instance,
    train_tiny_model,
)

RESULTS = os.path.join(ROOT, "benchmarks", "results", "serving_logging.json")
HEADING = "## Serving: request logging cost"
CONCURRENCY = 32
TARGET_COST = 0.10  # logging at rate 1.0 costs at most 10% of batched throughput
METRICS_PATH = "/monitoring/prometheus/metrics"
LOGGING = """
  logging_config {{
    log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }}
    sampling_config {{ sampling_rate: 1.0 }}
  }}"""


class ConfiguredServer:
    """`serving.server` on a model config file of its own, batching and Prometheus on."""

    def __init__(self, label: str, base: str, scratch: str, log_prefix: str | None):
        self.label, self.port = label, free_port()
        config = os.path.join(scratch, f"{label}.config")
        logging = LOGGING.format(prefix=log_prefix) if log_prefix else ""
        with open(config, "w") as handle:
            handle.write(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" '
                         f'model_platform: "tensorflow"{logging} }} }}\n')
        monitoring = os.path.join(scratch, "monitoring.config")
        with open(monitoring, "w") as handle:
            handle.write(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
        command = [sys.executable, "-m", "serving.server", f"--model_config_file={config}",
                   f"--rest_api_port={self.port}", f"--port={free_port()}", "--file_system_poll_wait_seconds=0",
                   f"--monitoring_config_file={monitoring}", *BATCHING_FLAGS]
        self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.port}/v1/models/{MODEL}"
        for _ in range(1200):  # TF import and model load, two servers at once
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.label} did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (/proc)."""
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{METRICS_PATH}", timeout=30) as page:
            return page.read().decode()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # the path that flushes and closes the log files
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def counter(page: str, metric: str, **labels: str) -> int:
    """The value of one counter line of a Prometheus page (0 if absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    match = re.search(rf"^{re.escape(metric)}\{{{re.escape(wanted)}\}} (\d+)$", page, re.MULTILINE)
    return int(match.group(1)) if match else 0


def writer_cpu(page: str) -> float | None:
    """The writer threads' CPU seconds from the page (`request_log_writer_cpu_seconds`)."""
    values = re.findall(r"^:tensorflow:serving:request_log_writer_cpu_seconds\{[^}]*\} ([0-9.e+-]+)$", page, re.MULTILINE)
    return sum(float(value) for value in values) if values else None


def read_back(prefix: str) -> dict:
    """Records and bytes in the published log files (TensorFlow's reader)."""
    import tensorflow as tf

    files = sorted(glob.glob(prefix + "-*.tfrecord"))
    records = sum(1 for path in files for _ in tf.data.TFRecordDataset(path))
    size = sum(os.path.getsize(path) for path in files)
    return {"files": len(files), "records": records, "bytes": size,
            "bytes_per_record": round(size / records, 1) if records else None,
            "unpublished": len(glob.glob(os.path.join(os.path.dirname(prefix), ".*.inprogress")))}


def run(seconds: float, rounds: int, run_dir: str, scratch: str) -> dict:
    base = train_tiny_model(run_dir)
    body = json.dumps({"signature_name": "predict_features", "instances": [sample_instance(base)]}).encode()
    prefix = os.path.join(scratch, "logs", "requests")
    servers = {"off": ConfiguredServer("off", base, scratch, None),
               "logging": ConfiguredServer("logging", base, scratch, prefix)}
    cells: dict[str, list[dict]] = {"off": [], "logging": []}
    try:
        for server in servers.values():
            server.wait_ready()
        for round_index in range(rounds):
            order = ["off", "logging"] if round_index % 2 == 0 else ["logging", "off"]
            for key in order:
                cpu = servers[key].cpu_seconds()
                cell = public(measure(servers[key].port, body, CONCURRENCY, seconds))
                cell["cpu_ms_per_request"] = round((servers[key].cpu_seconds() - cpu) * 1000 / cell["answered"], 4)
                cells[key].append(cell)
                print(f"round {round_index} {key}: {cell['throughput_rps']} req/s, p50 {cell['p50_ms']} ms, "
                      f"p99 {cell['p99_ms']} ms, server CPU {cell['cpu_ms_per_request']} ms/request, "
                      f"errors {cell['errors']}, load {cell['loadavg']}", flush=True)
        time.sleep(0.2)  # the writer's last burst of the last cell
        page = servers["logging"].metrics()
    finally:
        for server in servers.values():
            server.stop()
    answered = sum(cell["answered"] for cell in cells["logging"])
    written = read_back(prefix)
    ratios = [a["throughput_rps"] / b["throughput_rps"] for a, b in zip(cells["logging"], cells["off"], strict=True)]
    p50 = [a["p50_ms"] / b["p50_ms"] for a, b in zip(cells["logging"], cells["off"], strict=True)]
    cpu = [a["cpu_ms_per_request"] / b["cpu_ms_per_request"]
           for a, b in zip(cells["logging"], cells["off"], strict=True)]
    return {
        "command": ".venv/bin/python -m benchmarks.serving_logging",
        "request": "REST :predict, predict_features, 1 instance (row format), keep-alive connections",
        "concurrency": CONCURRENCY, "seconds_per_cell": seconds, "rounds": rounds,
        "batching_flags": list(BATCHING_FLAGS), "machine": {"cpus": os.cpu_count(), "loadavg_end": loadavg()},
        "cells": cells,
        "throughput_ratio": {"median": round(float(np.median(ratios)), 3), "min": round(min(ratios), 3),
                             "max": round(max(ratios), 3), "per_round": [round(r, 3) for r in ratios]},
        "p50_ratio_median": round(float(np.median(p50)), 3),
        "cpu_per_request_ratio": {"median": round(float(np.median(cpu)), 3), "min": round(min(cpu), 3),
                                  "max": round(max(cpu), 3)},
        "cost": round(1 - float(np.median(ratios)), 3), "target_cost": TARGET_COST,
        "logged": {"requests_answered": answered,
                   "queued": counter(page, ":tensorflow:serving:request_log_count", model_name=MODEL,
                                     status_code="OK"),
                   "dropped_queue_full": counter(page, ":tensorflow:serving:request_log_count", model_name=MODEL,
                                                 status_code="RESOURCE_EXHAUSTED"),
                   "writer_cpu_seconds": writer_cpu(page),
                   **written},
    }


def markdown(report: dict) -> str:
    ratio, logged = report["throughput_ratio"], report["logged"]
    rows = ["| round | req/s off | req/s logging | logging / off | p50 ms off / logging | "
            "server CPU ms/request off / logging |", "|---:|---:|---:|---:|---:|---:|"]
    for index, (off, on) in enumerate(zip(report["cells"]["off"], report["cells"]["logging"], strict=True)):
        rows.append(f"| {index} | {off['throughput_rps']} | {on['throughput_rps']} | "
                    f"{on['throughput_rps'] / off['throughput_rps']:.3f} | {off['p50_ms']} / {on['p50_ms']} | "
                    f"{off['cpu_ms_per_request']} / {on['cpu_ms_per_request']} |")
    cpu = report["cpu_per_request_ratio"]
    per_round = ratio["per_round"]
    quartiles = np.percentile(per_round, [25, 75])
    if quartiles[1] - quartiles[0] > report["target_cost"]:  # the noise between rounds is wider than the target
        verdict = (f"which this run cannot judge against the target of {report['target_cost']:.0%}: the "
                   f"middle half of the per-round ratios spans {quartiles[0]:.2f}–{quartiles[1]:.2f}, wider than "
                   "the target (the machine's other load, not the server, sets the rounds' throughput)")
    else:
        verdict = (f"{'within' if report['cost'] <= report['target_cost'] else 'above'} the target of "
                   f"{report['target_cost']:.0%}")
    loads = sorted(float(cell["loadavg"].split()[0]) for key in ("off", "logging") for cell in report["cells"][key]
                   if cell["loadavg"] != "n/a")
    lines = [HEADING, "",
             f"Batched REST throughput at concurrency {report['concurrency']} (`{' '.join(report['batching_flags'])}`, "
             f"single-row `predict_features`, the tiny model of the Serving section), `serving.server` with "
             "`logging_config` at `sampling_rate: 1.0` (the built-in `tfrecord` collector) against the same server "
             f"without, {report['rounds']} rounds of {report['seconds_per_cell']:g} s per server, the order "
             f"alternating, {report['machine']['cpus']} CPUs shared with the client threads and other work "
             f"(1-minute load average {loads[0]:g}–{loads[-1]:g}).", "", *rows, "",
             f"Throughput with logging / without: median {ratio['median']:.3f} (range {ratio['min']:.3f}–"
             f"{ratio['max']:.3f}), a cost of {report['cost']:.1%}, {verdict}; p50 logging / off: median {report['p50_ratio_median']:.3f}; server CPU per request "
             f"logging / off (the server process's user + system time over a cell, divided by the requests it "
             f"answered; less sensitive to the machine's other load than req/s): median {cpu['median']:.3f} "
             f"({cpu['min']:.3f}–{cpu['max']:.3f}). Nothing hidden "
             f"by dropping: the logging server answered {logged['requests_answered']:,} requests (warm-up included), "
             f"queued {logged['queued']:,} for the writer, dropped {logged['dropped_queue_full']:,} on a full queue, "
             f"and its files, read back after SIGTERM, hold {logged['records']:,} records in {logged['files']} "
             f"file(s), {logged['bytes_per_record']} bytes a record ({logged['unpublished']} left unpublished).", "",
             *writer_lines(report),
             f"Reproduce: `{report['command']}` (part of `make bench-serving`); raw numbers in "
             "`benchmarks/results/serving_logging.json`.", ""]
    return "\n".join(lines) + "\n"


def writer_lines(report: dict) -> list[str]:
    """The writer thread's own CPU per logged request against the server's CPU per request without logging."""
    logged = report["logged"]
    if not logged.get("writer_cpu_seconds") or not logged["queued"]:
        return []
    per_request_ms = logged["writer_cpu_seconds"] * 1000 / logged["queued"]
    off = float(np.median([cell["cpu_ms_per_request"] for cell in report["cells"]["off"]]))
    return [f"The writer thread's own CPU (`:tensorflow:serving:request_log_writer_cpu_seconds`, which the machine's "
            f"load does not inflate as it does wall-clock figures): {logged['writer_cpu_seconds']:.2f} s for "
            f"{logged['queued']:,} requests, {per_request_ms * 1000:.1f} µs a request, "
            f"{per_request_ms / off:.1%} of the server's median CPU per request without logging "
            f"({off:.3f} ms); the request path adds a sample draw and an append.", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="Measured seconds per server and round.")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds, each measuring both servers.")
    parser.add_argument("--run-dir", help="Reuse (or train into) this run directory instead of a temp one.")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave the json and the doc alone.")
    parser.add_argument("--render-only", action="store_true",
                        help="Measure nothing: rewrite the doc section from serving_logging.json.")
    args = parser.parse_args(argv)
    if args.render_only:
        with open(RESULTS) as handle:
            write_doc_section(HEADING, markdown(json.load(handle)))
        print(f"rewrote the '{HEADING[3:]}' section of {DOC} from {RESULTS}")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so the servers are stopped
    with tempfile.TemporaryDirectory(prefix="bench-serving-logging-") as scratch:
        report = run(args.seconds, args.rounds, args.run_dir or os.path.join(scratch, "run"), scratch)
    options = [f"--seconds {args.seconds:g}" if args.seconds != 3.0 else "",
               f"--rounds {args.rounds}" if args.rounds != 5 else ""]
    report["command"] = " ".join([".venv/bin/python -m benchmarks.serving_logging", *filter(None, options)])
    section = markdown(report)
    print(section)
    if args.no_write:
        return 0
    publish(report, RESULTS, HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
