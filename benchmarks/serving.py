"""REST :predict latency and throughput: this server vs. its stdlib predecessor vs. a naive Keras server.

  .venv/bin/python -m benchmarks.serving [--seconds 3] [--rounds 3] [--run-dir DIR]
      [--reference COMMIT[,COMMIT...] | --reference none] [--reference-tree PATH ...]

Trains a tiny model (synthetic data, 20,000 / 2,000 rows, 2 epochs, the
package's default model) unless `--run-dir` holds one. Then starts, each in
its own subprocess so none shares this process's GIL, on that one SavedModel:

- `serving.server` of this tree, without and with batching;
- the same two of each *reference* tree: by default commit `REFERENCE_COMMIT`,
  the last one whose REST server was the standard library's `http.server`
  with hand-written parsing (exported with `git archive` into a temp dir;
  `--reference-tree PATH` adds a checkout);
- a naive baseline (stdlib threaded http.server calling keras
  `model.predict` per request), and an aiohttp server answering a fixed
  body with no model (the client + HTTP floor, at concurrency 1).

and sends single-row `predict_features` requests from closed-loop client
threads in this process over keep-alive connections. The four serving.server
processes are measured in `--rounds` interleaved rounds (every concurrency
level 1, 8 and 32, every server, the order rotated each round), so machine
drift hits both trees alike; the naive baseline is measured once per level.
Each round also times the model itself, in this process (the signature
called directly with ready tensors, no server), so server overhead = server
p50 - direct p50. The batching servers run under a thin wrapper that counts
merged batch sizes (one Counter increment per batch), read after each cell.

Then, on this tree's `serving.server` without batching, concurrency 8 is
measured in `STALLED_PAIRS` alternating pairs without and with 16 stalled
connections (half a request line, half the headers, all but the end of a
body, or nothing at all): the spread of the pairs without is the noise the
stalled p99 is judged against. `/proc/loadavg` is recorded with every cell.

Writes benchmarks/results/serving.json and the "## Serving" section of
docs/benchmarks.md (replacing an older one).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from benchmarks.publish import DOC, publish, write_doc_section
from trainer.layout import SERVING_DIR, list_versions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "serving.json")
HEADING = "## Serving"  # this benchmark's section of docs/benchmarks.md
CONCURRENCY = (1, 8, 32)
STALLED_CLIENTS, STALLED_CONCURRENCY, STALLED_PAIRS = 16, 8, 4
MODEL = "imbalance"
BATCHING_FLAGS = ("--enable_batching", "--max_batch_size=32", "--batch_timeout_micros=1000")
# The last commit whose REST server was the standard library's http.server (fc867a7 moved it to aiohttp).
REFERENCE_COMMIT = "2b6d872"
WARMUP_SECONDS = 0.5

# Runs `serving.server` counting the rows of every merged batch; SIGUSR1 writes the counts to
# $BENCH_BATCH_SIZES and starts again. Self-contained, so it runs against any tree on PYTHONPATH.
BATCH_COUNTING_SERVER = """
import collections, json, os, signal, sys
from serving import batching, server
sizes = collections.Counter()
execute = batching._execute
def counted(batch):
    sizes[sum(task.rows for task in batch)] += 1
    execute(batch)
batching._execute = counted
def dump(*_):
    counts = dict(sizes)
    sizes.clear()
    target = os.environ["BENCH_BATCH_SIZES"]
    with open(target + ".tmp", "w") as handle:
        json.dump(counts, handle)
    os.replace(target + ".tmp", target)
