"""REST :predict latency and throughput: this server vs. a naive Keras server.

  .venv/bin/python -m benchmarks.serving [--seconds 4] [--run-dir DIR]

Trains a tiny model (synthetic data, 20,000 / 2,000 rows, 2 epochs) unless
`--run-dir` holds one, then for each server -- `serving.server` without
batching, with batching, and a naive baseline (stdlib threaded http.server
calling keras `model.predict` per request) -- sends single-row
`predict_features` requests at concurrency 1, 8 and 32 for `--seconds` each,
from client threads in this process over keep-alive connections. Each server
runs in its own subprocess so it does not share this process's GIL. Then, on
`serving.server` without batching, concurrency 8 is measured again right
before and while 16 stalled clients hold connections open (half a request
line, half the headers, all but the end of a body, or nothing at all).

Writes benchmarks/results/serving.json and the "## Serving" section of
docs/benchmarks.md (replacing an older one).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "serving.json")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
CONCURRENCY = (1, 8, 32)
STALLED_CLIENTS, STALLED_CONCURRENCY = 16, 8
MODEL = "imbalance"
BATCHING_FLAGS = ("--enable_batching", "--max_batch_size=32", "--batch_timeout_micros=1000")


def train_tiny_model(run_dir: str) -> str:
    """Trains (or reuses) the tiny model; returns its serving_model base path."""
    base = os.path.join(run_dir, "serving_model")
    if os.path.isdir(base) and any(name.isdigit() for name in os.listdir(base)):
        return base
    from trainer.config import RunConfig
    from trainer.pipeline import train_and_export

    config = RunConfig(data="synthetic", synthetic_rows=(20000, 2000), epochs=2, verbose=0, output_dir=run_dir)
    train_and_export(config)
    return base


def sample_instance(base: str) -> dict:
    """One realistic row for `predict_features`, from the signature's inputs."""
    import tensorflow as tf

    version = max(name for name in os.listdir(base) if name.isdigit())
    signature = tf.saved_model.load(os.path.join(base, version)).signatures["predict_features"]
    _, specs = signature.structured_input_signature
    return {name: ("north" if spec.dtype == tf.string else 0.25) for name, spec in sorted(specs.items())}


# --- the naive baseline: what one writes without a serving system ---------------------------------


def naive_server(base: str, port: int) -> None:
    """Serves :predict with keras `model.predict` per request (runs in a subprocess)."""
    import keras
    import tensorflow as tf

    version = max(name for name in os.listdir(base) if name.isdigit())
    path = os.path.join(base, version)
    _, specs = tf.saved_model.load(path).signatures["predict_features"].structured_input_signature
    inputs = {name: keras.Input(shape=(), dtype=spec.dtype.name, name=name) for name, spec in specs.items()}
    model = keras.Model(inputs, keras.layers.TFSMLayer(path, call_endpoint="predict_features")(inputs))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # Same socket setting as serving.rest, so the comparison is about the model call.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self):  # noqa: N802 - the stdlib's naming
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            instances = request["instances"]
            features = {name: np.array([row[name] for row in instances],
                                       dtype=object if spec.dtype == tf.string else np.float32)
                        for name, spec in specs.items()}
            outputs = model.predict(features, verbose=0)
            predictions = [{key: value[i].tolist() for key, value in outputs.items()} for i in range(len(instances))]
            body = json.dumps({"predictions": predictions}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

    Server(("127.0.0.1", port), Handler).serve_forever()


# --- load generation ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(kind: str, base: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if kind == "naive":
        command = [sys.executable, "-m", "benchmarks.serving", "--naive-server", base, "--port", str(port)]
    else:
        command = [sys.executable, "-m", "serving.server", f"--model_name={MODEL}", f"--model_base_path={base}",
                   f"--rest_api_port={port}", f"--port={free_port()}", "--file_system_poll_wait_seconds=0"]
        if kind == "batching":
            command += BATCHING_FLAGS
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):  # up to 60 s for TF import and model load
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


def measure(port: int, body: bytes, concurrency: int, seconds: float) -> dict:
    """Closed-loop clients for `seconds` (after a short warm-up)."""
    path = f"/v1/models/{MODEL}:predict"
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start_at = time.perf_counter() + 0.5  # warm-up: requests before this are not counted
    stop_at = start_at + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                break
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            ended = time.perf_counter()
            if start_at <= ended <= stop_at:  # completions in the window (slow requests count too)
                if ok:
                    latencies[index].append(ended - began)
                else:
                    errors[index] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    values = np.array([value for per_client in latencies for value in per_client]) * 1000.0
    return {"concurrency": concurrency, "requests": int(values.size), "errors": int(sum(errors)),
            "p50_ms": round(float(np.percentile(values, 50)), 2) if values.size else None,
            "p99_ms": round(float(np.percentile(values, 99)), 2) if values.size else None,
            "throughput_rps": round(values.size / seconds, 1)}


def open_stalled(port: int, count: int) -> list[socket.socket]:
    """`count` connections, each stopped partway through a request (or before it)."""
    path = f"/v1/models/{MODEL}:predict".encode()
    partial = [b"POST " + path[:10], b"POST " + path + b" HTTP/1.1\r\nContent-Le",
               b"POST " + path + b" HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"instances\": [", b""]
    sockets = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(partial[index % len(partial)])
        sockets.append(sock)
    return sockets


