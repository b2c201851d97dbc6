"""Network routes (docker-engine-api-v1.45.yaml tag "Network"; moby
api/server/router/network/network_routes.go):

    GET    /networks                   list (filters)        → 200 [Network…]
    GET    /networks/{id}              inspect (verbose, scope) → 200 Network
    POST   /networks/create            NetworkCreateRequest  → 201 {"Id", "Warning"}
    DELETE /networks/{id}              remove                → 204
    POST   /networks/prune             prune (filters)       → 200 {"NetworksDeleted": [names]}
    POST   /networks/{id}/connect      {"Container", "EndpointConfig"} → 200, no body
    POST   /networks/{id}/disconnect   {"Container", "Force"}          → 200, no body

The logic is engine/networks.py (`daemon.networks`). This module reads requests as dockerd's Go
decoder does: field names match exactly or else case-insensitively (gojson), unknown fields are
ignored (the docker CLI sends every field of EndpointSettings, most of them empty), `null` is the
zero value (dropped here, so the component sees the field as absent), an empty body is an empty
request (moby's ReadJSON: the component then says what is missing), and a value of the wrong
JSON type is a 400 before anything is done — in dockerd that is the JSON decode into the
request struct, so it belongs to the route.
"""

from __future__ import annotations

import json

from aiohttp import web

from dockyard.engine.gojson import go_keys
from dockyard.errors import InvalidArgument

from . import DAEMON
from .httputil import json_response, query_bool, query_filters, read_json

# The request structs' fields and their JSON types (moby api/types/network); "an object of
# strings" is Go's map[string]string.
_STR, _BOOL, _OBJ, _STRMAP = "a string", "a boolean", "an object", "an object of strings"
CREATE_FIELDS = {
    "Name": _STR, "CheckDuplicate": _BOOL, "Driver": _STR, "Scope": _STR, "EnableIPv4": _BOOL,
    "EnableIPv6": _BOOL, "IPAM": _OBJ, "Internal": _BOOL, "Attachable": _BOOL, "Ingress": _BOOL,
    "ConfigOnly": _BOOL, "ConfigFrom": _OBJ, "Options": _STRMAP, "Labels": _STRMAP,
}
CONNECT_FIELDS = {"Container": _STR, "EndpointConfig": _OBJ}
DISCONNECT_FIELDS = {"Container": _STR, "Force": _BOOL}


def _networks(request: web.Request):
    return request.app[DAEMON].networks


def _id(request: web.Request) -> str:
    return request.match_info["id"]


def _has_type(value, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _OBJ:
        return isinstance(value, dict)
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def decode(body: dict, fields: dict[str, str]) -> dict:
    """The known fields of a request body under their canonical names, nulls dropped, each of
    the type its Go struct field has (else InvalidArgument naming the field)."""
    body = go_keys(body, fields)
    out = {}
    for key, kind in fields.items():
        value = body.get(key)
        if value is None:
            continue
        if not _has_type(value, kind):
            raise InvalidArgument(f"invalid {key}: {json.dumps(value)[:80]} is not {kind}")
        out[key] = value
    return out


async def list_networks(request: web.Request) -> web.Response:
    return json_response(_networks(request).list(query_filters(request)))


async def inspect(request: web.Request) -> web.Response:
    return json_response(_networks(request).inspect(
        _id(request), verbose=query_bool(request, "verbose"), scope=request.query.get("scope", "")))


async def create(request: web.Request) -> web.Response:
    body = decode(await read_json(request, required=False), CREATE_FIELDS)
    return json_response(await _networks(request).create(body), status=201)


async def remove(request: web.Request) -> web.Response:
    await _networks(request).remove(_id(request))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    return json_response(await _networks(request).prune(query_filters(request)))


async def connect(request: web.Request) -> web.Response:
    body = decode(await read_json(request, required=False), CONNECT_FIELDS)
    await _networks(request).connect(_id(request), body.get("Container", ""), body.get("EndpointConfig"))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = decode(await read_json(request, required=False), DISCONNECT_FIELDS)
    await _networks(request).disconnect(_id(request), body.get("Container", ""), force=body.get("Force", False))
    return web.Response(status=200)


def routes() -> list[web.RouteDef]:
    # Fixed paths first; ids are matched as dockerd's `{id:.+}` (a name with a space is valid:
    # docker-py creates "test 01").
    return [
        web.get("/networks", list_networks),
        web.get("/networks/", list_networks),
        web.post("/networks/create", create),
        web.post("/networks/prune", prune),
        web.post("/networks/{id:.+}/connect", connect),
        web.post("/networks/{id:.+}/disconnect", disconnect),
        web.get("/networks/{id:.+}", inspect),
        web.delete("/networks/{id:.+}", remove),
    ]