signal.signal(signal.SIGUSR1, dump)
sys.exit(server.main(sys.argv[1:]))
"""


def train_tiny_model(run_dir: str) -> str:
    """Trains (or reuses) the tiny model; returns its serving_model base path."""
    base = os.path.join(run_dir, SERVING_DIR)
    if list_versions(base):
        return base
    from trainer.config import RunConfig
    from trainer.pipeline import train_and_export

    config = RunConfig(data="synthetic", synthetic_rows=(20000, 2000), epochs=2, verbose=0, output_dir=run_dir)
    train_and_export(config)
    return base


def latest_version(base: str) -> str:
    versions = list_versions(base)
    return versions[max(versions)]


def sample_instance(base: str) -> dict:
    """One realistic row for `predict_features`, from the signature's inputs."""
    import tensorflow as tf

    signature = tf.saved_model.load(latest_version(base)).signatures["predict_features"]
    _, specs = signature.structured_input_signature
    return {name: ("north" if spec.dtype == tf.string else 0.25) for name, spec in sorted(specs.items())}


class DirectCall:
    """The model's own cost, in this process, no server: `predict_features` called by keyword on ready
    tensors (TensorFlow's public call), and this tree's `Servable.run` on the decoded request (numpy in,
    tensors made, the flat call, numpy out: the model step of serving.server)."""

    def __init__(self, base: str, body: bytes):
        import tensorflow as tf

        from serving import codec
        from serving.servable import Servable

        path = latest_version(base)
        self._loaded = tf.saved_model.load(path)  # the function holds weak references
        self._function = self._loaded.signatures["predict_features"]
        self._servable = Servable(int(os.path.basename(path)), path)
        self._signature = self._servable.signatures["predict_features"]
        self._inputs, _ = codec.decode_predict(codec.parse_body(body), self._signature)
        self._tensors = {name: tf.constant(value, dtype=self._signature.inputs[name].dtype)
                         for name, value in self._inputs.items()}

    def measure(self, seconds: float) -> dict:
        keyword = self._time(lambda: self._function(**self._tensors), seconds)
        servable = self._time(lambda: self._servable.run(self._signature, self._inputs), seconds)
        return {"calls": int(keyword.size), "p50_ms": round(float(np.percentile(keyword, 50)), 3),
                "p99_ms": round(float(np.percentile(keyword, 99)), 3),
                "servable_run_p50_ms": round(float(np.percentile(servable, 50)), 3), "loadavg": loadavg()}

    @staticmethod
    def _time(call, seconds: float) -> np.ndarray:
        stop_at = time.perf_counter() + WARMUP_SECONDS
        while time.perf_counter() < stop_at:
            call()
        values = []
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            call()
            values.append(time.perf_counter() - began)
        return np.array(values) * 1000.0


# --- the naive baseline: what one writes without a serving system ---------------------------------


def naive_server(base: str, port: int) -> None:
    """Serves :predict with keras `model.predict` per request (runs in a subprocess)."""
    import keras
    import tensorflow as tf

    path = latest_version(base)
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


def echo_server(port: int) -> None:
    """The floor under any REST server here: aiohttp's low-level server answering every request with a
    fixed :predict-sized JSON body, no model, no decoding (runs in a subprocess)."""
    import asyncio

    from aiohttp import web

    body = json.dumps({"predictions": [{"class_ids": 0, "logits": -0.96, "probabilities": [0.89, 0.11],
                                        "scores": 0.11}]}).encode()

    async def handle(request: web.BaseRequest) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def serve() -> None:
        runner = web.ServerRunner(web.Server(handle, access_log=None))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


# --- servers ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return "n/a"


def export_tree(commit: str, into: str) -> str:
    """`serving/` and `trainer/` of `commit` (what `python -m serving.server` imports), unpacked under `into`."""
    os.makedirs(into, exist_ok=True)
    archive = os.path.join(into, "reference.tar")
    subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", "-o", archive, commit, "serving", "trainer"],
                   check=True)
    tree = os.path.join(into, "reference")
    with tarfile.open(archive) as handle:
        handle.extractall(tree, filter="data")
    return tree


