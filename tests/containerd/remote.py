"""The gRPC implementations of the storage Protocols, for the contract suites: a real gRPC
server on a unix socket in front of the local store, and the Remote* client in front of it."""

import contextlib
import os
from concurrent import futures

import grpc

from dockyard.containerd.content import LocalContentStore
from dockyard.containerd.daemon import client
from dockyard.containerd.daemon.config import GRPC_OPTIONS
from dockyard.containerd.daemon.errors import ErrorInterceptor
from dockyard.containerd.daemon.remote import (RemoteContainers, RemoteContentStore, RemoteImages, RemoteLeases,
                                               RemoteNamespaces, RemoteSnapshotter)
from dockyard.containerd.daemon.services import containers as containers_service
from dockyard.containerd.daemon.services import content as content_service
from dockyard.containerd.daemon.services import images as images_service
from dockyard.containerd.daemon.services import leases as leases_service
from dockyard.containerd.daemon.services import namespaces as namespaces_service
from dockyard.containerd.daemon.services import snapshots as snapshots_service
from dockyard.containerd.events import EventBroker
from dockyard.containerd.snapshots import OverlaySnapshotter


@contextlib.contextmanager
def serving(root: str, name: str, register):
    """A channel to a gRPC server on `<root>/<name>.sock` that `register(server)` filled."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[ErrorInterceptor()],
                         options=GRPC_OPTIONS)
    register(server)
    address = os.path.join(root, f"{name}.sock")
    server.add_insecure_port(f"unix:{address}")
    server.start()
    channel = client.connect(address, timeout=10)
    try:
        yield channel
    finally:
        channel.close()
        server.stop(None).wait()


def _collect_garbage():
    # Only a Delete with sync gets here, which the Protocols never send.
    raise AssertionError("no garbage collection behind the contract suites")


@contextlib.contextmanager
def namespaces(root, db):
    with serving(root, "namespaces", lambda s: namespaces_service.register(s, db.namespaces)) as channel:
        yield RemoteNamespaces(channel)


@contextlib.contextmanager
def containers(root, db):
    with serving(root, "containers", lambda s: containers_service.register(s, db.containers, EventBroker())) as channel:
        yield RemoteContainers(channel)


@contextlib.contextmanager
def images(root, db):
    with serving(root, "images", lambda s: images_service.register(s, db.images, _collect_garbage, EventBroker())) as channel:
        yield RemoteImages(channel)


@contextlib.contextmanager
def leases(root, db):
    with serving(root, "leases", lambda s: leases_service.register(s, db.leases, _collect_garbage)) as channel:
        yield RemoteLeases(channel)


@contextlib.contextmanager
def content(root, db):
    store = LocalContentStore(os.path.join(root, "content"), db)
    with serving(root, "content", lambda s: content_service.register(s, store)) as channel:
        yield RemoteContentStore(channel)


@contextlib.contextmanager
def snapshotter(root, db):
    with contextlib.closing(OverlaySnapshotter(os.path.join(root, "snapshots"))) as local:
        with serving(root, "snapshots", lambda s: snapshots_service.register(s, {"overlayfs": local})) as channel:
            yield RemoteSnapshotter(channel)
