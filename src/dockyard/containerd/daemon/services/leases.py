"""Leases, backed by the metadata store's `Leases`. Namespaced. Delete with `sync` runs a
garbage collection before it answers."""

from typing import Callable

import grpc
from google.protobuf import empty_pb2

from dockyard.api.services.leases.v1 import leases_pb2 as pb
from dockyard.api.services.leases.v1 import leases_pb2_grpc
from dockyard.containerd import metadata

from .. import namespace


def message(lease: metadata.Lease) -> pb.Lease:
    m = pb.Lease(id=lease.id, labels=lease.labels)
    m.created_at.FromNanoseconds(lease.created_at)
    return m


def from_message(m: pb.Lease) -> metadata.Lease:
    return metadata.Lease(m.id, dict(m.labels), m.created_at.ToNanoseconds())


def resource(r: metadata.Resource) -> pb.Resource:
    return pb.Resource(id=r.id, type=r.type)


def from_resource(m: pb.Resource) -> metadata.Resource:
    return metadata.Resource(m.id, m.type)


class LeasesService(leases_pb2_grpc.LeasesServicer):
    def __init__(self, leases: metadata.Leases, collect_garbage: Callable[[], object]):
        self._leases = leases
        self._collect_garbage = collect_garbage

    def Create(self, request, context):
        ns = namespace.required(context)
        return pb.CreateLeaseResponse(lease=message(self._leases.create(ns, request.id, dict(request.labels))))

    def Delete(self, request, context):
        ns = namespace.required(context)
        self._leases.delete(ns, request.id)
        if request.sync:
            self._collect_garbage()
        return empty_pb2.Empty()

    def List(self, request, context):
        ns = namespace.required(context)
        return pb.ListLeasesResponse(leases=[message(x) for x in self._leases.list(ns, *request.filters)])

    def AddResource(self, request, context):
        ns = namespace.required(context)
        self._leases.add_resource(ns, request.id, from_resource(request.resource))
        return empty_pb2.Empty()

    def DeleteResource(self, request, context):
        ns = namespace.required(context)
        self._leases.delete_resource(ns, request.id, from_resource(request.resource))
        return empty_pb2.Empty()

    def ListResources(self, request, context):
        ns = namespace.required(context)
        found = self._leases.list_resources(ns, request.id)
        return pb.ListResourcesResponse(resources=[resource(r) for r in found])


def register(server: grpc.Server, leases: metadata.Leases, collect_garbage: Callable[[], object]) -> None:
    leases_pb2_grpc.add_LeasesServicer_to_server(LeasesService(leases, collect_garbage), server)
