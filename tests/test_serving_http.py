"""The REST listener as plain HTTP/1.1 (RFC 9112), spoken over raw sockets: stalled clients, bodies, limits.

The reference is the HTTP protocol itself, written byte by byte here, and the
served model's arithmetic (`y = 0.5 x + 2`, tests/test_serving_models.py).
The server runs its models on a pool of 2 threads, fewer than the stalled
clients, so a design that gave each connection a worker would hang here.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import socket
import weakref

import pytest

from serving import rest
from serving.app import ServerOptions, start
from tests.test_serving_models import MODEL, save_conformance_model

pytestmark = pytest.mark.slow  # every test talks to a started server (`small_pool`)

PATH = f"/v1/models/{MODEL}:predict"
BODY = json.dumps({"instances": [1.0, 2.0, 5.0]}).encode()
EXPECTED = {"predictions": [2.5, 3.0, 4.5]}


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory):
    base = tmp_path_factory.mktemp("http") / "model"
    save_conformance_model(str(base / "1"))
    options = ServerOptions(MODEL, str(base), port=None, rest_api_port=0, file_system_poll_wait_seconds=0,
                            rest_api_num_threads=2, max_request_bytes=1 << 16)
    with start(options) as server:
        yield server


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.rest_port), timeout=30)


def _request(body: bytes = BODY, path: str = PATH, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{extra}"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


# Bytes received past one response (the start of a pipelined next one), kept for the next read.
_UNREAD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length body, parsed by hand; what follows it stays for the next call."""
    data = _UNREAD.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, rest_ = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    length = int(headers["content-length"])
    while len(rest_) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest_ += chunk
    _UNREAD[sock] = rest_[length:]
    return int(status_line.split(" ")[1]), headers, rest_[:length]


def _predict_over_http_client(server) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        connection.request("POST", PATH, BODY, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        connection.close()


def test_stalled_clients_do_not_block_the_others(small_pool):
    stalled = [_connect(small_pool) for _ in range(8)]
    try:
        stalled[0].sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nContent-Le")  # half the headers
        stalled[1].sendall(b"GET /v1/models/")  # half the request line
        for sock in stalled[2:6]:
            sock.sendall(_request()[:-7])  # everything but the end of the body
        # stalled[6:] connected and said nothing.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: _predict_over_http_client(small_pool), range(24)))
        assert answers == [EXPECTED] * 24
        stalled[2].sendall(_request()[-7:])  # a stalled client that resumes is answered normally
        status, _, body = _read_response(stalled[2])
        assert (status, json.loads(body)) == (200, EXPECTED)
    finally:
        for sock in stalled:
            sock.close()


def test_a_body_that_stops_arriving_is_a_408_and_the_connection_is_closed(small_pool, monkeypatch):
    monkeypatch.setattr(rest, "BODY_TIMEOUT_SECONDS", 0.2)
    with _connect(small_pool) as sock:
        sock.sendall(_request()[:-5])
        status, headers, body = _read_response(sock)
        assert status == 408 and "error" in json.loads(body)
        assert headers.get("connection", "").lower() == "close"
        assert sock.recv(1) == b""  # closed by the server


def test_keep_alive_pipelining_and_chunked_bodies(small_pool):
    with _connect(small_pool) as sock:
        sock.sendall(_request() + _request())  # two requests in one write (pipelined)
        for _ in range(2):
            status, headers, body = _read_response(sock)
            assert (status, json.loads(body)) == (200, EXPECTED)
            assert headers["content-type"].startswith("application/json")
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(BODY[i:i + 7]), BODY[i:i + 7]) for i in range(0, len(BODY), 7))
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                     + chunks + b"0\r\n\r\n")
        status, _, body = _read_response(sock)  # the same connection, still open
        assert (status, json.loads(body)) == (200, EXPECTED)


def test_limits_and_methods(small_pool):
    with _connect(small_pool) as sock:  # a declared length over --max_request_bytes: 413 before any body is sent
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Length: {1 << 20}\r\n\r\n".encode())
        status, headers, body = _read_response(sock)
        assert status == 413 and "exceeds" in json.loads(body)["error"]
        assert headers.get("connection", "").lower() == "close"
    with _connect(small_pool) as sock:  # a chunked body over the limit, whose length was never declared
        chunk = b"x" * 50_000
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                     + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2 + b"0\r\n\r\n")
        status, _, body = _read_response(sock)
        assert status == 413 and "exceeds" in json.loads(body)["error"]
    for method in ("PUT", "DELETE", "PATCH"):
        with _connect(small_pool) as sock:
            sock.sendall(f"{method} {PATH} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".encode())
            status, _, body = _read_response(sock)
            assert status == 405 and "error" in json.loads(body)
    with _connect(small_pool) as sock:  # HTTP/1.0 still works
        sock.sendall(f"POST {PATH} HTTP/1.0\r\nContent-Length: {len(BODY)}\r\n\r\n".encode() + BODY)
        status, _, body = _read_response(sock)
        assert (status, json.loads(body)) == (200, EXPECTED)
