"""The Transfer service of a running dockyard-containerd, through its socket: pull from a real
registry with progress streamed, push back, save (Export) → load (Import), a rootfs import and a
snapshot export; the status codes of bad requests; and a client that leaves cancelling its
operation."""

import gzip
import io
import json
import os
import tarfile
import threading
import time

import grpc
import pytest

from dockyard.api.services.images.v1 import images_pb2 as img_pb
from dockyard.api.services.images.v1.images_pb2_grpc import ImagesStub
from dockyard.api.services.leases.v1 import leases_pb2 as lease_pb
from dockyard.api.services.leases.v1.leases_pb2_grpc import LeasesStub
from dockyard.api.services.snapshots.v1 import snapshots_pb2 as snap_pb
from dockyard.api.services.snapshots.v1.snapshots_pb2_grpc import SnapshotsStub
from dockyard.api.services.transfer.v1 import transfer_pb2 as pb
from dockyard.api.services.transfer.v1.transfer_pb2_grpc import TransferStub
from dockyard.api.services.content.v1 import content_pb2 as content_pb
from dockyard.api.services.content.v1.content_pb2_grpc import ContentStub
from dockyard.containerd.daemon import client
from dockyard.oci import image as oci
from tests.fixtures import busybox
from tests.fixtures.registry import FaultProxy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking makes overlay snapshots: root needed")

NS = "xfer"


class Stubs:
    def __init__(self, daemon, ns: str = NS):
        channel = client.namespaced(daemon.channel, ns)
        self.transfer = TransferStub(channel)
        self.images = ImagesStub(channel)
        self.leases = LeasesStub(channel)
        self.snapshots = SnapshotsStub(channel)
        self.content = ContentStub(channel)

    def read(self, digest: str) -> bytes:
        return b"".join(r.data for r in self.content.Read(content_pb.ReadContentRequest(digest=digest), timeout=30))

    def top_chain(self, name: str) -> str:
        target = self.images.Get(img_pb.GetImageRequest(name=name), timeout=10).image.target
        doc = oci.parse_manifest(self.read(target.digest), target.media_type)
        if isinstance(doc, oci.Index):
            doc = oci.parse_manifest(self.read(oci.select_manifest(doc, oci.host_platform()).digest))
        config = oci.parse_config(self.read(doc.config.digest))
        return oci.chain_ids(config.diff_ids)[-1]

    def import_(self, options: pb.ImportOptions, data: bytes) -> list[pb.Progress]:
        def requests():
            yield pb.ImportRequest(options=options)
            for start in range(0, len(data), 1 << 20):
                yield pb.ImportRequest(data=data[start:start + (1 << 20)])
        return list(self.transfer.Import(requests(), timeout=60))


@pytest.fixture
def stubs(daemon) -> Stubs:
    return Stubs(daemon)


def code_of(iterator) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        list(iterator)
    return e.value.code()


def results(messages) -> tuple[list[str], list[pb.Progress]]:
    return [m.status for m in messages if m.status], [m for m in messages if m.images or m.digest]


def test_pull_streams_progress_and_names_the_image(stubs, busybox_ref, registry):
    ref, digest = busybox_ref
    messages = list(stubs.transfer.Pull(pb.PullRequest(ref=ref), timeout=60))
    statuses, final = results(messages)
    assert "Pulling from fixture/busybox" in statuses
    assert {"Pulling fs layer", "Pull complete"} <= set(statuses)
    assert f"Digest: {digest}" in statuses
    assert statuses[-1].startswith("Status: Downloaded newer image for ")
    assert len(final) == 1 and final[0] is messages[-1]
    assert [i.name for i in final[0].images] == [ref]
    assert final[0].images[0].target.digest == digest
    listed = stubs.images.List(img_pb.ListImagesRequest(), timeout=10).images
    assert [(i.name, i.target.digest) for i in listed] == [(ref, digest)]
    assert stubs.leases.List(lease_pb.ListLeasesRequest(), timeout=10).leases == []
    # Again: already there.
    statuses, _ = results(list(stubs.transfer.Pull(pb.PullRequest(ref=ref), timeout=60)))
    assert statuses[-1].startswith("Status: Image is up to date for ")
    # Removing the image (sync) lets GC take everything it reached.
    stubs.images.Delete(img_pb.DeleteImageRequest(name=ref, sync=True), timeout=30)
    assert list(stubs.content.List(content_pb.ListContentRequest(), timeout=10)) == []
    snaps = [s for r in stubs.snapshots.List(snap_pb.ListSnapshotsRequest(snapshotter="overlayfs"), timeout=10)
             for s in r.info]
    assert snaps == []