class Server:
    """One server subprocess (`tree` None: the naive baseline)."""

    def __init__(self, key: str, label: str, base: str, tree: str | None, batching: bool, scratch: str):
        self.key, self.label, self.batching = key, label, batching
        self.port = free_port()
        self.batch_sizes_file = os.path.join(scratch, f"batch-sizes-{key}.json") if batching else None
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if tree in (None, "echo"):  # the naive baseline, or the HTTP floor
            mode = "--naive-server" if tree is None else "--echo-server"
            command, cwd = [sys.executable, "-m", "benchmarks.serving", mode, base, "--port", str(self.port)], ROOT
        else:
            flags = [f"--model_name={MODEL}", f"--model_base_path={base}", f"--rest_api_port={self.port}",
                     f"--port={free_port()}", "--file_system_poll_wait_seconds=0"]
            if batching:
                command = [sys.executable, "-c", BATCH_COUNTING_SERVER, *flags, *BATCHING_FLAGS]
                env["BENCH_BATCH_SIZES"] = self.batch_sizes_file
            else:
                command = [sys.executable, "-m", "serving.server", *flags]
            env["PYTHONPATH"], cwd = tree, tree
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        for _ in range(1200):  # up to 120 s for TF import and model load (several servers start at once)
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.label} did not start")

    def batch_sizes(self) -> dict[int, int] | None:
        """Merged batch sizes (rows -> batches) since the last call, or None without batching."""
        if self.batch_sizes_file is None:
            return None
        if os.path.exists(self.batch_sizes_file):
            os.remove(self.batch_sizes_file)
        self.process.send_signal(signal.SIGUSR1)
        for _ in range(200):
            if os.path.exists(self.batch_sizes_file):
                with open(self.batch_sizes_file) as handle:
                    return {int(rows): count for rows, count in json.load(handle).items()}
            time.sleep(0.01)
        return None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process has used so far, or None where /proc cannot tell."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --- load generation ------------------------------------------------------------------------------


def measure(port: int, body: bytes, concurrency: int, seconds: float) -> dict:
    """Closed-loop clients for `seconds` (after a short warm-up)."""
    path = f"/v1/models/{MODEL}:predict"
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    sent = [0] * concurrency  # every answered request, warm-up included (for CPU time per request)
    start_at = time.perf_counter() + WARMUP_SECONDS  # requests before this are not counted
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
            sent[index] += 1
            if start_at <= ended <= stop_at:  # completions in the window (slow requests count too)
                if ok:
                    latencies[index].append(ended - began)
                else:
                    errors[index] += 1
        connection.close()

    load = loadavg()
    client_cpu = time.process_time()  # this process: the client threads (and nothing else runs meanwhile)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client_cpu = time.process_time() - client_cpu
    values = np.array([value for per_client in latencies for value in per_client]) * 1000.0
    return {"concurrency": concurrency, "requests": int(values.size), "errors": int(sum(errors)),
            "p50_ms": round(float(np.percentile(values, 50)), 2) if values.size else None,
            "p99_ms": round(float(np.percentile(values, 99)), 2) if values.size else None,
            "throughput_rps": round(values.size / seconds, 1), "loadavg": load,
            "latencies_ms": values, "answered": sum(sent), "client_cpu_seconds": client_cpu}


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


def public(row: dict) -> dict:
    """A measurement without its raw latencies."""
    return {key: value for key, value in row.items() if key != "latencies_ms"}


