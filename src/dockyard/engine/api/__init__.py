"""The Engine API's HTTP side (moby's api/server): one router module per resource, each with a
`routes()` list, and `build_app(daemon)` putting them together behind the one middleware.

Every route is served both as is and under `/v{version}` (the CLI negotiates a version and puts
it in every path; docker-py and old clients also use bare paths). Handlers reach the daemon as
`request.app[DAEMON]`."""

from __future__ import annotations

import importlib
import re

from aiohttp import web


DAEMON = web.AppKey("daemon", object)

# Router modules in registration order (a fixed path such as /images/json must be registered
# before a pattern that would also match it, within a module and across modules).
ROUTERS = ("system", "containers", "streams", "exec", "images", "networks", "events", "df", "fs")
VERSIONED = "/v{version:[0-9]+\\.[0-9]+}"
CLIENT_MAX_SIZE = 16 << 20  # what aiohttp's own body readers accept; our readers check their own


def _route_defs(module) -> list[web.RouteDef]:
    """A router module's routes(): RouteDefs, a RouteTableDef, or (method, path, handler)."""
    defs = []
    for item in module.routes():
        if isinstance(item, web.RouteDef):
            defs.append(item)
        elif isinstance(item, tuple) and len(item) == 3:
            method, path, handler = item
            defs.append(web.RouteDef(method.upper(), path, handler, {}))
        else:
            raise TypeError(f"{module.__name__}.routes() gave {item!r}")
    return defs


def load_routers(names=ROUTERS) -> list:
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def build_app(daemon, routers=ROUTERS) -> web.Application:
    from .middleware import INFLIGHT, middleware
    app = web.Application(middlewares=[middleware], client_max_size=CLIENT_MAX_SIZE,
                          handler_args={"max_field_size": 65536, "max_line_size": 65536})
    app[DAEMON] = daemon
    app[INFLIGHT] = {}
    for module in load_routers(routers):
        for route in _route_defs(module):
            kwargs = {k: v for k, v in route.kwargs.items() if k != "name"}
            for path in (route.path, VERSIONED + route.path):
                web.RouteDef(route.method, path, route.handler, kwargs).register(app.router)
    return app


def api_version(request: web.BaseRequest) -> tuple[int, int]:
    """The request's API version as a comparable (major, minor)."""
    major, minor = re.match(r"(\d+)\.(\d+)", request["api_version"]).groups()
    return int(major), int(minor)
