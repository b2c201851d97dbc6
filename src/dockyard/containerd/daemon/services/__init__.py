"""The daemon's gRPC services, one module each, wired to the stores they serve.

A service is registered only once it is implemented: for the others gRPC answers UNIMPLEMENTED
by itself, which is the truth, so there are no stubs. Handlers raise `dockyard.errors`; the
server's interceptor (`daemon.errors`) turns them into status codes. A namespaced service
starts each call with `daemon.namespace.required(context)`.
"""

import functools

import grpc

from ..backends import Backends
from . import namespaces, version
from . import containers, content, images, leases, snapshots
from . import events, tasks, transfer
from ... import gc
from ...transfer.stores import Stores


def register(server: grpc.Server, backends: Backends) -> list[str]:
    """Registers every implemented service on `server`; returns their names for the log."""
    version.register(server)
    namespaces.register(server, backends.db.namespaces)
    snapshotters = {"overlayfs": backends.snapshotter}
    collect_garbage = functools.partial(gc.collect, backends.db, backends.content, snapshotters)
    containers.register(server, backends.db.containers, backends.events)
    images.register(server, backends.db.images, collect_garbage, backends.events)
    leases.register(server, backends.db.leases, collect_garbage)
    content.register(server, backends.content)
    snapshots.register(server, snapshotters)
    events.register(server, backends.events)
    tasks.register(server, backends.tasks)
    transfer.register(server, Stores.of(backends), backends.events, backends.root)
    return ["version", "namespaces", "containers", "images", "leases", "content", "snapshots",
            "events", "tasks", "transfer"]
