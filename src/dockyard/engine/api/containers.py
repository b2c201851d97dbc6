"""Container routes (docker-engine-api-v1.45.yaml tag "Container"): create, list, inspect, the
lifecycle verbs, wait, remove, rename, update, prune. The logic is engine/containers.py; this
module reads the request and shapes the reply as dockerd does (moby
api/server/router/container/container_routes.go): 204 for a done verb, 304 for a start of a
running or a stop of a stopped container, 201 for create.

`wait` answers 200 with its headers at once and the body when the condition holds: `docker run`
waits for those headers before it starts the container (reference engine-api.md §1.4 step 3).
"""

from __future__ import annotations

from aiohttp import web

from dockyard.errors import InvalidArgument

from . import DAEMON, api_version
from .httputil import (json_response, json_stream, query_bool, query_filters, query_int, read_body,
                       read_json, until_disconnected)


def _containers(request: web.Request):
    return request.app[DAEMON].containers


def _id(request: web.Request) -> str:
    return request.match_info["id"]


def _no_content() -> web.Response:
    return web.Response(status=204)


def _not_modified() -> web.Response:
    return web.Response(status=304)


def _timeout(request: web.Request) -> int | None:
    return query_int(request, "t")


def _signal(request: web.Request) -> str | None:
    if api_version(request) < (1, 42):
        return None
    return request.query.get("signal") or None


async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    cid, warnings = await _containers(request).create(
        body, name=request.query.get("name", ""), platform=request.query.get("platform", ""))
    return json_response({"Id": cid, "Warnings": warnings or []}, status=201)


async def list_containers(request: web.Request) -> web.Response:
    items = await _containers(request).list(
        all=query_bool(request, "all"), limit=query_int(request, "limit", -1) or -1,
        size=query_bool(request, "size"), filters=query_filters(request))
    return json_response(items)


async def inspect(request: web.Request) -> web.Response:
    return json_response(await _containers(request).inspect(_id(request), size=query_bool(request, "size")))


async def start(request: web.Request) -> web.Response:
    # moby: a body (a HostConfig) on start was removed in API 1.24; "{}" and the like pass.
    raw = await read_body(request, max_bytes=1 << 20)
    if len(raw.strip()) > 7 and api_version(request) >= (1, 24):
        raise InvalidArgument("starting container with non-empty request body was deprecated since "
                              "API v1.22 and removed in v1.24")
    started = await _containers(request).start_container(_id(request))
    return _no_content() if started else _not_modified()


async def stop(request: web.Request) -> web.Response:
    stopped = await _containers(request).stop(_id(request), _timeout(request), _signal(request))
    return _no_content() if stopped else _not_modified()


async def restart(request: web.Request) -> web.Response:
    await _containers(request).restart(_id(request), _timeout(request), _signal(request))
    return _no_content()


async def kill(request: web.Request) -> web.Response:
    await _containers(request).kill(_id(request), request.query.get("signal") or None)
    return _no_content()


async def pause(request: web.Request) -> web.Response:
    await _containers(request).pause(_id(request))
    return _no_content()


async def unpause(request: web.Request) -> web.Response:
    await _containers(request).unpause(_id(request))
    return _no_content()


async def wait(request: web.Request) -> web.StreamResponse:
    containers = _containers(request)
    condition = request.query.get("condition", "") if api_version(request) >= (1, 30) else ""
    condition = condition or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    c = containers.get(_id(request))
    # The waiter is registered before the headers go out: the client starts the container
    # once it has them, and that exit must not be missed.
    waiter = containers.waiter(c, condition)
    stream = await json_stream(request)
    if isinstance(waiter, dict):
        result = waiter
    else:
        try:
            code, error = await until_disconnected(request, waiter)
        except ConnectionResetError:
            return stream
        finally:
            containers.discard_waiter(c.id, waiter)
        result = {"StatusCode": code, "Error": {"Message": error} if error else None}
    try:
        await stream.send(result)
        await stream.close()
    except ConnectionResetError:
        pass
    return stream


async def remove(request: web.Request) -> web.Response:
    await _containers(request).remove(_id(request), force=query_bool(request, "force"),
                                      volumes=query_bool(request, "v"), link=query_bool(request, "link"))
    return _no_content()


async def rename(request: web.Request) -> web.Response:
    await _containers(request).rename(_id(request), request.query.get("name", ""))
    return _no_content()


async def update(request: web.Request) -> web.Response:
    warnings = await _containers(request).update(_id(request), await read_json(request))
    return json_response({"Warnings": warnings or []})


async def prune(request: web.Request) -> web.Response:
    return json_response(await _containers(request).prune(query_filters(request)))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/containers/create", create),
        web.get("/containers/json", list_containers),
        web.post("/containers/prune", prune),
        web.get("/containers/{id}/json", inspect),
        web.post("/containers/{id}/start", start),
        web.post("/containers/{id}/stop", stop),
        web.post("/containers/{id}/restart", restart),
        web.post("/containers/{id}/kill", kill),
        web.post("/containers/{id}/pause", pause),
        web.post("/containers/{id}/unpause", unpause),
        web.post("/containers/{id}/wait", wait),
        web.post("/containers/{id}/rename", rename),
        web.post("/containers/{id}/update", update),
        web.delete("/containers/{id:.+}", remove),  # "<name>/<alias>" with ?link=1
    ]