def test_pull_errors_reach_the_client_as_status_codes(daemon, stubs, registry):
    assert code_of(stubs.transfer.Pull(pb.PullRequest(ref="Bad/Name"), timeout=30)) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stubs.transfer.Pull(pb.PullRequest(ref=""), timeout=30)) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stubs.transfer.Pull(pb.PullRequest(ref=f"{registry.host}/no/such:1"),
                                       timeout=30)) is grpc.StatusCode.NOT_FOUND
    assert code_of(stubs.transfer.Pull(pb.PullRequest(ref="x:1", platform="no/such/thing/at/all"),
                                       timeout=30)) is grpc.StatusCode.INVALID_ARGUMENT
    no_namespace = TransferStub(daemon.channel)
    assert code_of(no_namespace.Pull(pb.PullRequest(ref="x:1"), timeout=30)) is grpc.StatusCode.FAILED_PRECONDITION
    assert stubs.leases.List(lease_pb.ListLeasesRequest(), timeout=10).leases == []


def test_push_what_was_pulled_keeps_the_digest(daemon, stubs, busybox_ref, registry):
    ref, digest = busybox_ref
    list(stubs.transfer.Pull(pb.PullRequest(ref=ref), timeout=60))
    image = stubs.images.Get(img_pb.GetImageRequest(name=ref), timeout=10).image
    copy = f"{registry.host}/copied/busybox:v1"
    stubs.images.Create(img_pb.CreateImageRequest(image=img_pb.Image(name=copy, target=image.target)), timeout=10)
    messages = list(stubs.transfer.Push(pb.PushRequest(ref=copy), timeout=60))
    statuses, final = results(messages)
    assert statuses[0] == f"The push refers to repository [{registry.host}/copied/busybox]"
    assert final[-1].digest == digest
    assert statuses[-1].startswith(f"v1: digest: {digest} size: ")
    # And back: a pull of the pushed copy in another namespace gives the same image.
    pulled = results(list(Stubs(daemon, "xfer-pushed").transfer.Pull(pb.PullRequest(ref=copy), timeout=60)))[1]
    assert pulled[-1].images[0].target.digest == digest


def test_save_and_load_round_trip_between_namespaces(daemon, stubs, tmp_path):
    archive = busybox.build_docker_archive(tmp_path / "busybox.tar").read_bytes()
    messages = stubs.import_(pb.ImportOptions(format="docker-archive"), archive)
    statuses, final = results(messages)
    assert "Loaded image: busybox:latest" in statuses
    assert [i.name for i in final[-1].images] == ["docker.io/library/busybox:latest"]
    saved = b"".join(c.data for c in stubs.transfer.Export(
        pb.ExportRequest(names=["docker.io/library/busybox:latest"]), timeout=60))
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] == ["busybox:latest"]
    elsewhere = Stubs(daemon, "xfer-other")
    final = results(elsewhere.import_(pb.ImportOptions(), gzip.compress(saved)))[1]
    assert final[-1].images[0].target == stubs.images.Get(
        img_pb.GetImageRequest(name="docker.io/library/busybox:latest"), timeout=10).image.target
    assert elsewhere.top_chain("docker.io/library/busybox:latest") == stubs.top_chain("docker.io/library/busybox:latest")


def test_import_rootfs_then_export_its_snapshot(stubs, tmp_path):
    rootfs = busybox.build_rootfs(tmp_path / "rootfs")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name)
    final = results(stubs.import_(pb.ImportOptions(format="rootfs", name="local/fs:1"), buf.getvalue()))[1]
    assert [i.name for i in final[-1].images] == ["docker.io/local/fs:1"]
    chain = stubs.top_chain("docker.io/local/fs:1")
    stubs.snapshots.Prepare(snap_pb.PrepareSnapshotRequest(snapshotter="overlayfs", key="ctr-fs", parent=chain),
                            timeout=10)
    exported = b"".join(c.data for c in stubs.transfer.Export(pb.ExportRequest(snapshot_key="ctr-fs"), timeout=60))
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        names = {m.name.lstrip("./") for m in tar.getmembers()}
    assert "bin/busybox" in names
    stubs.snapshots.Remove(snap_pb.RemoveSnapshotRequest(snapshotter="overlayfs", key="ctr-fs"), timeout=10)