def measure_stalled(port: int, body: bytes, seconds: float) -> dict:
    """STALLED_PAIRS alternating runs at STALLED_CONCURRENCY without, then with, STALLED_CLIENTS stalled connections.

    The spread of the runs without is the run-to-run noise of p99; the stalled runs' median p99 is
    within noise when it differs from the median without by no more than that spread.
    """
    pairs = []
    for _ in range(STALLED_PAIRS):
        without = measure(port, body, STALLED_CONCURRENCY, seconds)
        stalled = open_stalled(port, STALLED_CLIENTS)
        try:
            with_stalled = measure(port, body, STALLED_CONCURRENCY, seconds)
        finally:
            for sock in stalled:
                sock.close()
        pairs.append({"without": public(without), "with_stalled": public(with_stalled)})
    p99_without = [pair["without"]["p99_ms"] for pair in pairs]
    p99_with = [pair["with_stalled"]["p99_ms"] for pair in pairs]
    noise = max(p99_without) - min(p99_without)
    difference = float(np.median(p99_with) - np.median(p99_without))
    return {"stalled_clients": STALLED_CLIENTS, "concurrency": STALLED_CONCURRENCY, "pairs": pairs,
            "p99_without_median_ms": round(float(np.median(p99_without)), 2),
            "p99_with_median_ms": round(float(np.median(p99_with)), 2),
            "p99_noise_ms": round(noise, 2), "p99_difference_ms": round(difference, 2),
            "within_noise": bool(abs(difference) <= noise)}


# --- the run --------------------------------------------------------------------------------------


def summarize(cells: list[dict]) -> dict:
    """One server at one concurrency over the rounds: p50/p99 of all requests pooled, per-round figures."""
    values = np.concatenate([cell["latencies_ms"] for cell in cells])
    seconds = sum(cell["seconds"] for cell in cells)
    cpu = [cell["cpu_seconds"] for cell in cells]
    return {"concurrency": cells[0]["concurrency"], "requests": int(values.size),
            "errors": sum(cell["errors"] for cell in cells),
            "p50_ms": round(float(np.percentile(values, 50)), 2), "p99_ms": round(float(np.percentile(values, 99)), 2),
            "throughput_rps": round(values.size / seconds, 1),
            "cpu_ms_per_request": (round(sum(cpu) * 1000 / sum(cell["answered"] for cell in cells), 3)
                                   if None not in cpu else None),
            "client_cpu_ms_per_request": round(sum(cell["client_cpu_seconds"] for cell in cells) * 1000
                                               / sum(cell["answered"] for cell in cells), 3),
            "rounds": [{key: cell[key] for key in ("p50_ms", "p99_ms", "throughput_rps", "cpu_ms_per_request", "errors",
                                                   "loadavg")} for cell in cells]}


def same_round_ratios(new: list[dict], old: list[dict]) -> dict:
    """new / old per round (the two measured minutes apart at most), as the median and range over rounds."""
    ratios = {}
    for key in ("p50_ms", "p99_ms", "throughput_rps", "cpu_ms_per_request"):
        per_round = [a[key] / b[key] for a, b in zip(new, old, strict=True) if a[key] and b[key]]
        ratios[key] = {"median": round(float(np.median(per_round)), 3), "min": round(min(per_round), 3),
                       "max": round(max(per_round), 3)} if per_round else None
    return ratios


def http_stack(tree: str) -> str:
    """What a tree's REST server runs on, read from its serving/rest.py."""
    with open(os.path.join(tree, "serving", "rest.py")) as handle:
        return "aiohttp" if "aiohttp" in handle.read() else "stdlib http.server"


