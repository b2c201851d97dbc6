"""The one middleware every request passes, doing what moby's api/server/middleware and
httpstatus do (engine-api.md §1.1):

- the API version of the path (`/v1.45/...`; none means the newest): above the maximum → 400
  "client version X is too new. Maximum supported API version is Y", below the minimum → 400
  "client version X is too old. …"; kept as request["api_version"];
- the headers of every response: Api-Version, Ostype, Docker-Experimental, Server;
- errors: dockyard.errors → status in ONE place (`STATUS`), body `{"message": …}` with
  exactly `Content-Type: application/json` (the CLI ignores other bodies); aiohttp's own 404
  becomes {"message":"page not found"}; anything unexpected → 500 "internal error: <type>",
  its traceback logged at debug, never sent;
- hijacked connections (httputil.hijack) and started streams: the handler's end closes them,
  and aiohttp is given a response that writes nothing more;
- the requests in flight, so a graceful stop can cut streams and wait for the rest.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

import dockyard
from dockyard.errors import (Conflict, DockyardError, Forbidden, InvalidArgument, NoSpace, NotFound,
                             SystemFailure, Unauthenticated, Unavailable, Unsupported)

from .httputil import HIJACKED, STREAM, dumps

log = logging.getLogger("dockyard.engine.api")

SERVER = f"Dockyard/{dockyard.__version__} (linux)"
VERSION_PREFIX = re.compile(r"^/v([0-9]+\.[0-9]+)(/|$)")

# dockyard.errors → HTTP status; the first matching class wins (Unavailable before SystemFailure).
STATUS: tuple[tuple[type[DockyardError], int], ...] = (
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (InvalidArgument, 400),
    (Unsupported, 501),
    (Unauthenticated, 401),
    (Unavailable, 503),
    (NoSpace, 500),
    (SystemFailure, 500),
)

INFLIGHT = web.AppKey("inflight", dict)  # requests being handled, for a graceful stop
TASK = web.RequestKey("task", asyncio.Task)  # request key: the task handling it


def status_of(exc: DockyardError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def add_headers(request: web.BaseRequest, headers) -> None:
    from . import DAEMON
    config = request.app[DAEMON].config
    headers["Api-Version"] = config.api_version
    headers["Ostype"] = "linux"
    headers["Docker-Experimental"] = "false"
    headers["Server"] = SERVER


def error_response(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=dumps({"message": message}),
                        headers={"Content-Type": "application/json"})


class _Written(web.StreamResponse):
    """What aiohttp gets for a hijacked connection or a stream already under way: the bytes
    went out by other means; nothing more to write."""

    def __init__(self, status: int):
        super().__init__(status=status)

    async def prepare(self, request):
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


@web.middleware
async def middleware(request: web.Request, handler):
    from . import DAEMON
    config = request.app[DAEMON].config
    m = VERSION_PREFIX.match(request.path)
    if m:
        version = m.group(1)
        if _version(version) > _version(config.api_version):
            return _finish(request, error_response(
                400, f"client version {version} is too new. Maximum supported API version is {config.api_version}"))
        if _version(version) < _version(config.min_api_version):
            return _finish(request, error_response(
                400, f"client version {version} is too old. Minimum supported API version is "
                     f"{config.min_api_version}, please upgrade your client to a newer version"))
        request["api_version"] = version
    else:
        request["api_version"] = config.api_version

    inflight = request.app[INFLIGHT]
    request[TASK] = asyncio.current_task()
    inflight[id(request)] = request
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        raise
    except web.HTTPException as e:
        response = _http_exception(e)
    except DockyardError as e:
        response = _error(request, status_of(e), str(e) or type(e).__name__)
    except (ConnectionResetError, BrokenPipeError) as e:
        if _client_gone(request):
            log.debug("client went away", extra=_fields(path=request.path))
            response = _Written(499)
        else:
            response = _internal(request, e)
    except Exception as e:
        response = _internal(request, e)
    finally:
        inflight.pop(id(request), None)
        hijacked = request.get(HIJACKED)
        if hijacked is not None:
            await hijacked.close()
    if request.get(HIJACKED) is not None:
        return _Written(101)
    stream = request.get(STREAM)
    if stream is not None and response is not stream:
        # The handler started a stream and then returned something else (an error, nothing):
        # finish the stream; a status cannot be changed once sent.
        if isinstance(response, web.StreamResponse) and response.status >= 400 and not response.prepared:
            log.warning("error after the stream started", extra=_fields(path=request.path, status=response.status))
        return stream
    if response is None:
        log.error("handler returned no response", extra=_fields(path=request.path))
        response = error_response(500, "internal error: no response")
    return _finish(request, response)


def _finish(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
    if not response.prepared:
        add_headers(request, response.headers)
    return response


def streaming(request: web.BaseRequest) -> bool:
    """Whether the request's answer is under way (a hijack, a stream, headers sent): what a
    graceful stop cuts rather than waits for."""
    return request.get(HIJACKED) is not None or request.get(STREAM) is not None or \
        getattr(request.writer, "output_size", 0) > 0


def _client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _error(request: web.BaseRequest, status: int, message: str) -> web.StreamResponse:
    if request.get(STREAM) is not None or request.get(HIJACKED) is not None:
        # Headers went out already: the error can only be logged (a stream's handler reports
        # in-band errors itself).
        log.warning("error after the response started", extra=_fields(path=request.path, error=message))
        return _Written(status)
    return error_response(status, message)


def _internal(request: web.BaseRequest, e: BaseException) -> web.StreamResponse:
    log.error("internal error", extra=_fields(method=request.method, path=request.path,
                                               error=f"{type(e).__name__}: {e}"))
    log.debug("traceback", exc_info=e)
    return _error(request, 500, f"internal error: {type(e).__name__}")


def _http_exception(e: web.HTTPException) -> web.StreamResponse:
    """aiohttp's own errors (routing, limits) in Docker's shape."""
    if e.status == 404:
        return error_response(404, "page not found")
    if e.status == 405:
        return error_response(405, "method not allowed")
    if e.status == 413:
        return error_response(400, "request body too large")
    if e.status < 400:  # a redirect or a deliberate non-error answer
        return e
    return error_response(e.status, e.reason or "error")


def _fields(**values) -> dict:
    return {"fields": values}
