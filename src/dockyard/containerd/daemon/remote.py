"""The stores' Protocols (`dockyard.containerd.metadata`) implemented over gRPC, so a caller
(dockyardd, dockyard-ctr) holds the same interface whether the store is local or behind the
daemon, and the same contract tests run against both. Errors come back as the `dockyard.errors`
the store raised (`daemon.errors.from_rpc_error`)."""

from __future__ import annotations  # a method named `list` shadows the builtin in annotations

import grpc

from dockyard.api.services.namespaces.v1 import namespaces_pb2 as ns_pb
from dockyard.api.services.namespaces.v1.namespaces_pb2_grpc import NamespacesStub
from dockyard.containerd.metadata import Namespace

from .errors import from_rpc_error


def _call(method, request):
    try:
        return method(request)
    except grpc.RpcError as e:
        raise from_rpc_error(e) from None


def _namespace(message: ns_pb.Namespace) -> Namespace:
    return Namespace(message.name, dict(message.labels))


class RemoteNamespaces:
    """`metadata.Namespaces` on a channel to the daemon."""

    def __init__(self, channel: grpc.Channel):
        self._stub = NamespacesStub(channel)

    def create(self, name: str, labels: dict[str, str] | None = None) -> Namespace:
        request = ns_pb.CreateNamespaceRequest(namespace=ns_pb.Namespace(name=name, labels=labels or {}))
        return _namespace(_call(self._stub.Create, request).namespace)

    def get(self, name: str) -> Namespace:
        return _namespace(_call(self._stub.Get, ns_pb.GetNamespaceRequest(name=name)).namespace)

    def list(self) -> list[Namespace]:
        return [_namespace(n) for n in _call(self._stub.List, ns_pb.ListNamespacesRequest()).namespaces]

    def update(self, name: str, labels: dict[str, str], fieldpaths: list[str] | None = None) -> Namespace:
        request = ns_pb.UpdateNamespaceRequest(namespace=ns_pb.Namespace(name=name, labels=labels))
        request.update_mask.paths.extend(fieldpaths or ())
        return _namespace(_call(self._stub.Update, request).namespace)

    def delete(self, name: str) -> None:
        _call(self._stub.Delete, ns_pb.DeleteNamespaceRequest(name=name))
