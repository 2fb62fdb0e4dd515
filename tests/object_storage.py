"""Object storage on loopback for the tests: a GCS emulator, a TLS proxy for TensorFlow, moto's S3.

* `gcp-storage-emulator` serves GCS's JSON API over plain HTTP. Beam (and
  google-cloud-storage) reach it through `STORAGE_EMULATOR_HOST`.
* TensorFlow's GCS file system has its endpoints compiled in
  (https://www.googleapis.com, https://storage.googleapis.com) and no
  emulator variable, but its libcurl honours `https_proxy` and
  `CURL_CA_BUNDLE`, and its auth honours `GOOGLE_AUTH_TOKEN_FOR_TESTING`.
  `TlsProxy` (this file, run as its own process) answers CONNECT, ends TLS
  with a throwaway CA's certificate for those hosts, and forwards each
  request to the emulator. It also works around two emulator bugs: a
  chunked request body would be stored with its chunk framing (the proxy
  de-chunks it and sends a Content-Length), and it rewrites the emulator's
  own `Location` (resumable upload sessions) back to the Google host, so
  uploads stay on the proxy.
* moto's server plays S3; boto3 (Beam's S3 file system) reaches it through
  `AWS_ENDPOINT_URL_S3`.

The servers are started from the packages the tests install, on free
loopback ports, and stopped by PID. The environment variables are set only
inside a test (monkeypatch). If a server cannot start, the tests that need
it are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import http.client
import http.server
import os
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import time
import urllib.parse

import pytest

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com", "oauth2.googleapis.com")
BIN = os.path.dirname(sys.executable)  # the venv's console scripts
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # cwd of the proxy (`-m tests.object_storage`)
START_SECONDS = 60


@dataclasses.dataclass(frozen=True)
class Server:
    """A started server: its URL (http://127.0.0.1:PORT) and process."""

    url: str
    process: subprocess.Popen

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.url).port


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(argv: list[str], log_path: str, port: int) -> Server:
    """Starts `argv`, waits until 127.0.0.1:`port` accepts connections; raises RuntimeError if it does not."""
    log = open(log_path, "wb")  # noqa: SIM115 (kept open for the process's lifetime)
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=REPO, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return Server(f"http://127.0.0.1:{port}", process)
        time.sleep(0.1)
    stop(process)
    with open(log_path, "rb") as handle:
        tail = handle.read().decode(errors="replace").strip().splitlines()[-3:]
    raise RuntimeError(f"{argv[0]} did not start on port {port}: {' | '.join(tail) or 'no output'}")


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so a killed pytest worker (no fixture teardown)
    leaves no emulator or proxy running (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def stop(process: subprocess.Popen) -> None:
    """Stops a started server by its PID (its own session: the whole group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def make_certificates(directory: str) -> tuple[str, str, str]:
    """A throwaway CA and a certificate for Google's storage hosts: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject, issuer, public_key, signing_key, ca: bool, names=()):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                            critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imbalance-tf test CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GOOGLE_HOSTS[0])])
    leaf = build(leaf_name, ca_name, key.public_key(), ca_key, False, GOOGLE_HOSTS)
    paths = tuple(os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem"))
    pem = serialization.Encoding.PEM
    for path, data in zip(paths, (ca.public_bytes(pem), leaf.public_bytes(pem),
                                  key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption())), strict=True):
        with open(path, "wb") as handle:
            handle.write(data)
    return paths


class TlsProxy(http.server.BaseHTTPRequestHandler):
    """CONNECT to a Google host -> TLS with the test certificate -> each request forwarded to the emulator."""

    protocol_version = "HTTP/1.1"
    upstream = ("127.0.0.1", 0)  # set by `serve_proxy`
    tls: ssl.SSLContext

    def log_message(self, *args) -> None:  # quiet: the test log holds the emulator's lines
        pass

    def do_CONNECT(self) -> None:  # noqa: N802 (http.server's naming)
        self.tunnel_host = self.path.split(":")[0]
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.connection = self.tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = socketserver._SocketWriter(self.connection)
        self.close_connection = False  # go on reading requests inside the tunnel

    def _forward(self) -> None:
        body = self._body()
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "transfer-encoding", "content-length", "proxy-connection",
                                        "connection")}
        headers["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"  # the emulator builds URLs from its own Host
        headers["Content-Length"] = str(len(body))
        if not body and self.command == "POST" and "uploadType=media" in self.path:
            response, payload = self._empty_upload(headers)
        else:
            response, payload = self._upstream(self.command, self.path, body, headers)
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() in ("transfer-encoding", "content-length", "connection", "date", "server"):
                continue
            if key.lower() == "location":  # resumable upload sessions: back through this proxy
                value = value.replace(f"http://{headers['Host']}", f"https://{self.tunnel_host}")
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _upstream(self, method: str, path: str, body: bytes, headers: dict) -> tuple[http.client.HTTPResponse, bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    def _empty_upload(self, headers: dict) -> tuple[http.client.HTTPResponse, bytes]:
        """A zero-byte media upload (TensorFlow's folder markers), which crashes the emulator, made resumable."""
        response, payload = self._upstream("POST", self.path.replace("uploadType=media", "uploadType=resumable"),
                                           b"", headers)
        location = response.getheader("Location")
        if response.status != 200 or not location:
            return response, payload
        parts = urllib.parse.urlsplit(location)
        return self._upstream("PUT", f"{parts.path}?{parts.query}", b"", headers)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward  # noqa: N815


def serve_proxy(port: int, upstream_port: int, cert: str, key: str) -> None:
    """Runs the TLS proxy on 127.0.0.1:`port` until killed (`python -m tests.object_storage ...`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    TlsProxy.upstream, TlsProxy.tls = ("127.0.0.1", upstream_port), context
    http.server.ThreadingHTTPServer.daemon_threads = True
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), TlsProxy) as server:
        server.serve_forever()


@dataclasses.dataclass(frozen=True)
class Gcs:
    """The GCS emulator and TensorFlow's proxy to it; `environment()` is what a process needs to use them."""

    emulator: Server
    proxy: Server
    ca_bundle: str

    def environment(self) -> dict[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": self.emulator.url,  # Beam, google-cloud-storage
            "https_proxy": f"http://127.0.0.1:{self.proxy.port}",  # TensorFlow's libcurl
            "CURL_CA_BUNDLE": self.ca_bundle,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "offline-test-token",  # TensorFlow: no token lookup
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        }


@dataclasses.dataclass(frozen=True)
class S3:
    """moto's S3 server; `environment()` is what a process needs to use it (boto3 reads these)."""

    server: Server

    def environment(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_S3": self.server.url, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def gcs_servers(tmp_path_factory) -> Gcs:
    """The GCS emulator (in memory) and the TLS proxy, for the whole session."""
    directory = str(tmp_path_factory.mktemp("gcs"))
    started: list[Server] = []
    try:
        port = free_port()
        started.append(start_server([os.path.join(BIN, "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
                                     "--port", str(port), "--in-memory", "--quiet"],
                                    os.path.join(directory, "emulator.log"), port))
        ca, cert, key = make_certificates(directory)
        proxy_port = free_port()
        started.append(start_server([sys.executable, "-m", "tests.object_storage", str(proxy_port), str(port),
                                     cert, key], os.path.join(directory, "proxy.log"), proxy_port))
    except (RuntimeError, OSError, ImportError) as error:
        for server in started:
            stop(server.process)
        pytest.skip(f"the GCS emulator cannot start here: {error}")
    yield Gcs(started[0], started[1], ca)
    for server in started:
        stop(server.process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3:
    """moto's S3 server, for the whole session."""
    directory = str(tmp_path_factory.mktemp("s3"))
    port = free_port()
    try:
        server = start_server([os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              os.path.join(directory, "moto.log"), port)
    except (RuntimeError, OSError) as error:
        pytest.skip(f"moto's S3 server cannot start here: {error}")
    yield S3(server)
    stop(server.process)


def create_gcs_bucket(gcs: Gcs, name: str) -> str:
    """Creates a bucket on the emulator (JSON API); returns gs://name."""
    _create_bucket(gcs.emulator.port, "POST", "/storage/v1/b?project=test", name, body=f'{{"name": "{name}"}}',
                   headers={"Content-Type": "application/json"})
    return f"gs://{name}"


def create_s3_bucket(s3: S3, name: str) -> str:
    """Creates a bucket on moto; returns s3://name."""
    _create_bucket(s3.server.port, "PUT", f"/{name}", name)
    return f"s3://{name}"


def _create_bucket(port: int, method: str, path: str, name: str, **request) -> None:
    """One request to a store on loopback; 200 (made) or 409 (there already) is success."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, **request)
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status not in (200, 409):
        raise RuntimeError(f"cannot create bucket {name}: HTTP {response.status}")


@pytest.fixture
def gcs(gcs_servers, monkeypatch, request) -> str:
    """A fresh bucket on the emulator, with this test's environment pointing Beam and TensorFlow at it."""
    for key, value in gcs_servers.environment().items():
        monkeypatch.setenv(key, value)
    return create_gcs_bucket(gcs_servers, _bucket_name(request, 50))


@pytest.fixture
def s3(s3_server, monkeypatch, request) -> str:
    """A fresh bucket on moto, with this test's environment pointing boto3 (Beam) at it."""
    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    return create_s3_bucket(s3_server, _bucket_name(request, 40))


def _bucket_name(request, length: int) -> str:
    """A bucket name of the test's own (at most `length` characters of it), unique per process and call."""
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:length].strip("-")
    return f"{name}-{os.getpid()}-{time.monotonic_ns() % 10**6}"


if __name__ == "__main__":  # the proxy's own process: PORT UPSTREAM_PORT CERT KEY
    serve_proxy(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
