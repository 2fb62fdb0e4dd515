"""TF Serving's REST API, independent of the HTTP server: method, path and body in; status and JSON out.

Routes (as tensorflow_model_server):
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   tf.Examples as JSON
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:regress    tf.Examples as JSON

`answer_steps` is the whole answer as a generator that yields each model
call (`ModelCall`) and is sent its outputs (or thrown its error), so the
HTTP layer decides where the model runs: in its event loop, in a worker
thread, or in a batch it waits for without holding a thread. `answer` runs
the same steps synchronously, the model in the calling thread. Errors are
`{"error": "..."}` with TF Serving's HTTP status for the canonical code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Generator

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from serving import codec, example_json, inference, log_burst, monitoring, prediction_log
from serving.errors import ServingError, as_serving_error, invalid_argument
from serving.servable import Servable, Signature
from serving.service import SIGNATURE_DEF_FIELD, ModelRef, ModelService, example_inputs
from trainer.layout import parse_version

_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<action>/metadata|:[A-Za-z]+)?$")

log = logging.getLogger(__name__)


class BodyError(ServingError):
    """The request body could not be taken (too large, too slow); carries its own HTTP status."""

    def __init__(self, code: grpc.StatusCode, http_status: int, message: str):
        super().__init__(code, message)
        self._http_status = http_status

    @property
    def http_status(self) -> int:
        return self._http_status


@dataclasses.dataclass(frozen=True)
class ModelCall:
    """One signature call a request needs: all of the signature's outputs, as `ModelService.run` returns them."""

    servable: Servable
    signature: Signature
    inputs: dict


Steps = Generator[ModelCall, dict, tuple[int, bytes]]


def answer(service: ModelService, metrics: monitoring.Metrics | None, method: str, path: str,
           body: bytes | BodyError, started: float) -> tuple[int, bytes]:
    """The HTTP status and JSON body for one request, the model run in this thread (see `answer_steps`)."""
    exchange = Exchange(answer_steps(service, metrics, method, path, body, started))
    while exchange.call is not None:
        call = exchange.call
        exchange.deliver(outcome(service.run, call.servable, call.signature, call.inputs))
    return exchange.answer


class Exchange:
    """One request's `answer_steps`, advanced by whoever runs its model calls.

    `answer` runs them in a pool thread, `serving.rest` awaits them in the
    event loop; both hand each call's outcome back through `deliver` until
    `call` is None and `answer` holds the (status, body).
    """

    def __init__(self, steps: Steps):
        self._steps, self.answer = steps, None
        self.call: ModelCall | None = self._advance(lambda: next(steps))

    def deliver(self, result: tuple[dict | None, Exception | None]) -> None:
        """Sends a model call's outputs, or throws its error, into the steps (which answer any error)."""
        outputs, error = result
        self.call = self._advance(lambda: self._steps.throw(error) if error is not None else self._steps.send(outputs))

    def _advance(self, step) -> ModelCall | None:
        try:
            return step()
        except StopIteration as done:
            self.answer = done.value
            return None


def outcome(run, *args) -> tuple[dict | None, Exception | None]:
    """`run(*args)` as (outputs, None), or (None, the error it raised): an error is the request's answer."""
    try:
        return run(*args), None
    except Exception as error:
        return None, error


def answer_steps(service: ModelService, metrics: monitoring.Metrics | None, method: str, path: str,
                 body: bytes | BodyError, started: float) -> Steps:
    """The HTTP status and JSON body for one request, as a generator of its model calls.

    Yields each `ModelCall` the request needs and expects its outputs sent
    back (or its error thrown in); returns (status, body). Routing, decoding
    and encoding happen in whichever thread advances it.

    Args:
      service: The API to call.
      metrics: Where `/v1/` requests are recorded, or None.
      method: "GET" or "POST".
      path: The raw (still percent-encoded) path, without the query.
      body: The request body, or the error met while reading it.
      started: `time.perf_counter()` when the request arrived (for the latency metric).
    """
    code = "OK"
    try:
        if isinstance(body, BodyError):
            raise body
        status, payload = yield from _dispatch(service, method, path, body)
    except ServingError as error:
        code, status, payload = error.code.name, error.http_status, {"error": error.message}
    except RecursionError:  # a request nested deeper than any handler can walk: the client's doing
        code, status, payload = "INVALID_ARGUMENT", 400, {"error": "Request JSON is nested too deeply"}
    except Exception as error:  # a bug: answer 500 and keep serving
        log.exception("internal error on %s %s", method, path)
        wrapped = as_serving_error(error)
        code, status, payload = wrapped.code.name, wrapped.http_status, {"error": wrapped.message}
    if metrics is not None and path.startswith("/v1/"):
        name, api = _metric_labels(path)
        metrics.record(name, api, "REST", code, (time.perf_counter() - started) * 1e6)
    return encode(status, payload, path)


