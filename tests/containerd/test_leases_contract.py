"""Contract of the Leases Protocol (containerd leases manager)."""

import pytest

from dockyard.containerd.metadata import Resource
from dockyard.errors import Conflict, InvalidArgument, NotFound

D1 = "sha256:" + "1" * 64


def test_create_list_delete(leases):
    a = leases.create("moby", "pull-1", {"containerd.io/gc.expire": "2030-01-01T00:00:00Z"})
    b = leases.create("moby")  # a generated id
    assert a.id == "pull-1" and b.id and a.created_at > 0
    assert {x.id for x in leases.list("moby")} == {"pull-1", b.id}
    assert [x.id for x in leases.list("moby", "labels.\"containerd.io/gc.expire\"")] == ["pull-1"]
    leases.delete("moby", b.id)
    with pytest.raises(NotFound):
        leases.delete("moby", b.id)
    with pytest.raises(Conflict):
        leases.create("moby", "pull-1")
    with pytest.raises(InvalidArgument):
        leases.create("moby", "../etc")


def test_resources(leases):
    leases.create("moby", "l")
    resources = [Resource(D1, "content"), Resource("extract-1", "snapshots/overlayfs"),
                 Resource("layer-ref", "ingests")]
    for r in resources:
        leases.add_resource("moby", "l", r)
    leases.add_resource("moby", "l", resources[0])  # idempotent
    assert sorted(leases.list_resources("moby", "l"), key=lambda r: r.type) == sorted(resources, key=lambda r: r.type)
    leases.delete_resource("moby", "l", resources[1])
    assert Resource("extract-1", "snapshots/overlayfs") not in leases.list_resources("moby", "l")
    leases.delete("moby", "l")  # resources go with it
    leases.create("moby", "l")
    assert leases.list_resources("moby", "l") == []


def test_resource_validation(leases):
    leases.create("moby", "l")
    for bad in (Resource("sha256:zz", "content"), Resource("x", "bogus"), Resource("k", "snapshots/../x")):
        with pytest.raises(InvalidArgument):
            leases.add_resource("moby", "l", bad)
    with pytest.raises(NotFound):
        leases.add_resource("moby", "nope", Resource(D1, "content"))
    with pytest.raises(NotFound):
        leases.list_resources("k8s.io", "l")  # leases are namespaced
