"""The storage services of a running dockyard-containerd, through its socket: Content,
Snapshots, Containers, Images and Leases, with the codes a client sees for what is missing."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from dockyard.api.services.containers.v1 import containers_pb2 as ctr_pb
from dockyard.api.services.containers.v1.containers_pb2_grpc import ContainersStub
from dockyard.api.services.content.v1 import content_pb2 as content_pb
from dockyard.api.services.content.v1.content_pb2_grpc import ContentStub
from dockyard.api.services.images.v1 import images_pb2 as img_pb
from dockyard.api.services.images.v1.images_pb2_grpc import ImagesStub
from dockyard.api.services.leases.v1 import leases_pb2 as lease_pb
from dockyard.api.services.leases.v1.leases_pb2_grpc import LeasesStub
from dockyard.api.services.snapshots.v1 import snapshots_pb2 as snap_pb
from dockyard.api.services.snapshots.v1.snapshots_pb2_grpc import SnapshotsStub
from dockyard.containerd.daemon import client
from dockyard.containerd.daemon.remote import (RemoteContainers, RemoteContentStore, RemoteImages,
                                               RemoteSnapshotter)
from dockyard.containerd.metadata import Container, Descriptor, Image, RuntimeInfo
from dockyard.containerd.snapshots import Kind
from dockyard.errors import Conflict, NotFound

BODY = os.urandom(3 << 20)  # more than one Read/Write chunk
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()
MISSING = "sha256:" + "0" * 64


def code_of(call, request, **kw) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call(request, timeout=10, **kw)
    return e.value.code()


def test_content_write_commit_read(daemon):
    store = RemoteContentStore(daemon.channel)
    w = store.writer("moby", "layer", total=len(BODY), expected=DIGEST)
    w.write(BODY)
    w.commit(len(BODY), DIGEST, {"kind": "layer"})
    assert (store.info("moby", DIGEST).size, store.info("moby", DIGEST).labels) == (len(BODY), {"kind": "layer"})
    reader = store.reader_at("moby", DIGEST)
    assert reader.read_at(0, reader.size) == BODY and reader.read_at(5, 3) == BODY[5:8]
    stub = ContentStub(client.namespaced(daemon.channel, "moby"))
    chunks = list(stub.Read(content_pb.ReadContentRequest(digest=DIGEST, offset=1), timeout=10))
    assert max(len(c.data) for c in chunks) <= 1 << 20 and b"".join(c.data for c in chunks) == BODY[1:]
    assert [c.offset for c in chunks][:2] == [1, 1 + (1 << 20)]


CLIENT = """
import sys
from dockyard.containerd.daemon import client
from dockyard.containerd.daemon.remote import RemoteContentStore
w = RemoteContentStore(client.connect(sys.argv[1])).writer("moby", "r")
w.write(sys.stdin.buffer.read(int(sys.argv[2])))
print("written", flush=True)
sys.stdin.buffer.read()  # until killed, the stream open
"""


def test_ingest_of_a_killed_client_resumes_on_a_new_stream(daemon):
    """Over the wire, a writer's life is its Write stream: when the client dies the daemon ends
    the stream, releases the ingest, and another client resumes it at its offset."""
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, daemon.address, "123456"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=False)
    proc.stdin.write(BODY[:123_456])
    proc.stdin.flush()
    assert proc.stdout.readline() == b"written\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    store = RemoteContentStore(daemon.channel)
    deadline = time.monotonic() + 10
    while True:  # the daemon notices the dead connection a moment later
        try:
            w = store.writer("moby", "r")
            break
        except Conflict:
            assert time.monotonic() < deadline, "the dead client's ingest stayed locked"
            time.sleep(0.05)
    assert w.status().offset == 123_456
    w.write(BODY[123_456:])
    w.commit(len(BODY), DIGEST)
    assert store.info("moby", DIGEST).size == len(BODY)


def test_snapshots_prepare_commit_and_snapshotter_names(daemon):
    snapshotter = RemoteSnapshotter(daemon.channel)
    (mount,) = snapshotter.prepare("moby", "extract-1")
    assert mount.type == "bind" and mount.source.startswith(daemon.root)
    snapshotter.commit("moby", "layer-1", "extract-1")
    snapshotter.prepare("moby", "rootfs", "layer-1")
    assert [(i.name, i.kind, i.parent) for i in snapshotter.list("moby")] == [
        ("layer-1", Kind.COMMITTED, ""), ("rootfs", Kind.ACTIVE, "layer-1")]
    stub = SnapshotsStub(client.namespaced(daemon.channel, "moby"))
    assert code_of(stub.Stat, snap_pb.StatSnapshotRequest(snapshotter="btrfs", key="rootfs")) \
        is grpc.StatusCode.NOT_FOUND
    assert code_of(stub.Stat, snap_pb.StatSnapshotRequest(key="rootfs")) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.Remove, snap_pb.RemoveSnapshotRequest(snapshotter="overlayfs", key="layer-1")) \
        is grpc.StatusCode.FAILED_PRECONDITION  # it has a child


def test_containers_create_list(daemon):
    containers = RemoteContainers(daemon.channel)
    spec = {"ociVersion": "1.2.0", "process": {"args": ["sh"]}}
    containers.create("moby", Container("web", RuntimeInfo("dockyard-runc"), spec, labels={"app": "web"}))
    containers.create("moby", Container("db", RuntimeInfo("dockyard-runc"), spec))
    assert [c.id for c in containers.list("moby")] == ["db", "web"]
    assert [c.id for c in containers.list("moby", "labels.app==web")] == ["web"]
    assert containers.get("moby", "web").spec == spec
    assert containers.list("k8s.io") == []


def test_unknown_ids_and_missing_namespace(daemon):
    ns = client.namespaced(daemon.channel, "moby")
    for call, request in [
        (ContainersStub(ns).Get, ctr_pb.GetContainerRequest(id="nope")),
        (ContainersStub(ns).Delete, ctr_pb.DeleteContainerRequest(id="nope")),
        (ImagesStub(ns).Get, img_pb.GetImageRequest(name="nope")),
        (LeasesStub(ns).Delete, lease_pb.DeleteLeaseRequest(id="nope")),
        (LeasesStub(ns).ListResources, lease_pb.ListResourcesRequest(id="nope")),
        (ContentStub(ns).Info, content_pb.InfoRequest(digest=MISSING)),
        (ContentStub(ns).Status, content_pb.StatusRequest(ref="nope")),
        (ContentStub(ns).Abort, content_pb.AbortRequest(ref="nope")),
        (SnapshotsStub(ns).Stat, snap_pb.StatSnapshotRequest(snapshotter="overlayfs", key="nope")),
    ]:
        assert code_of(call, request) is grpc.StatusCode.NOT_FOUND, call
    assert code_of(lambda r, **kw: list(ContentStub(ns).Read(r, **kw)),
                   content_pb.ReadContentRequest(digest=MISSING)) is grpc.StatusCode.NOT_FOUND
    assert code_of(ContentStub(ns).Info, content_pb.InfoRequest(digest="sha256:../x")) \
        is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(ContainersStub(daemon.channel).Get, ctr_pb.GetContainerRequest(id="web")) \
        is grpc.StatusCode.FAILED_PRECONDITION  # no namespace


def test_image_delete_with_sync_collects_its_content(daemon):
    store, images = RemoteContentStore(daemon.channel), RemoteImages(daemon.channel)
    w = store.writer("moby", "manifest")
    w.write(b"{}")
    digest = "sha256:" + hashlib.sha256(b"{}").hexdigest()
    w.commit(2, digest)
    images.create("moby", Image("busybox:latest", Descriptor("application/vnd.oci.image.manifest.v1+json", digest, 2)))
    ImagesStub(client.namespaced(daemon.channel, "moby")).Delete(
        img_pb.DeleteImageRequest(name="busybox:latest", sync=True), timeout=10)
    with pytest.raises(NotFound):
        store.info("moby", digest)