def test_bad_imports_and_exports_are_refused(stubs):
    def codes(options, data=b""):
        return code_of(stubs.transfer.Import(iter([pb.ImportRequest(options=options, data=data)]), timeout=30))

    assert codes(pb.ImportOptions(format="zip")) is grpc.StatusCode.INVALID_ARGUMENT
    assert codes(pb.ImportOptions(format="rootfs")) is grpc.StatusCode.INVALID_ARGUMENT  # no name
    assert codes(pb.ImportOptions(), b"this is not an archive" * 100) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stubs.transfer.Import(iter([]), timeout=30)) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stubs.transfer.Export(pb.ExportRequest(), timeout=30)) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stubs.transfer.Export(pb.ExportRequest(names=["nothere:1"]), timeout=30)) is grpc.StatusCode.NOT_FOUND
    assert code_of(stubs.transfer.Export(pb.ExportRequest(snapshot_key="nope"), timeout=30)) is grpc.StatusCode.NOT_FOUND
    assert stubs.leases.List(lease_pb.ListLeasesRequest(), timeout=10).leases == []


def test_a_client_that_leaves_cancels_the_import(stubs, tmp_path):
    """The client sends half an archive, then cancels: the daemon's operation stops and lets
    go of what it held (its lease)."""
    archive = busybox.build_docker_archive(tmp_path / "busybox.tar").read_bytes()
    sent = threading.Event()
    hold = threading.Event()

    def requests():
        yield pb.ImportRequest(options=pb.ImportOptions())
        yield pb.ImportRequest(data=archive[:len(archive) // 2])
        sent.set()
        hold.wait(30)  # the rest never comes

    call = stubs.transfer.Import(requests(), timeout=60)
    assert sent.wait(30)
    deadline = time.monotonic() + 30
    while not stubs.leases.List(lease_pb.ListLeasesRequest(), timeout=10).leases:  # the load is under way
        assert time.monotonic() < deadline, "the load never took a lease"
        time.sleep(0.02)
    call.cancel()
    hold.set()
    while stubs.leases.List(lease_pb.ListLeasesRequest(), timeout=10).leases:
        assert time.monotonic() < deadline, "the cancelled load kept its lease"
        time.sleep(0.05)
    assert stubs.images.List(img_pb.ListImagesRequest(), timeout=10).images == []


def test_start_clears_what_a_dead_daemon_left_staged(daemons):
    d = daemons()
    leftover = os.path.join(d.root, "transfer", "load-dead")
    os.makedirs(os.path.join(leftover, "blobs"))
    with open(os.path.join(leftover, "blobs", "entry-1"), "wb") as f:
        f.write(b"half an archive")
    d.start()
    assert os.listdir(os.path.join(d.root, "transfer")) == []


def test_a_client_that_leaves_cancels_the_pull(stubs, busybox_ref, registry):
    """The layer download is held up; the client cancels meanwhile. The pull stops at its next
    event instead of finishing: no image, no lease, and a collection leaves no content."""
    ref, _ = busybox_ref
    proxy = FaultProxy(registry.host)
    try:
        proxy.add_rule(r"/blobs/sha256:", method="GET", delay=2.0)
        call = stubs.transfer.Pull(pb.PullRequest(ref=ref.replace(registry.host, proxy.host)), timeout=60)
        seen = [next(call).status for _ in range(2)]  # under way: "Pulling from …", "Pulling fs layer"
        assert seen[0] == "Pulling from fixture/busybox"
        call.cancel()
        deadline = time.monotonic() + 30
        while stubs.leases.List(lease_pb.ListLeasesRequest(), timeout=10).leases:
            assert time.monotonic() < deadline, "the cancelled pull kept its lease"
            time.sleep(0.05)
        assert proxy.requests_matching(r"/blobs/sha256:")  # it had got as far as the blobs
        assert stubs.images.List(img_pb.ListImagesRequest(), timeout=10).images == []
    finally:
        proxy.stop()
