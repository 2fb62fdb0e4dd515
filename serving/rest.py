"""TF Serving's REST API on a threaded stdlib HTTP server.

Routes (as tensorflow_model_server):
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   tf.Examples as JSON
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:regress    tf.Examples as JSON

Each connection gets its own thread, so a slow client only holds its own
thread; the socket timeout bounds how long it can hold it. Errors are
`{"error": "..."}` with TF Serving's HTTP status for the canonical code.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from serving import codec, example_json, monitoring
from serving.errors import ServingError, as_serving_error, invalid_argument
from serving.service import SIGNATURE_DEF_FIELD, ModelRef, ModelService
from trainer.export import parse_version

_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<action>/metadata|:[A-Za-z]+)?$")
SOCKET_TIMEOUT_SECONDS = 30.0  # a stalled client's thread is released after this

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # do not let open keep-alive connections block shutdown
    request_queue_size = 256  # a burst of concurrent connects must not be refused


def make_rest_server(service: ModelService, host: str, port: int, max_request_bytes: int,
                     metrics: monitoring.Metrics | None = None, metrics_path: str | None = None
                     ) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server; port 0 picks a free port.

    Args:
      service: The API the handlers call.
      host: Address to bind.
      port: Port to bind.
      max_request_bytes: Larger bodies are refused with 413 unread.
      metrics: Where `/v1/` requests are counted and timed, or None.
      metrics_path: The path serving `metrics` as a Prometheus page, or None.
    """

    class Handler(_Handler):
        pass

    Handler.service = service
    Handler.max_request_bytes = max_request_bytes
    Handler.metrics = metrics
    Handler.metrics_path = metrics_path
    return _Server((host, port), Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    timeout = SOCKET_TIMEOUT_SECONDS
    server_version = "imbalance-serving"
    service: ModelService
    max_request_bytes: int
    metrics: monitoring.Metrics | None
    metrics_path: str | None

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without TCP_NODELAY,
        # Nagle's algorithm holds the body until the client's delayed ACK
        # (~40 ms on Linux) on every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._send(405, {"error": "Method not allowed: use GET or POST"})

    do_DELETE = do_PATCH = do_PUT  # noqa: N815

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)

    def _handle(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if self.metrics_path is not None and path == self.metrics_path:
            data = self.metrics.render().encode()
            return self._send_bytes(200, data, monitoring.CONTENT_TYPE)
        started = time.perf_counter()
        code = "OK"
        try:
            status, payload = self._dispatch(method)
        except ServingError as error:
            code, status, payload = error.code.name, error.http_status, {"error": error.message}
        except _BodyTooLarge as error:
            self.close_connection = True  # the unread body makes the connection unusable
            code, status, payload = "RESOURCE_EXHAUSTED", 413, {"error": str(error)}
        except RecursionError:  # a request nested deeper than any handler can walk: the client's doing
            code, status, payload = "INVALID_ARGUMENT", 400, {"error": "Request JSON is nested too deeply"}
        except Exception as error:  # a bug: answer 500 and keep serving
            log.exception("internal error on %s %s", method, self.path)
            wrapped = as_serving_error(error)
            code, status, payload = wrapped.code.name, wrapped.http_status, {"error": wrapped.message}
        if self.metrics is not None and path.startswith("/v1/"):
            name, api = _metric_labels(path)
            self.metrics.record(name, api, "REST", code, (time.perf_counter() - started) * 1e6)
        self._send(status, payload)

    def _dispatch(self, method: str) -> tuple[int, dict]:
        path = urllib.parse.urlsplit(self.path).path
        if not path.startswith("/v1/"):
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Not found: {method} {path}")
        match = _ROUTE.match(path)
        if not match:
            raise invalid_argument(f"Malformed request: {method} {path}")
        ref = _model_ref(match)
        action = match["action"]
        if method == "GET" and action is None:
            return 200, _message_dict(self.service.status(ref))
        if method == "GET" and action == "/metadata":
            return 200, _metadata_json(self.service, ref)
        if method == "POST" and action in (":predict", ":classify", ":regress"):
            request = codec.parse_body(self._read_body())
            signature_name = request.get("signature_name")
            if signature_name is not None and not isinstance(signature_name, str):
                raise invalid_argument("'signature_name' key must be a string value.")
            servable = self.service.resolve(ref)  # held until the answer is encoded, whatever swaps meanwhile
            if action == ":predict":
                signature = servable.predict_signature(signature_name, codec.named_inputs(request))
                inputs, row_format = codec.decode_predict(request, signature)
                result = self.service.predict(servable, signature.name, inputs)
                return 200, codec.encode_predict(result.outputs, row_format)
            examples = example_json.examples_from_json(request)
            if action == ":classify":
                result = self.service.classify(servable, signature_name, examples)
                return 200, example_json.encode_classify(result.outputs["rows"])
            result = self.service.regress(servable, signature_name, examples)
            return 200, example_json.encode_regress(result.outputs["values"])
        raise invalid_argument(f"Malformed request: {method} {path}")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise invalid_argument("Invalid Content-Length header") from None
        if length < 0:
            raise invalid_argument("Invalid Content-Length header")
        if length > self.max_request_bytes:
            raise _BodyTooLarge(f"Request body of {length} bytes exceeds the limit of {self.max_request_bytes} bytes")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise invalid_argument("Malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return bytes(body)
            if len(body) + size > self.max_request_bytes:
                raise _BodyTooLarge(f"Request body exceeds the limit of {self.max_request_bytes} bytes")
            body += self.rfile.read(size)
            self.rfile.readline(8)  # the CRLF after each chunk

    def _send(self, status: int, payload: dict) -> None:
        try:
            data = json.dumps(payload).encode("utf-8")
        except (TypeError, ValueError) as error:  # a bug in an encoder: still answer, never drop the connection
            log.error("unencodable response to %s: %s", self.path, error)
            status, data = 500, json.dumps({"error": f"Failed to encode the response as JSON: {error}"}).encode()
        self._send_bytes(status, data, "application/json")

    def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client left; nothing to tell it
            self.close_connection = True


def _metric_labels(path: str) -> tuple[str, str]:
    """(model name, API) of a /v1/ path, as http_server.cc records them ("" where the path has none)."""
    match = _ROUTE.match(path)
    if not match:
        return "", ""
    action = match["action"] or ""
    return urllib.parse.unquote(match["name"]), action[1:].lower() if action.startswith(":") else ""


class _BodyTooLarge(Exception):
    """The declared body exceeds --max_request_bytes (HTTP 413)."""


def _model_ref(match: re.Match) -> ModelRef:
    name = urllib.parse.unquote(match["name"])
    version = match["version"]
    if version is not None:
        # Versions are looked up in memory only; they must be plain integers.
        number = parse_version(version)
        if number is None:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
        return ModelRef(name, version=number)
    label = urllib.parse.unquote(match["label"]) if match["label"] else None
    return ModelRef(name, label=label)


def _message_dict(message) -> dict:
    # TF Serving prints proto field names and default values (e.g. "error_message": "").
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _metadata_json(service: ModelService, ref: ModelRef) -> dict:
    response = service.metadata(ref)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
    return {"model_spec": _message_dict(response.model_spec),
            "metadata": {SIGNATURE_DEF_FIELD: _message_dict(signature_map)}}