def run(seconds: float, rounds: int, run_dir: str, references: list[tuple[str, str]], scratch: str) -> dict:
    """Measures this tree's servers, each (name, tree) reference's, and the naive baseline; returns the report."""
    base = train_tiny_model(run_dir)
    instance = sample_instance(base)
    body = json.dumps({"signature_name": "predict_features", "instances": [instance]}).encode()
    specs = [("serving", "serving.server", ROOT, False), ("batching", "serving.server --enable_batching", ROOT, True)]
    for name, tree in references:
        label = f"{name} ({http_stack(tree)})"
        specs += [(f"ref:{name}", f"{label} serving.server", tree, False),
                  (f"ref:{name}:batching", f"{label} serving.server --enable_batching", tree, True)]
    servers = [Server(key, label, base, tree, batching, scratch) for key, label, tree, batching in specs]
    naive = Server("naive", "naive (keras model.predict)", base, None, False, scratch)
    echo = Server("echo", "aiohttp echo (no model)", base, "echo", False, scratch)
    direct = DirectCall(base, body)
    cells: dict[str, dict[int, list[dict]]] = {server.key: collections.defaultdict(list) for server in servers}
    batch_sizes: dict[str, dict[int, collections.Counter]] = {
        server.key: collections.defaultdict(collections.Counter) for server in servers if server.batching}
    direct_rounds, naive_rows, echo_rounds = [], [], []
    try:
        for server in [*servers, naive, echo]:
            server.wait_ready()
        for round_index in range(rounds):
            order = servers[round_index % len(servers):] + servers[:round_index % len(servers)]
            for concurrency in CONCURRENCY:
                for server in order:
                    server.batch_sizes()  # drop what earlier cells merged
                    cpu_before = server.cpu_seconds()
                    cell = measure(server.port, body, concurrency, seconds)
                    cpu_after = server.cpu_seconds()
                    cell["seconds"] = seconds
                    cell["cpu_seconds"] = cpu_after - cpu_before if cpu_before is not None else None
                    cell["cpu_ms_per_request"] = (round(cell["cpu_seconds"] * 1000 / cell["answered"], 3)
                                                  if cell["cpu_seconds"] is not None and cell["answered"] else None)
                    cells[server.key][concurrency].append(cell)
                    sizes = server.batch_sizes()
                    if sizes is not None:
                        batch_sizes[server.key][concurrency].update(sizes)
                    print(f"round {round_index} {server.label} c{concurrency}: p50 {cell['p50_ms']} ms, "
                          f"p99 {cell['p99_ms']} ms, {cell['throughput_rps']} req/s, server CPU "
                          f"{cell['cpu_ms_per_request']} ms/request, load {cell['loadavg']}", flush=True)
            direct_rounds.append(direct.measure(seconds))
            echo_rounds.append(public(measure(echo.port, body, 1, seconds)))
            print(f"round {round_index} direct call: p50 {direct_rounds[-1]['p50_ms']} ms (Servable.run "
                  f"{direct_rounds[-1]['servable_run_p50_ms']} ms); echo server at "
                  f"concurrency 1: p50 {echo_rounds[-1]['p50_ms']} ms", flush=True)
        for concurrency in CONCURRENCY:
            # Its requests take 100 ms to seconds: all rounds' time in one run, so its percentiles have samples.
            naive_rows.append(public(measure(naive.port, body, concurrency, seconds * rounds)))
            print("naive", naive_rows[-1], flush=True)
        naive.stop()
        stalled = measure_stalled(servers[0].port, body, seconds)
        print("stalled", json.dumps({key: value for key, value in stalled.items() if key != "pairs"}), flush=True)
    finally:
        for server in [*servers, naive, echo]:
            server.stop()
    results = {key: [summarize(per_level[c]) for c in CONCURRENCY] for key, per_level in cells.items()}
    results["naive"] = naive_rows
    # Server overhead at concurrency 1: the server's p50 minus the direct call's, within each round.
    overhead = {key: round(float(np.median([cell["p50_ms"] - call["p50_ms"] for cell, call in
                                            zip(cells[key][1], direct_rounds, strict=True)])), 3)
                for key in cells if not key.endswith("batching")}
    return {
        "command": ".venv/bin/python -m benchmarks.serving",
        "seconds_per_level": seconds,
        "rounds": rounds,
        "request": "REST :predict, predict_features, 1 instance (row format), keep-alive connections",
        "batching_flags": list(BATCHING_FLAGS),
        "references": [{"name": name, "http": http_stack(tree)} for name, tree in references],
        "labels": {server.key: server.label for server in servers},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": results,
        "direct_call": {"what": "predict_features(**tensors) in the benchmark process, ready tensors, no server; "
                                "servable_run: this tree's Servable.run on the decoded request",
                        "p50_ms": round(float(np.median([row["p50_ms"] for row in direct_rounds])), 3),
                        "servable_run_p50_ms": round(float(np.median([row["servable_run_p50_ms"]
                                                                      for row in direct_rounds])), 3),
                        "rounds": direct_rounds},
        "overhead_c1_ms": overhead,
        "echo_c1": {"what": "aiohttp answering a fixed body, no model: client + HTTP round trip at concurrency 1",
                    "p50_ms": round(float(np.median([row["p50_ms"] for row in echo_rounds])), 3),
                    "rounds": echo_rounds},
        "batch_sizes": {key: {str(c): dict(sorted(counter.items())) for c, counter in per_level.items()}
                        for key, per_level in batch_sizes.items()},
        "same_round_ratios": {
            name: {mode: {str(c): same_round_ratios(cells[new][c], cells[old][c]) for c in CONCURRENCY}
                   for mode, new, old in (("no_batching", "serving", f"ref:{name}"),
                                          ("batching", "batching", f"ref:{name}:batching"))}
            for name, _ in references},
        "stalled": stalled,
    }


