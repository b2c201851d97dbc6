"""Namespaces, backed by the metadata store's `Namespaces`. The name travels in the messages,
so these calls need no namespace header."""

import grpc
from google.protobuf import empty_pb2

from dockyard.api.services.namespaces.v1 import namespaces_pb2 as pb
from dockyard.api.services.namespaces.v1 import namespaces_pb2_grpc
from dockyard.containerd import filters, metadata


def _message(namespace: metadata.Namespace) -> pb.Namespace:
    return pb.Namespace(name=namespace.name, labels=namespace.labels)


class NamespacesService(namespaces_pb2_grpc.NamespacesServicer):
    def __init__(self, namespaces: metadata.Namespaces):
        self._namespaces = namespaces

    def Get(self, request, context):
        return pb.GetNamespaceResponse(namespace=_message(self._namespaces.get(request.name)))

    def List(self, request, context):
        match = filters.parse(request.filters)
        found = [n for n in self._namespaces.list()
                 if match(filters.adaptor({"name": n.name}, n.labels))]
        return pb.ListNamespacesResponse(namespaces=[_message(n) for n in found])

    def Create(self, request, context):
        created = self._namespaces.create(request.namespace.name, dict(request.namespace.labels))
        return pb.CreateNamespaceResponse(namespace=_message(created))

    def Update(self, request, context):
        # No mask: the labels are replaced as a whole.
        updated = self._namespaces.update(request.namespace.name, dict(request.namespace.labels),
                                          list(request.update_mask.paths) or None)
        return pb.UpdateNamespaceResponse(namespace=_message(updated))

    def Delete(self, request, context):
        self._namespaces.delete(request.name)
        return empty_pb2.Empty()


def register(server: grpc.Server, namespaces: metadata.Namespaces) -> None:
    namespaces_pb2_grpc.add_NamespacesServicer_to_server(NamespacesService(namespaces), server)
