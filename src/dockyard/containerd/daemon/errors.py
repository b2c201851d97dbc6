"""`dockyard.errors` ↔ gRPC status codes: the one place either direction is decided.

Server side, `ErrorInterceptor` wraps every handler the daemon serves, so a service just raises:

    NotFound        → NOT_FOUND
    Conflict        → FAILED_PRECONDITION
    InvalidArgument → INVALID_ARGUMENT
    Unsupported     → UNIMPLEMENTED
    Unauthenticated → UNAUTHENTICATED (a registry refused the credentials)
    Unavailable     → UNAVAILABLE (a registry could not be reached)
    SystemFailure   → INTERNAL, with its message (the kernel or a helper refused: retrying the
                      same call won't help, so not UNAVAILABLE, which clients retry)
    OSError ENOSPC/EDQUOT → RESOURCE_EXHAUSTED (a full disk during an ingest, say)
    anything else   → INTERNAL "internal error: <type>: <first line>", never a traceback;
                      the traceback goes to the daemon's log at debug level.

Conflict covers both "already exists" and "in a state that forbids it" (errors.py), and gRPC
has a code for each (ALREADY_EXISTS, FAILED_PRECONDITION). We send FAILED_PRECONDITION for
both: it is right for either meaning, while ALREADY_EXISTS would be wrong for "the task is
running". Client side, `from_rpc_error` maps both codes back to Conflict, so nothing is lost
between our own peers.
"""

import errno
import logging

import grpc

from dockyard.errors import (Conflict, DockyardError, InvalidArgument, NoSpace, NotFound,
                             SystemFailure, Unauthenticated, Unavailable, Unsupported)

log = logging.getLogger(__name__)

_CODES: tuple[tuple[type[DockyardError], grpc.StatusCode], ...] = (
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (Unsupported, grpc.StatusCode.UNIMPLEMENTED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (NoSpace, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (SystemFailure, grpc.StatusCode.INTERNAL),
)

_ERRORS: dict[grpc.StatusCode, type[DockyardError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.UNIMPLEMENTED: Unsupported,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: NoSpace,
}

_MESSAGE_MAX = 500


def _one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _MESSAGE_MAX else line[:_MESSAGE_MAX] + "…"


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and one-line message a client sees for `exc`."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code, _one_line(str(exc)) or cls.__name__
    if isinstance(exc, DockyardError):
        return grpc.StatusCode.UNKNOWN, _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, exc.strerror or "no space left on device"
    detail = _one_line(str(exc))
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}" + (f": {detail}" if detail else "")


def from_rpc_error(err: grpc.RpcError) -> DockyardError:
    """The `dockyard.errors` instance a client raises for a failed call. UNAVAILABLE (no
    daemon, or no registry behind it) becomes Unavailable, a SystemFailure;
    DEADLINE_EXCEEDED, INTERNAL and the rest become SystemFailure."""
    cls = _ERRORS.get(err.code(), SystemFailure)
    return cls(err.details() or err.code().name.lower())


def _already_aborted(context: grpc.ServicerContext) -> bool:
    # context.abort() records the status, then raises a bare Exception to unwind the handler:
    # that one must pass through untouched.
    return context.code() not in (None, grpc.StatusCode.OK)


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    code, message = status_of(exc)
    if code is grpc.StatusCode.INTERNAL and not isinstance(exc, DockyardError):
        log.error("%s failed: %s", method, message)
        log.debug("%s traceback", method, exc_info=exc)
    context.abort(code, message)


def _unary_response(behavior, method: str):
    def handler(request, context):
        try:
            return behavior(request, context)
        except Exception as exc:
            if _already_aborted(context):
                raise
            _abort(context, exc, method)
    return handler


def _stream_response(behavior, method: str):
    def handler(request, context):
        try:
            yield from behavior(request, context)
        except Exception as exc:
            if _already_aborted(context):
                raise
            _abort(context, exc, method)
    return handler


class ErrorInterceptor(grpc.ServerInterceptor):
    """Wraps every handler so that what it raises reaches the client as the status above."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED itself
            return None
        method = handler_call_details.method
        codec = dict(request_deserializer=handler.request_deserializer,
                     response_serializer=handler.response_serializer)
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                _stream_response(handler.stream_stream, method), **codec)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                _unary_response(handler.stream_unary, method), **codec)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                _stream_response(handler.unary_stream, method), **codec)
        return grpc.unary_unary_rpc_method_handler(_unary_response(handler.unary_unary, method), **codec)
