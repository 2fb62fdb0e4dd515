"""TF Serving's REST API on aiohttp: one event loop for the connections, models where they cost least.

aiohttp does all of HTTP (its C parser, chunked bodies, keep-alive, TCP_NODELAY)
in an asyncio event loop running in its own thread, so a slow or stalled
client costs a coroutine and a socket, never a thread, and cannot hold up
anyone else. A request body must arrive within `BODY_TIMEOUT_SECONDS` (408
otherwise) and fit `--max_request_bytes` (413, answered before the body is
read when its length is declared).

A small `:predict`, `:classify` or `:regress` (body up to
`INLINE_BODY_BYTES`) is decoded and encoded in the loop
(`rest_api.answer_steps`), and its model call runs:

- with batching, in its batch: the request waits for it in the loop, on a
  future, holding no thread (so the pool does not bound how full batches get);
- without batching, in the loop itself when no other request is being
  answered and the signature's recent calls were short (under
  `INLINE_CALL_SECONDS`): a lone request skips two thread hand-offs;
- otherwise in the pool of `--rest_api_num_threads` workers.

Everything else (a large body, status, metadata) is answered whole in the
pool, so the loop never waits on a long call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time

import grpc
from aiohttp import web

from serving import monitoring, rest_api
from serving.rest_api import BodyError
from serving.service import ModelService

BODY_TIMEOUT_SECONDS = 30.0  # a client stalled mid-body is answered 408 and let go after this
INLINE_BODY_BYTES = 8 * 1024  # bodies up to this are decoded and encoded in the loop (~30 rows of 15 features)
INLINE_ACTIONS = (":predict", ":classify", ":regress")
INLINE_CALL_SECONDS = 0.002  # a signature whose recent calls took less may run in the loop when it is idle
CALL_TIME_MEMORY = 0.2  # weight of the newest call in a signature's smoothed call time
SHUTDOWN_SECONDS = 1.0  # stop() waits this long for requests in flight
BACKLOG = 256  # a burst of concurrent connects must not be refused

log = logging.getLogger(__name__)


class RestServer:
    """The REST listener.

    Args:
      service: The API the requests call.
      host: Address to bind.
      port: Port to bind (0 picks a free one).
      max_request_bytes: Largest body accepted (413 beyond).
      num_threads: Worker threads running the models.
      metrics: Where `/v1/` requests are recorded, or None.
      metrics_path: The path serving `metrics` as a Prometheus page, or None.
    """

    def __init__(self, service: ModelService, host: str, port: int, max_request_bytes: int, num_threads: int,
                 metrics: monitoring.Metrics | None = None, metrics_path: str | None = None):
        self._service, self._host, self._port = service, host, port
        self._max_request_bytes = max_request_bytes
        self._metrics, self._metrics_path = metrics, metrics_path
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="rest")
        self._loop = asyncio.new_event_loop()
        self._busy = 0  # requests being answered (touched in the loop only)
        self._call_seconds: dict[tuple[str, str], float] = {}  # (version path, signature) -> smoothed call time
        self._runner: web.ServerRunner | None = None
        self._thread: threading.Thread | None = None
        self.server_address: tuple[str, int] | None = None

    def start(self) -> RestServer:
        """Binds and serves in a background thread.

        Raises:
          OSError: The address cannot be bound.
        """
        bound: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(bound,), name="rest-loop", daemon=True)
        self._thread.start()
        self.server_address = bound.result(timeout=60)
        return self

    @property
    def port(self) -> int:
        return self.server_address[1]

    def _serve(self, bound: concurrent.futures.Future) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            address = self._loop.run_until_complete(self._bind())
        except BaseException as error:  # reported to start(), which raises it
            bound.set_exception(error)
            self._loop.close()
            return
        bound.set_result(address)
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _bind(self) -> tuple[str, int]:
        # aiohttp's low-level server: every request reaches _handle, whatever its path (no router to
        # disagree with TF Serving's routes, e.g. on a percent-encoded newline), with no per-request app overhead.
        self._runner = web.ServerRunner(web.Server(self._handle, access_log=None), shutdown_timeout=SHUTDOWN_SECONDS)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port, backlog=BACKLOG).start()
        return tuple(self._runner.addresses[0][:2])

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]  # as sent: percent-encoding and dot segments untouched
        if self._metrics_path is not None and path == self._metrics_path:
            return web.Response(body=self._metrics.render().encode(), headers={"Content-Type": monitoring.CONTENT_TYPE})
        if request.method not in ("GET", "POST"):
            return _json(*rest_api.encode(405, {"error": "Method not allowed: use GET or POST"}))
        started = time.perf_counter()
        body = await self._read_body(request) if request.method == "POST" else b""
        self._busy += 1
        try:
            if request.method == "POST" and isinstance(body, bytes) and len(body) <= INLINE_BODY_BYTES \
                    and path.endswith(INLINE_ACTIONS):
                status, data = await self._answer_in_loop(path, body, started)
            else:
                status, data = await self._loop.run_in_executor(
                    self._executor, rest_api.answer, self._service, self._metrics, request.method, path, body,
                    started)
        finally:
            self._busy -= 1
        response = _json(status, data)
        if isinstance(body, BodyError):
            response.force_close()  # the body was not (all) read: the connection cannot carry another request
        if status == 408:  # a stalled client: answer and let go now, not after aiohttp's lingering read
            await response.prepare(request)
            await response.write_eof()
            request.transport.close()
        return response

    async def _answer_in_loop(self, path: str, body: bytes, started: float) -> tuple[int, bytes]:
        """`rest_api.answer_steps` advanced in the loop, each model call run by `_call`."""
        exchange = rest_api.Exchange(rest_api.answer_steps(self._service, self._metrics, "POST", path, body, started))
        while exchange.call is not None:
            try:
                result = await self._call(exchange.call), None
            except Exception as error:  # answered by the steps, as any error of the request
                result = None, error
            exchange.deliver(result)
        return exchange.answer

    async def _call(self, call: rest_api.ModelCall) -> dict:
        service = self._service
        if service.batching:
            future = service.submit(call.servable, call.signature, call.inputs)
            if future is not None:
                return await asyncio.wrap_future(future, loop=self._loop)
        key = (call.servable.path, call.signature.name)
        recent = self._call_seconds.get(key)
        if self._busy == 1 and recent is not None and recent < INLINE_CALL_SECONDS:
            began = time.perf_counter()
            try:
                return call.servable.run(call.signature, call.inputs)
            finally:
                self._remember(key, time.perf_counter() - began)
        began = time.perf_counter()
        try:
            return await self._loop.run_in_executor(self._executor, call.servable.run, call.signature, call.inputs)
        finally:
            self._remember(key, time.perf_counter() - began)  # includes the hand-offs: errs towards the pool

    def _remember(self, key: tuple[str, str], seconds: float) -> None:
        recent = self._call_seconds.get(key)
        if recent is None and len(self._call_seconds) > 1000:  # versions come and go: forget, relearn
            self._call_seconds.clear()
        self._call_seconds[key] = seconds if recent is None else recent + CALL_TIME_MEMORY * (seconds - recent)

    async def _read_body(self, request: web.BaseRequest) -> bytes | BodyError:
        limit = self._max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            return BodyError(grpc.StatusCode.RESOURCE_EXHAUSTED, 413,
                             f"Request body of {request.content_length} bytes exceeds the limit of {limit} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                # aiohttp has already undone any chunked encoding; a chunked body's size is only known as it comes.
                while chunk := await request.content.readany():
                    body += chunk
                    if len(body) > limit:
                        return BodyError(grpc.StatusCode.RESOURCE_EXHAUSTED, 413,
                                         f"Request body exceeds the limit of {limit} bytes")
        except TimeoutError:
            return BodyError(grpc.StatusCode.DEADLINE_EXCEEDED, 408,
                             f"The request body did not arrive within {BODY_TIMEOUT_SECONDS:g} s")
        return bytes(body)

    def stop(self) -> None:
        """Stops listening, lets requests in flight finish (up to SHUTDOWN_SECONDS), frees the threads."""
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        self._executor.shutdown(wait=False, cancel_futures=True)


def _json(status: int, data: bytes) -> web.Response:
    return web.Response(status=status, body=data, content_type="application/json")
