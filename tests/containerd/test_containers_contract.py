"""Contract of the Containers Protocol (containerd containers store)."""

import time

import pytest

from dockyard.containerd.metadata import Container, RuntimeInfo
from dockyard.errors import Conflict, InvalidArgument, NotFound

SPEC = {"ociVersion": "1.2.0", "process": {"args": ["sh"]}}


def ctr(id="c1", **kw):
    kw.setdefault("runtime", RuntimeInfo("io.containerd.runc.v2", {"BinaryName": "dockyard-runc"}))
    kw.setdefault("spec", SPEC)
    return Container(id, **kw)


def test_create_get_roundtrip(containers):
    created = containers.create("moby", ctr(image="docker.io/library/busybox:latest", snapshotter="overlayfs",
                                            snapshot_key="c1-rootfs", labels={"app": "web"}))
    got = containers.get("moby", "c1")
    assert got == created
    assert got.runtime.options == {"BinaryName": "dockyard-runc"}
    assert got.spec == SPEC and got.created_at > 0 and got.updated_at == got.created_at


def test_namespaces_are_isolated(containers):
    containers.create("moby", ctr())
    containers.create("k8s.io", ctr())  # same id, other namespace
    with pytest.raises(NotFound):
        containers.get("other", "c1")
    containers.delete("moby", "c1")
    assert containers.get("k8s.io", "c1").id == "c1"


def test_duplicate_is_conflict(containers):
    containers.create("moby", ctr())
    with pytest.raises(Conflict):
        containers.create("moby", ctr())


@pytest.mark.parametrize("bad", [
    ctr(id="../x"), ctr(id=""), ctr(runtime=RuntimeInfo("")), ctr(spec={}),
    ctr(snapshot_key="k"),  # a snapshot key needs a snapshotter
    ctr(labels={"": "x"}),
])
def test_invalid_containers(containers, bad):
    with pytest.raises(InvalidArgument):
        containers.create("moby", bad)


def test_invalid_namespace(containers):
    with pytest.raises(InvalidArgument):
        containers.create("version", ctr())


def test_list_with_filters(containers):
    containers.create("moby", ctr("a", labels={"app": "web"}, image="nginx"))
    containers.create("moby", ctr("b", labels={"app": "db"}, image="postgres"))
    containers.create("moby", ctr("c"))
    assert [c.id for c in containers.list("moby")] == ["a", "b", "c"]
    assert [c.id for c in containers.list("moby", "labels.app==web")] == ["a"]
    assert [c.id for c in containers.list("moby", "labels.app")] == ["a", "b"]
    assert [c.id for c in containers.list("moby", "image==postgres", "id==c")] == ["b", "c"]
    assert containers.list("empty") == []


def test_update_fieldpaths(containers):
    c = containers.create("moby", ctr(labels={"a": "1", "b": "2"}, image="old"))
    time.sleep(0.001)
    u = containers.update("moby", ctr(labels={"a": "9"}, image="new"), ["labels.a", "image"])
    assert u.labels == {"a": "9", "b": "2"} and u.image == "new"
    assert u.created_at == c.created_at and u.updated_at > c.updated_at
    assert containers.get("moby", "c1") == u


def test_update_full_replace_and_immutables(containers):
    containers.create("moby", ctr(labels={"a": "1"}, snapshotter="overlayfs", snapshot_key="k"))
    u = containers.update("moby", ctr(labels={"z": "1"}, snapshotter="overlayfs", snapshot_key="k2",
                                      spec={"ociVersion": "1.1.0"}))
    assert u.labels == {"z": "1"} and u.snapshot_key == "k2" and u.spec == {"ociVersion": "1.1.0"}
    with pytest.raises(InvalidArgument, match="immutable"):
        containers.update("moby", ctr(snapshotter="native", snapshot_key="k2"))
    with pytest.raises(InvalidArgument, match="immutable"):
        containers.update("moby", ctr(runtime=RuntimeInfo("other"), snapshotter="overlayfs"))
    with pytest.raises(InvalidArgument, match="immutable"):
        containers.update("moby", ctr(), ["runtime"])
    with pytest.raises(InvalidArgument):
        containers.update("moby", ctr(), ["bogus"])
    with pytest.raises(NotFound):
        containers.update("moby", ctr("missing"))


def test_delete(containers):
    containers.create("moby", ctr())
    containers.delete("moby", "c1")
    with pytest.raises(NotFound):
        containers.delete("moby", "c1")