# --- the report -----------------------------------------------------------------------------------


def ratio(value, reference) -> str:
    return f"{value / reference:.1f}x" if value and reference else "n/a"


def spread(values: list[float]) -> str:
    return f"{min(values):g}–{max(values):g}"


def mean_batch(histogram: dict) -> float | None:
    batches = sum(histogram.values())
    return sum(int(rows) * count for rows, count in histogram.items()) / batches if batches else None


def markdown(report: dict) -> str:
    results = report["results"]
    names = {**report["labels"], "naive": "naive (keras model.predict)"}
    cells = [cell for rows in results.values() for row in rows for cell in row.get("rounds", [row])]
    loads = sorted(float(cell["loadavg"].split()[0]) for cell in cells if cell["loadavg"] != "n/a")
    lines = ["## Serving", "",
             f"REST `:predict` (one instance, `predict_features`, the package's default model: a TabM ensemble on "
             f"PLE inputs), closed-loop clients on keep-alive connections, {report['machine']['cpus']} CPUs shared "
             f"by the client threads and the servers (1-minute load average {loads[0]:g}–{loads[-1]:g} during the "
             f"cells). The `serving.server` rows are {report['rounds']} interleaved rounds of "
             f"{report['seconds_per_level']:g} s per server and level (p50/p99 over all rounds' requests, per-round "
             "p50 range in brackets); the naive baseline is one run per level as long as all rounds. Server CPU "
             "ms/request is the server process's user + system CPU time over a cell divided by the requests it "
             "answered (TensorFlow's idle threads spin a while after each call, which dominates at concurrency 1); "
             "unlike wall-clock figures it hardly depends on what else the machine runs.", "",
             "| server | concurrency | p50 ms | p99 ms | req/s | server CPU ms/request | errors |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key, rows in results.items():
        for row in rows:
            per_round = f" [{spread([r['p50_ms'] for r in row['rounds']])}]" if row.get("rounds") else ""
            lines.append(f"| {names[key]} | {row['concurrency']} | {row['p50_ms']}{per_round} | {row['p99_ms']} | "
                         f"{row['throughput_rps']} | {row.get('cpu_ms_per_request') or '–'} | {row['errors']} |")
    lines += [""]
    for reference in report["references"]:
        name = reference["name"]
        lines += [f"This tree over {name} ({reference['http']}), same model, same machine, each ratio taken within "
                  "one round and then the median (range) over rounds; p50, p99 and server CPU per request: below 1 "
                  "is better, req/s: above 1 is better:", "",
                  "| batching | concurrency | p50 new/old | p99 new/old | req/s new/old | CPU/request new/old |",
                  "|---|---:|---:|---:|---:|---:|"]
        for mode, per_level in report["same_round_ratios"][name].items():
            for concurrency, ratios in per_level.items():
                figures = [f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})" if r else "n/a"
                           for r in (ratios["p50_ms"], ratios["p99_ms"], ratios["throughput_rps"],
                                     ratios["cpu_ms_per_request"])]
                lines.append(f"| {'yes' if mode == 'batching' else 'no'} | {concurrency} | {' | '.join(figures)} |")
        lines += [""]
    direct = report["direct_call"]
    overheads = [f"{names[key]} {value:.2f} ms" for key, value in report["overhead_c1_ms"].items()]
    servable_run = (f" This tree's `Servable.run` on the decoded request (tensors made from numpy, the flat "
                    f"call, numpy out: serving.server's model step): p50 {direct['servable_run_p50_ms']} ms."
                    if direct.get("servable_run_p50_ms") else "")
    lines += [f"The model alone (`predict_features` called by keyword in the benchmark process with ready tensors, "
              f"no server): p50 {direct['p50_ms']} ms (per round {spread([r['p50_ms'] for r in direct['rounds']])})."
              f"{servable_run} "
              f"Server overhead at concurrency 1 (server p50 − direct p50 within a round, median over rounds; the "
              f"client's own time included): {', '.join(overheads)}. The floor under any of them, aiohttp answering "
              f"a fixed body with no model and no decoding, same client: p50 {report['echo_c1']['p50_ms']} ms "
              f"(per round {spread([r['p50_ms'] for r in report['echo_c1']['rounds']])}).", ""]
    parts = []
    for key, per_level in report["batch_sizes"].items():
        for concurrency, histogram in per_level.items():
            average = mean_batch(histogram)
            if average is not None and concurrency != "1":
                most = max(histogram.items(), key=lambda item: item[1])[0]
                parts.append(f"{names[key]} at {concurrency}: mean {average:.1f} rows, mode {most}, "
                             f"{sum(histogram.values())} batches")
    if parts:
        lines += ["Merged batch sizes (rows per model call; full histograms in `serving.json`): "
                  + "; ".join(parts) + ".", ""]
    busiest = results["batching"][-1]
    if busiest.get("cpu_ms_per_request") and busiest.get("client_cpu_ms_per_request"):
        both = busiest["cpu_ms_per_request"] + busiest["client_cpu_ms_per_request"]
        lines += [f"CPU per request at concurrency {busiest['concurrency']} with batching: server "
                  f"{busiest['cpu_ms_per_request']} ms + the benchmark's client threads "
                  f"{busiest['client_cpu_ms_per_request']} ms = {both:.3f} ms, so {report['machine']['cpus']} idle "
                  f"CPUs could carry at most about {report['machine']['cpus'] * 1000 / both:,.0f} req/s of this "
                  "load with client and server on the same machine.", ""]
    naive = {row["concurrency"]: row for row in results["naive"]}
    serving = {row["concurrency"]: row for row in results["serving"]}
    lines += [f"Batching flags: `{' '.join(report['batching_flags'])}`. A lone request waits up to the "
              "batch timeout for company, so batching costs latency at concurrency 1 and pays off under "
              "concurrency. Against the naive baseline (keras `model.predict` per request, whose per-call "
              f"data-adapter overhead dominates), serving.server's p50 is {ratio(naive[1]['p50_ms'], serving[1]['p50_ms'])} "
              f"lower at concurrency 1 and its throughput {ratio(serving[32]['throughput_rps'], naive[32]['throughput_rps'])} "
              "higher at 32.", ""]
    lines += stalled_markdown(report.get("stalled"))
    if report.get("note"):  # context a run cannot measure itself (e.g. what the targets mean here)
        lines += [report["note"], ""]
    default = report["command"] == ".venv/bin/python -m benchmarks.serving"
    lines += [f"Reproduce: `{report['command']}`" + (" (or `make bench-serving`)" if default else
                                                     " (`make bench-serving` runs it with the default reference "
                                                     f"{REFERENCE_COMMIT} only)")
              + "; raw numbers in `benchmarks/results/serving.json`.", ""]
    return "\n".join(lines) + "\n"  # a blank line before the next section


