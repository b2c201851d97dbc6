"""Container stdio routes: GET /containers/{id}/logs, POST /containers/{id}/attach, POST
/containers/{id}/resize; GET /containers/{id}/attach/ws answers 501 (not implemented).

Reference engine-api.md §1.4–1.6 (moby api/server/router/container/container_routes.go):
logs validates its parameters before the 200, then streams (chunked, flushed), framed unless
the container has a TTY; attach hijacks the connection (101 UPGRADED when asked, engine/api/
httputil.py), optionally replays the log (`logs=1`), then with `stream=1` copies the process's
stdio until it exits (engine/attach.py), waiting for the container's start if it is not running
(the docker CLI attaches before it starts).
"""

from __future__ import annotations

from aiohttp import web

from dockyard.engine import attach as attaching
from dockyard.engine import streams, timeutil
from dockyard.engine.logs import LogOptions, read_logs
from dockyard.errors import Conflict, InvalidArgument, Unsupported

from . import httputil
from .httputil import query_bool


def _daemon(request):
    from . import DAEMON
    return request.app[DAEMON]


def _running(daemon, cid: str):
    def running() -> bool:
        c = daemon.store.find(cid)
        return c is not None and (c.state.running or c.state.restarting)
    return running


def _gone(request):
    def gone() -> bool:
        t = request.transport
        return t is None or t.is_closing()
    return gone


def _time(request, name: str) -> int:
    """since/until: unix seconds with a fraction as the CLI sends them (it converts durations and
    dates itself); other forms dockerd reads are taken too. "0" or absent: unset."""
    value = request.query.get(name, "").strip()
    if not value or value == "0":
        return 0
    return timeutil.parse_timestamp(value)


def _tail(request) -> int:
    # moby: "all" or anything that is not a number means every line; a negative number too.
    try:
        n = int(request.query.get("tail", "all"))
    except ValueError:
        return -1
    return n if n >= 0 else -1


async def container_logs(request: web.Request) -> web.StreamResponse:
    daemon = _daemon(request)
    c = daemon.store.get(request.match_info["id"])
    stdout, stderr = query_bool(request, "stdout"), query_bool(request, "stderr")
    if not (stdout or stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    opts = LogOptions(stdout=stdout, stderr=stderr, since=_time(request, "since"), until=_time(request, "until"),
                      tail=_tail(request), timestamps=query_bool(request, "timestamps"),
                      details=query_bool(request, "details"), follow=query_bool(request, "follow"))
    if not c.log_path:
        raise Unsupported("configured logging driver does not support reading")  # dockerd's words
    tty = bool(c.config.get("Tty"))
    resp = web.StreamResponse(status=200)
    resp.content_type = streams.stream_content_type(tty, request["api_version"])
    resp.enable_chunked_encoding()
    from .middleware import add_headers
    add_headers(request, resp.headers)
    request[httputil.STREAM] = resp
    await resp.prepare(request)
    if c.log_path:
        async for stream, data in read_logs(c.log_path, opts, _running(daemon, c.id), _gone(request)):
            await resp.write(data if tty else streams.frame(stream, data))
    await resp.write_eof()
    return resp


async def container_attach(request: web.Request):
    daemon = _daemon(request)
    c = daemon.store.get(request.match_info["id"])
    want_logs, want_stream = query_bool(request, "logs"), query_bool(request, "stream")
    want_stdin = query_bool(request, "stdin")
    want_stdout, want_stderr = query_bool(request, "stdout"), query_bool(request, "stderr")
    keys = streams.DetachKeys(request.query.get("detachKeys") or None)  # 400 before the hijack
    tty = bool(c.config.get("Tty"))
    stdin = want_stdin and bool(c.config.get("OpenStdin"))
    conn = await httputil.hijack(request, content_type=streams.stream_content_type(tty, request["api_version"]))
    if want_logs and c.log_path and (want_stdout or want_stderr):
        opts = LogOptions(stdout=want_stdout, stderr=want_stderr)
        async for stream, data in read_logs(c.log_path, opts):
            await conn.write(data if tty else streams.frame(stream, data))
    if not want_stream:
        return None
    # The client's full close while we wait for the start: its connection is lost.
    gone = lambda: conn.client_gone.done() or daemon.store.find(c.id) is None  # noqa: E731
    task_stream = await attaching.attach_container(daemon, c.id, stdin=stdin, running=_running(daemon, c.id),
                                                   gone=gone)
    if task_stream is None:
        return None
    _event(daemon, c, "attach")
    result = await attaching.pump(conn, task_stream, tty=tty, stdout=want_stdout, stderr=want_stderr,
                                  stdin=stdin, close_stdin=bool(c.config.get("StdinOnce")), detach_keys=keys)
    if result.detached:
        _event(daemon, c, "detach")
    return None


async def container_attach_ws(request: web.Request):
    raise Unsupported("attaching over a websocket is not supported: use POST /containers/{id}/attach")


async def container_resize(request: web.Request):
    daemon = _daemon(request)
    c = daemon.store.get(request.match_info["id"])
    height = httputil.query_int(request, "h", 0, minimum=0)
    width = httputil.query_int(request, "w", 0, minimum=0)
    if not c.state.running:
        raise Conflict(f"Container {c.id} is not running")
    from dockyard.api.services.tasks.v1 import tasks_pb2 as pb
    cd = daemon.containerd
    await cd.call(cd.tasks.ResizePty, pb.ResizePtyRequest(container_id=c.id, width=width, height=height))
    return web.Response(status=200)


def _event(daemon, c, action: str) -> None:
    events = getattr(daemon, "events", None)
    if events is None:
        return
    from dockyard.engine.events import container_attributes
    events.publish("container", action, c.id, container_attributes(c))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/containers/{id}/logs", container_logs),
        web.post("/containers/{id}/attach", container_attach),
        web.get("/containers/{id}/attach/ws", container_attach_ws),
        web.post("/containers/{id}/resize", container_resize),
    ]
