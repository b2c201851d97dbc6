"""Garbage collection over the real stores: what leases, images, containers and gc labels keep,
and what is swept."""

import datetime
import hashlib
import os

import pytest

from dockyard.containerd.gc import collect
from dockyard.containerd.metadata import Container, Descriptor, Image, Resource, RuntimeInfo
from dockyard.errors import NotFound

UTC = datetime.timezone.utc
NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PAST = "2025-06-01T11:00:00Z"
FUTURE = "2025-06-01T13:00:00Z"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def put(content, ns, data, labels=None):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    w = content.writer(ns, "ref-" + digest)
    w.write(data)
    w.commit(len(data), digest, labels)
    return digest


def exists(content, ns, digest):
    try:
        content.info(ns, digest)
        return True
    except NotFound:
        return False


def snapshot_names(snapshotter, ns="moby"):
    return {i.name for i in snapshotter.list(ns)}


def run(db, content, snapshotter, now=NOW):
    return collect(db, content, {"overlayfs": snapshotter}, now)


def test_leases_keep_content_until_they_expire(db, content, snapshotter):
    expired, live, forever, loose = (put(content, "moby", x) for x in (b"expired", b"live", b"forever", b"loose"))
    for lease, digest, labels in (("old", expired, {"containerd.io/gc.expire": PAST}),
                                  ("new", live, {"containerd.io/gc.expire": FUTURE}),
                                  ("nolimit", forever, {})):
        db.leases.create("moby", lease, labels)
        db.leases.add_resource("moby", lease, Resource(digest, "content"))
    removed = run(db, content, snapshotter).removed
    assert not exists(content, "moby", expired) and not exists(content, "moby", loose)
    assert exists(content, "moby", live) and exists(content, "moby", forever)
    assert [x.id for x in db.leases.list("moby")] == ["new", "nolimit"]  # the expired lease goes too
    assert ("moby", "lease", "old") in removed and ("moby", "content", loose) in removed
    assert not os.path.exists(content.blob_path(expired))
    # Once the live lease expires, its content goes on the next run.
    run(db, content, snapshotter, NOW + datetime.timedelta(hours=2))
    assert not exists(content, "moby", live) and exists(content, "moby", forever)


def test_lease_may_name_content_before_it_exists(db, content, snapshotter):
    db.leases.create("moby", "pull", {"containerd.io/gc.expire": FUTURE})
    digest = "sha256:" + hashlib.sha256(b"in flight").hexdigest()
    db.leases.add_resource("moby", "pull", Resource(digest, "content"))
    db.leases.add_resource("moby", "pull", Resource("extract-1", "snapshots/overlayfs"))
    run(db, content, snapshotter)  # nothing to do yet
    put(content, "moby", b"in flight")
    snapshotter.prepare("moby", "extract-1")
    run(db, content, snapshotter)
    assert exists(content, "moby", digest) and snapshot_names(snapshotter) == {"extract-1"}


def test_image_chain_through_labels(db, content, snapshotter):
    # image → manifest → (config → top snapshot → parent snapshot), layers; all by labels.
    snapshotter.prepare("moby", "x1")
    snapshotter.commit("moby", "chain-1", "x1")
    snapshotter.prepare("moby", "x2", "chain-1")
    snapshotter.commit("moby", "chain-2", "x2")
    snapshotter.prepare("moby", "y")
    snapshotter.commit("moby", "unused", "y")
    layer0, layer1 = put(content, "moby", b"layer0"), put(content, "moby", b"layer1")
    config = put(content, "moby", b"config", {"containerd.io/gc.ref.snapshot.overlayfs": "chain-2"})
    manifest = put(content, "moby", b"manifest", {"containerd.io/gc.ref.content.config": config,
                                                  "containerd.io/gc.ref.content.l.0": layer0,
                                                  "containerd.io/gc.ref.content.l.1": layer1})
    orphan = put(content, "moby", b"orphan")
    db.images.create("moby", Image("docker.io/library/app:1", Descriptor(MANIFEST, manifest, 8)))
    run(db, content, snapshotter)
    assert {i.digest for i in content.list("moby")} == {manifest, config, layer0, layer1}
    assert not exists(content, "moby", orphan)
    assert snapshot_names(snapshotter) == {"chain-1", "chain-2"}
    # Without the image, everything goes — snapshots children first.
    db.images.delete("moby", "docker.io/library/app:1")
    run(db, content, snapshotter)
    assert content.list("moby") == [] and snapshot_names(snapshotter) == set()
    assert sorted(os.listdir(snapshotter.root)) == ["metadata.db", "metadata.db-shm", "metadata.db-wal"]


def test_containers_keep_their_snapshot_and_parents(db, content, snapshotter):
    snapshotter.prepare("moby", "x")
    snapshotter.commit("moby", "base", "x")
    snapshotter.prepare("moby", "rootfs", "base")
    snapshotter.prepare("moby", "stray", "base")
    db.containers.create("moby", Container("web", RuntimeInfo("io.containerd.runc.v2"), {"ociVersion": "1.2.0"},
                                           snapshotter="overlayfs", snapshot_key="rootfs"))
    run(db, content, snapshotter)
    assert snapshot_names(snapshotter) == {"base", "rootfs"}


def test_gc_root_label(db, content, snapshotter):
    pinned = put(content, "moby", b"pinned", {"containerd.io/gc.root": "2025-01-01T00:00:00Z"})
    child = put(content, "moby", b"child")
    content.update("moby", pinned, {"containerd.io/gc.ref.content": child}, ["labels.containerd.io/gc.ref.content"])
    snapshotter.prepare("moby", "keep", labels={"containerd.io/gc.root": "1"})
    snapshotter.prepare("moby", "drop")
    run(db, content, snapshotter)
    assert exists(content, "moby", pinned) and exists(content, "moby", child)
    assert snapshot_names(snapshotter) == {"keep"}


def test_namespaces_are_collected_separately(db, content, snapshotter):
    digest = put(content, "moby", b"shared")
    put(content, "k8s.io", b"shared")
    db.images.create("k8s.io", Image("img", Descriptor(MANIFEST, digest, 6)))
    snapshotter.prepare("k8s.io", "only-in-snapshotter")
    run(db, content, snapshotter)
    assert not exists(content, "moby", digest) and exists(content, "k8s.io", digest)
    assert os.path.exists(content.blob_path(digest))  # still referenced from k8s.io
    assert snapshotter.list("k8s.io") == []


@pytest.mark.parametrize("expire", ["not-a-time", ""])
def test_invalid_expiry_keeps_the_lease(db, content, snapshotter, expire):
    digest = put(content, "moby", b"data")
    db.leases.create("moby", "l", {"containerd.io/gc.expire": expire})
    db.leases.add_resource("moby", "l", Resource(digest, "content"))
    run(db, content, snapshotter)
    assert exists(content, "moby", digest)
