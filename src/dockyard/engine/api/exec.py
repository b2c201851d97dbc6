"""Exec routes: POST /containers/{id}/exec, POST /exec/{id}/start, POST /exec/{id}/resize, GET
/exec/{id}/json (reference engine-api.md §1.3 `docker exec -it`, §1.6; moby
api/server/router/container/exec.go).

Start with Detach answers 200 at once; otherwise the connection is hijacked (101 UPGRADED when
asked) and carries the exec's stdio until it exits. The stream ends only after the exit code is
recorded: the docker CLI asks exec inspect for it as soon as the stream ends. An error after the
hijack (the command cannot be run) is written into the stream as stdout text, as dockerd does,
and the exec's ExitCode is then 126.
"""

from __future__ import annotations

from aiohttp import web

from dockyard.engine import attach as attaching
from dockyard.engine import streams
from dockyard.errors import DockyardError, InvalidArgument

from . import httputil


def _daemon(request):
    from . import DAEMON
    return request.app[DAEMON]


async def exec_create(request: web.Request):
    daemon = _daemon(request)
    config = await httputil.read_json(request)
    ex = daemon.execs.create(request.match_info["id"], config)
    return httputil.json_response({"Id": ex.id}, status=201)


async def exec_start(request: web.Request):
    daemon = _daemon(request)
    body = await httputil.read_json(request, required=False)
    detach, tty = body.get("Detach", False), body.get("Tty", None)
    if not isinstance(detach, bool) or not isinstance(tty, (bool, type(None))):
        raise InvalidArgument("Detach and Tty must be booleans")
    ex = daemon.execs.get(request.match_info["id"])
    if detach:
        await daemon.execs.start_exec(ex.id, attach=False, tty=tty, console_size=body.get("ConsoleSize"))
        return web.Response(status=200)
    daemon.execs.check_startable(ex.id)  # 404/409 before the hijack
    # As dockerd: the framing follows this request's Tty, not the exec's (a process with a
    # terminal started with Tty false is framed, all of it as stdout); the terminal itself and
    # the detach keys follow the exec's Tty.
    use_tty = bool(tty)
    keys = streams.DetachKeys(ex.detach_keys or None)
    conn = await httputil.hijack(request, content_type=streams.stream_content_type(use_tty, request["api_version"]))
    try:
        stream = await daemon.execs.start_exec(ex.id, attach=True, tty=tty, console_size=body.get("ConsoleSize"))
    except DockyardError as e:
        # As dockerd: the message on the stdout stream, framed unless there is a terminal.
        message = (str(e) + "\r\n").encode()
        await conn.write(message if use_tty else streams.frame(streams.STDOUT, message))
        return None
    result = await attaching.pump(conn, stream, tty=use_tty, stdout=ex.attach_stdout, stderr=ex.attach_stderr,
                                  stdin=ex.attach_stdin, close_stdin=True, detach_keys=keys,
                                  terminal=ex.tty)
    if not result.detached and not result.client_gone:
        await ex.done.wait()  # the exit code is in inspect before the client reads the stream's end
    return None


async def exec_resize(request: web.Request):
    daemon = _daemon(request)
    height = httputil.query_int(request, "h", 0, minimum=0)
    width = httputil.query_int(request, "w", 0, minimum=0)
    await daemon.execs.resize(request.match_info["id"], height, width)
    return web.Response(status=200)


async def exec_inspect(request: web.Request):
    daemon = _daemon(request)
    return httputil.json_response(daemon.execs.get(request.match_info["id"]).inspect())


def routes() -> list[web.RouteDef]:
    return [
        web.post("/containers/{id}/exec", exec_create),
        web.post("/exec/{id}/start", exec_start),
        web.post("/exec/{id}/resize", exec_resize),
        web.get("/exec/{id}/json", exec_inspect),
    ]
