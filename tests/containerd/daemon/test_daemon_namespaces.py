"""The Namespaces service of a running daemon, backed by the metadata store."""

import grpc
import pytest
from google.protobuf import field_mask_pb2

from dockyard.api.services.namespaces.v1 import namespaces_pb2 as pb
from dockyard.api.services.namespaces.v1.namespaces_pb2_grpc import NamespacesStub


@pytest.fixture
def ns_stub(daemon) -> NamespacesStub:
    return NamespacesStub(daemon.channel)


def code_of(call, request) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call(request, timeout=10)
    return e.value.code()


def test_create_get_list_update_delete(ns_stub):
    created = ns_stub.Create(pb.CreateNamespaceRequest(
        namespace=pb.Namespace(name="moby", labels={"owner": "engine"})), timeout=10).namespace
    assert (created.name, dict(created.labels)) == ("moby", {"owner": "engine"})
    ns_stub.Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name="k8s.io")), timeout=10)

    got = ns_stub.Get(pb.GetNamespaceRequest(name="moby"), timeout=10).namespace
    assert dict(got.labels) == {"owner": "engine"}
    listed = ns_stub.List(pb.ListNamespacesRequest(), timeout=10).namespaces
    assert [n.name for n in listed] == ["k8s.io", "moby"]
    only = ns_stub.List(pb.ListNamespacesRequest(filters=["labels.owner==engine"]), timeout=10)
    assert [n.name for n in only.namespaces] == ["moby"]

    # With a mask only the named label changes; without one the labels are replaced.
    masked = ns_stub.Update(pb.UpdateNamespaceRequest(
        namespace=pb.Namespace(name="moby", labels={"tier": "1", "owner": "ignored"}),
        update_mask=field_mask_pb2.FieldMask(paths=["labels.tier"])), timeout=10).namespace
    assert dict(masked.labels) == {"owner": "engine", "tier": "1"}
    replaced = ns_stub.Update(pb.UpdateNamespaceRequest(
        namespace=pb.Namespace(name="moby", labels={"new": "x"})), timeout=10).namespace
    assert dict(replaced.labels) == {"new": "x"}

    ns_stub.Delete(pb.DeleteNamespaceRequest(name="moby"), timeout=10)
    assert code_of(ns_stub.Get, pb.GetNamespaceRequest(name="moby")) is grpc.StatusCode.NOT_FOUND
    assert [n.name for n in ns_stub.List(pb.ListNamespacesRequest(), timeout=10).namespaces] == ["k8s.io"]


def test_errors_have_their_codes(ns_stub):
    create = pb.CreateNamespaceRequest(namespace=pb.Namespace(name="moby"))
    ns_stub.Create(create, timeout=10)
    assert code_of(ns_stub.Create, create) is grpc.StatusCode.FAILED_PRECONDITION
    bad = pb.CreateNamespaceRequest(namespace=pb.Namespace(name="no spaces"))
    assert code_of(ns_stub.Create, bad) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(ns_stub.Delete, pb.DeleteNamespaceRequest(name="nope")) is grpc.StatusCode.NOT_FOUND
    bad_filter = pb.ListNamespacesRequest(filters=["labels.a=="])
    assert code_of(ns_stub.List, bad_filter) is grpc.StatusCode.INVALID_ARGUMENT


def test_namespaces_outlive_the_daemon(daemons):
    first = daemons().start()
    NamespacesStub(first.channel).Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name="moby")), timeout=10)
    assert first.stop()[0] == 0
    again = daemons(address=first.address, root=first.root).start()
    got = NamespacesStub(again.channel).Get(pb.GetNamespaceRequest(name="moby"), timeout=10)
    assert got.namespace.name == "moby"