def encode(status: int, payload: dict, path: str = "") -> tuple[int, bytes]:
    """`payload` as JSON; an encoder bug still gets an answer (500), never a dropped connection."""
    try:
        return status, json.dumps(payload).encode("utf-8")
    except (TypeError, ValueError) as error:
        log.error("unencodable response to %s: %s", path, error)
        return 500, json.dumps({"error": f"Failed to encode the response as JSON: {error}"}).encode()


def _dispatch(service: ModelService, method: str, path: str, body: bytes
              ) -> Generator[ModelCall, dict, tuple[int, dict]]:
    if not path.startswith("/v1/"):
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Not found: {method} {path}")
    match = _ROUTE.match(path)
    if not match:
        raise invalid_argument(f"Malformed request: {method} {path}")
    ref = _model_ref(match)
    action = match["action"]
    if method == "GET" and action is None:
        return 200, _message_dict(service.status(ref))
    if method == "GET" and action == "/metadata":
        return 200, _metadata_json(service, ref)
    if method == "POST" and action in (":predict", ":classify", ":regress"):
        return 200, (yield from _infer(service, ref, action, codec.parse_body(body)))
    raise invalid_argument(f"Malformed request: {method} {path}")


def _infer(service: ModelService, ref: ModelRef, action: str, request: dict) -> Generator[ModelCall, dict, dict]:
    signature_name = request.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise invalid_argument("'signature_name' key must be a string value.")
    servable = service.resolve(ref)  # held until the answer is encoded, whatever swaps meanwhile
    if action == ":predict":
        signature = servable.predict_signature(signature_name, codec.named_inputs(request))
        inputs, row_format = codec.decode_predict(request, signature)
        outputs = yield ModelCall(servable, signature, inputs)  # as service.predict without an output filter
        answer = codec.encode_predict(outputs, row_format)
        service.log(ref.name, prediction_log.PREDICT, log_burst.RestPredict(  # logged once answered, as gRPC's
            ref.name, servable.version, signature.name, inputs, outputs))
        return answer
    # As service.classify / service.regress (the signature checked before the examples), the call yielded.
    examples = example_json.examples_from_json(request)
    if action == ":classify":
        signature = inference.classify_signature(servable, signature_name)
        outputs = yield ModelCall(servable, signature, example_inputs(examples))
        rows = inference.classification_rows(outputs, len(examples))
        answer = example_json.encode_classify(rows)
        service.log(ref.name, prediction_log.CLASSIFY, lambda: prediction_log.rest_classify(
            ref.name, servable.version, signature.name, examples, rows))
        return answer
    signature = inference.regress_signature(servable, signature_name)
    outputs = yield ModelCall(servable, signature, example_inputs(examples))
    values = inference.regression_values(outputs, len(examples))
    answer = example_json.encode_regress(values)
    service.log(ref.name, prediction_log.REGRESS, lambda: prediction_log.rest_regress(
        ref.name, servable.version, signature.name, examples, values))
    return answer


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


def _metric_labels(path: str) -> tuple[str, str]:
    """(model name, API) of a /v1/ path, as http_server.cc records them ("" where the path has none)."""
    match = _ROUTE.match(path)
    if not match:
        return "", ""
    action = match["action"] or ""
    return urllib.parse.unquote(match["name"]), action[1:].lower() if action.startswith(":") else ""


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