def stalled_markdown(stalled: dict | None) -> list[str]:
    """The stalled-clients table: the same server and load, alternately without and with stalled connections."""
    if not stalled:
        return []
    lines = [f"Stalled clients: `serving.server` (no batching) at concurrency {stalled['concurrency']}, "
             f"{len(stalled['pairs'])} alternating pairs of runs without and with {stalled['stalled_clients']} "
             "other connections sitting stalled (half a request line, half the headers, all but the end of a body, "
             "or nothing sent).", "",
             "| pair | p50 ms without / with | p99 ms without / with | req/s without / with | errors |",
             "|---:|---:|---:|---:|---:|"]
    for index, pair in enumerate(stalled["pairs"], 1):
        a, b = pair["without"], pair["with_stalled"]
        lines.append(f"| {index} | {a['p50_ms']} / {b['p50_ms']} | {a['p99_ms']} / {b['p99_ms']} | "
                     f"{a['throughput_rps']} / {b['throughput_rps']} | {a['errors'] + b['errors']} |")
    verdict = "within" if stalled["within_noise"] else "outside"
    return lines + ["", f"Median p99 {stalled['p99_without_median_ms']} ms without, {stalled['p99_with_median_ms']} ms "
                    f"with stalled clients: a difference of {stalled['p99_difference_ms']:+g} ms, {verdict} the "
                    f"run-to-run spread of the runs without ({stalled['p99_noise_ms']} ms, max − min).", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="Measured seconds per server, level and round.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds over the serving.server processes.")
    parser.add_argument("--run-dir", help="Reuse (or train into) this run directory instead of a temp one.")
    parser.add_argument("--reference", default=REFERENCE_COMMIT,
                        help="Commits (comma-separated) whose serving.server is measured alongside this tree's "
                             "('none': none).")
    parser.add_argument("--reference-tree", action="append", default=[],
                        help="A checkout to measure as a reference too (repeatable).")
    parser.add_argument("--note", help="A paragraph added to the doc section (context the run cannot measure).")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave serving.json and the doc alone.")
    parser.add_argument("--render-only", action="store_true",
                        help="Measure nothing: rewrite the doc section from serving.json (with --note, if given).")
    parser.add_argument("--naive-server", metavar="BASE", help=argparse.SUPPRESS)
    parser.add_argument("--echo-server", metavar="BASE", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server:
        naive_server(args.naive_server, args.port)
        return 0
    if args.echo_server:
        echo_server(args.port)
        return 0
    if args.render_only:
        with open(RESULTS) as handle:
            report = json.load(handle)
        if args.note:
            report["note"] = args.note
            with open(RESULTS, "w") as handle:
                json.dump(report, handle, indent=1)
        write_doc_section(HEADING, markdown(report))
        print(f"rewrote the Serving section of {DOC} from {RESULTS}")
        return 0
    # A SIGTERM unwinds like an exception, so the server subprocesses are stopped (run's finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        commits = [] if args.reference.lower() == "none" else [c for c in args.reference.split(",") if c]
        references = [(commit, export_tree(commit, os.path.join(scratch, f"reference-{commit}"))) for commit in commits]
        references += [(os.path.basename(os.path.abspath(tree)), os.path.abspath(tree)) for tree in args.reference_tree]
        report = run(args.seconds, args.rounds, args.run_dir or os.path.join(scratch, "run"), references, scratch)
    options = [f"--seconds {args.seconds:g}" if args.seconds != 3.0 else "",
               f"--rounds {args.rounds}" if args.rounds != 3 else "",
               f"--reference {args.reference}" if args.reference != REFERENCE_COMMIT else ""]
    report["command"] = " ".join([".venv/bin/python -m benchmarks.serving", *filter(None, options)])
    if args.note:
        report["note"] = args.note
    section = markdown(report)
    print(section)
    if args.no_write:
        return 0
    publish(report, RESULTS, HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
