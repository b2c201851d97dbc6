"""Contract of the Namespaces Protocol (containerd namespaces service)."""

import pytest

from dockyard.containerd.metadata import Container, RuntimeInfo
from dockyard.errors import Conflict, InvalidArgument, NotFound


def test_create_get_list_update_delete(namespaces):
    namespaces.create("moby", {"owner": "dockyardd"})
    namespaces.create("k8s.io")
    assert namespaces.get("moby").labels == {"owner": "dockyardd"}
    assert [n.name for n in namespaces.list()] == ["k8s.io", "moby"]
    assert namespaces.update("moby", {"x": "1"}, ["labels.x"]).labels == {"owner": "dockyardd", "x": "1"}
    assert namespaces.update("moby", {"y": "2"}).labels == {"y": "2"}
    namespaces.delete("k8s.io")
    with pytest.raises(NotFound):
        namespaces.get("k8s.io")
    with pytest.raises(NotFound):
        namespaces.delete("k8s.io")


def test_duplicate_is_conflict(namespaces):
    namespaces.create("moby")
    with pytest.raises(Conflict):
        namespaces.create("moby")


@pytest.mark.parametrize("name", ["version", "", "a/b", "../x", "Has Space"])
def test_invalid_names(namespaces, name):
    with pytest.raises(InvalidArgument):
        namespaces.create(name)


def test_delete_refuses_non_empty(namespaces, db):
    db.containers.create("moby", Container("c1", RuntimeInfo("io.containerd.runc.v2"), {"ociVersion": "1.2.0"}))
    with pytest.raises(Conflict, match="must be empty"):
        namespaces.delete("moby")
    db.containers.delete("moby", "c1")
    namespaces.delete("moby")
