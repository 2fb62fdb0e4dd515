"""Canonical error codes, and how REST and gRPC report them.

Every failure a client can cause is raised as a `ServingError` carrying a
canonical code; the REST layer maps it to TF Serving's HTTP status and the gRPC
layer aborts with the same code. Anything else reaching a transport is a bug
and is reported as INTERNAL.
"""

from __future__ import annotations

import grpc
import tensorflow as tf

# TF Serving's mapping of canonical codes to HTTP statuses
# (tensorflow_serving/model_servers/http_server.cc, ToHTTPStatusCode).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# TensorFlow's error codes share gRPC's numbering, so a runtime error raised
# inside a signature keeps its meaning (e.g. a tf.Example of the wrong type
# fails in ParseExample with INVALID_ARGUMENT, which is the client's fault).
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request failed with a canonical status code.

    Attributes:
      code: The `grpc.StatusCode`.
      message: A message meant for the client.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status(self.code)


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status TF Serving answers for `code`."""
    return _HTTP_STATUS.get(code, 500)


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def from_tf_error(error: tf.errors.OpError) -> ServingError:
    """Wraps a TensorFlow runtime error, keeping its canonical code."""
    code = _BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN)
    # The op's message names the failing op and input, which is what a client
    # needs; the Python traceback context is not.
    return ServingError(code, error.message.strip())


def as_serving_error(error: Exception) -> ServingError:
    """Any exception raised while handling a request, as a ServingError.

    Errors a client can cause are already ServingErrors or TF runtime errors;
    anything else is a server bug and is reported as INTERNAL.
    """
    if isinstance(error, ServingError):
        return error
    if isinstance(error, tf.errors.OpError):
        return from_tf_error(error)
    return ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