def measure_stalled(port: int, body: bytes, seconds: float) -> dict:
    """Concurrency STALLED_CONCURRENCY without, then with, STALLED_CLIENTS stalled connections."""
    without = measure(port, body, STALLED_CONCURRENCY, seconds)
    stalled = open_stalled(port, STALLED_CLIENTS)
    try:
        with_stalled = measure(port, body, STALLED_CONCURRENCY, seconds)
    finally:
        for sock in stalled:
            sock.close()
    return {"stalled_clients": STALLED_CLIENTS, "without": without, "with_stalled": with_stalled}


def run(seconds: float, run_dir: str) -> dict:
    base = train_tiny_model(run_dir)
    body = json.dumps({"signature_name": "predict_features", "instances": [sample_instance(base)]}).encode()
    results = {}
    for kind in ("serving", "batching", "naive"):
        port = free_port()
        process = start_server(kind, base, port)
        try:
            results[kind] = [measure(port, body, concurrency, seconds) for concurrency in CONCURRENCY]
            if kind == "serving":
                stalled = measure_stalled(port, body, seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
        print(kind, json.dumps(results[kind]), flush=True)
    return {
        "command": ".venv/bin/python -m benchmarks.serving",
        "seconds_per_level": seconds,
        "request": "REST :predict, predict_features, 1 instance (row format), keep-alive connections",
        "batching_flags": list(BATCHING_FLAGS),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": results,
        "stalled": stalled,
    }


def ratio(value, reference) -> str:
    return f"{value / reference:.1f}x" if value and reference else "n/a"


def markdown(report: dict) -> str:
    names = {"serving": "serving.server", "batching": "serving.server --enable_batching",
             "naive": "naive (keras model.predict)"}
    naive = {row["concurrency"]: row for row in report["results"]["naive"]}
    lines = ["## Serving", "",
             f"REST `:predict` (one instance, `predict_features`), closed-loop clients on keep-alive connections, "
             f"{report['seconds_per_level']:g} s per level, {report['machine']['cpus']} CPUs; client threads and "
             "the server share the machine. Ratios are against the naive baseline at the same concurrency "
             "(throughput: higher is better; p50: naive / this, higher is better).", "",
             "| server | concurrency | p50 ms | p99 ms | req/s | errors | req/s vs naive | p50 speed-up vs naive |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, rows in report["results"].items():
        for row in rows:
            base = naive[row["concurrency"]]
            lines.append(f"| {names[kind]} | {row['concurrency']} | {row['p50_ms']} | {row['p99_ms']} | "
                         f"{row['throughput_rps']} | {row['errors']} | {ratio(row['throughput_rps'], base['throughput_rps'])} | "
                         f"{ratio(base['p50_ms'], row['p50_ms'])} |")
    lines += ["", f"Batching flags: `{' '.join(report['batching_flags'])}`. A lone request waits up to the "
              "batch timeout for company, so batching costs latency at concurrency 1 and pays off under "
              "concurrency (`--batch_timeout_micros=0` only merges what queues up while a batch runs). "
              "`serving.server` answers REST on aiohttp (one event loop for the connections, the models in a "
              "thread pool); the naive server is the stdlib's threaded http.server with TCP_NODELAY, and its "
              "cost is keras `model.predict` per request (per-call data-adapter and step-function overhead; "
              "its throughput does not grow with client threads here), not the HTTP layer.", ""]
    lines += stalled_markdown(report.get("stalled"))
    if report.get("note"):  # context a run cannot measure itself (e.g. a machine shared with other jobs)
        lines += [report["note"], ""]
    lines += [f"Reproduce: `{report['command']}` (or `make bench-serving`); raw numbers in "
              "`benchmarks/results/serving.json`.", ""]
    return "\n".join(lines) + "\n"  # a blank line before the next section


def stalled_markdown(stalled: dict | None) -> list[str]:
    """The stalled-clients table: the same server and load, without and with stalled connections."""
    if not stalled:
        return []
    lines = [f"Stalled clients: `serving.server` (no batching) at concurrency {stalled['without']['concurrency']}, "
             f"measured right before and while {stalled['stalled_clients']} other connections sit stalled "
             "(half a request line, half the headers, all but the end of a body, or nothing sent).", "",
             "| run | p50 ms | p99 ms | req/s | errors |", "|---|---:|---:|---:|---:|"]
    for key, name in (("without", "no stalled clients"), ("with_stalled", f"{stalled['stalled_clients']} stalled clients")):
        row = stalled[key]
        lines.append(f"| {name} | {row['p50_ms']} | {row['p99_ms']} | {row['throughput_rps']} | {row['errors']} |")
    return lines + [""]


def write_doc_section(section: str) -> None:
    """Replaces the "## Serving" section of docs/benchmarks.md, or appends it."""
    text = open(DOC).read() if os.path.exists(DOC) else "# Benchmarks\n\n"
    start = text.find("## Serving\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as handle:
        handle.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="Measured seconds per concurrency level.")
    parser.add_argument("--run-dir", help="Reuse (or train into) this run directory instead of a temp one.")
    parser.add_argument("--naive-server", metavar="BASE", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server:
        naive_server(args.naive_server, args.port)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        report = run(args.seconds, args.run_dir or os.path.join(scratch, "run"))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as handle:
        json.dump(report, handle, indent=1)
    write_doc_section(markdown(report))
    print(f"wrote {RESULTS} and the Serving section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
