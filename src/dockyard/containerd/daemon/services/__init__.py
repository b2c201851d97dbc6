"""The daemon's gRPC services, one module each, wired to the stores they serve.

A service is registered only once it is implemented: for the others gRPC answers UNIMPLEMENTED
by itself, which is the truth, so there are no stubs. Handlers raise `dockyard.errors`; the
server's interceptor (`daemon.errors`) turns them into status codes. A namespaced service
starts each call with `daemon.namespace.required(context)`.
"""

import grpc

from ..backends import Backends
from . import namespaces, version


def register(server: grpc.Server, backends: Backends) -> list[str]:
    """Registers every implemented service on `server`; returns their names for the log."""
    version.register(server)
    namespaces.register(server, backends.db.namespaces)
    return ["version", "namespaces"]
