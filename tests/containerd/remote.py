"""The gRPC implementations of the storage Protocols, for the contract suites: a real gRPC
server on a unix socket in front of the local store, and the Remote* client in front of it."""

import contextlib
import os
from concurrent import futures

import grpc

from dockyard.containerd.daemon import client
from dockyard.containerd.daemon.errors import ErrorInterceptor
from dockyard.containerd.daemon.remote import RemoteNamespaces
from dockyard.containerd.daemon.services import namespaces as namespaces_service


@contextlib.contextmanager
def namespaces(root, db):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[ErrorInterceptor()])
    namespaces_service.register(server, db.namespaces)
    address = os.path.join(root, "ns.sock")
    server.add_insecure_port(f"unix:{address}")
    server.start()
    channel = client.connect(address, timeout=10)
    try:
        yield RemoteNamespaces(channel)
    finally:
        channel.close()
        server.stop(None).wait()
