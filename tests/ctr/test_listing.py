"""dockyard-ctr's read-only and namespace commands against a real daemon: version, namespaces,
and `ls` of containers, content, snapshots and images, empty and with something in them."""

import hashlib
import json
import subprocess

import dockyard
from dockyard.api.services.content.v1 import content_pb2, content_pb2_grpc
from dockyard.api.services.images.v1 import images_pb2, images_pb2_grpc
from dockyard.api.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from dockyard.api.types import descriptor_pb2
from dockyard.containerd.daemon import client


def _stub(ctr, module, name):
    return getattr(module, f"{name}Stub")(client.namespaced(ctr.env.channel, ctr.namespace))


def _write_blob(ctr, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    request = content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref=f"ref-{digest[7:19]}",
                                              total=len(data), expected=digest, data=data)
    list(_stub(ctr, content_pb2_grpc, "Content").Write(iter([request])))
    return digest


def test_version(ctr):
    out = ctr.ok("version")
    assert out.startswith("Client:\n  Version:  " + dockyard.__version__ + "\n")
    assert "\nServer:\n  Version:  " + dockyard.__version__ + "\n  Revision: " in out


def test_namespaces(ctr):
    ctr.ok("namespaces", "create", "team-a", "owner=me", "tier=gold")
    assert ["team-a", "owner=me,tier=gold"] in ctr.table("namespaces", "ls")
    assert ctr.table("namespaces", "ls")[0] == ["NAME", "LABELS"]
    assert "team-a" in ctr.ok("ns", "ls", "-q").split()
    assert ctr.ok("namespaces", "rm", "team-a") == "team-a\n"
    assert "team-a" not in ctr.ok("namespaces", "ls", "-q").split()


def test_namespace_in_use_is_not_removed(ctr):
    ctr.ok("run", "-d", "--rootfs", ctr.rootfs, ctr.new_id(), "sleep", "100")
    r = ctr("namespaces", "rm", ctr.namespace, namespace="default")
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and ctr.namespace in r.stderr


def test_empty_lists_are_headers(ctr):
    assert ctr.ok("containers", "ls") == "CONTAINER    IMAGE    RUNTIME    \n"
    assert ctr.ok("tasks", "ls") == "TASK    PID    STATUS    \n"
    assert ctr.ok("content", "ls") == "DIGEST SIZE AGE LABELS\n"
    assert ctr.ok("snapshots", "ls") == "KEY PARENT KIND \n"
    assert ctr.ok("images", "ls") == "REF TYPE DIGEST SIZE PLATFORMS LABELS \n"


def test_containers_ls_and_info(ctr):
    cid = ctr.new_id()
    ctr.ok("run", "-d", "--label", "app=web", "--rootfs", ctr.rootfs, cid, "sleep", "100")
    rows = ctr.table("containers", "ls")
    assert rows == [["CONTAINER", "IMAGE", "RUNTIME"], [cid, "-", "dockyard-runc"]]
    assert ctr.ok("containers", "ls", "-q") == cid + "\n"
    info = json.loads(ctr.ok("containers", "info", cid))
    assert info["ID"] == cid and info["Labels"] == {"app": "web"}
    assert info["Spec"]["root"] == {"path": ctr.rootfs, "readonly": False}
    assert info["Spec"]["process"]["args"] == ["sleep", "100"]
    assert info["Spec"]["linux"]["cgroupsPath"] == f"/{ctr.namespace}/{cid}"
    assert json.loads(ctr.ok("containers", "info", "--spec", cid)) == info["Spec"]


def test_content_ls(ctr):
    digest = _write_blob(ctr, b"x" * 1234)
    rows = ctr.table("content", "ls")
    assert rows[0] == ["DIGEST", "SIZE", "AGE", "LABELS"]
    assert rows[1:] == [[digest, "1.234kB", "Less", "than", "a", "second", "-"]]
    assert ctr.ok("content", "ls", "-q") == digest + "\n"


def test_snapshots_ls(ctr):
    snapshots = _stub(ctr, snapshots_pb2_grpc, "Snapshots")
    snapshots.Prepare(snapshots_pb2.PrepareSnapshotRequest(snapshotter="overlayfs", key="base-active"))
    snapshots.Commit(snapshots_pb2.CommitSnapshotRequest(snapshotter="overlayfs", name="base", key="base-active"))
    snapshots.Prepare(snapshots_pb2.PrepareSnapshotRequest(snapshotter="overlayfs", key="top", parent="base"))
    try:
        rows = ctr.table("snapshots", "ls")
        assert rows[0] == ["KEY", "PARENT", "KIND"]
        assert sorted(rows[1:]) == [["base", "Committed"], ["top", "base", "Active"]]
    finally:
        snapshots.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter="overlayfs", key="top"))
        snapshots.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter="overlayfs", key="base"))


def test_images_ls(ctr):
    config = json.dumps({"architecture": "arm64", "os": "linux", "variant": "v8"}).encode()
    config_digest = _write_blob(ctr, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 3 << 20,
                    "digest": "sha256:" + "0" * 64}]}).encode()
    manifest_digest = _write_blob(ctr, manifest)
    _stub(ctr, images_pb2_grpc, "Images").Create(images_pb2.CreateImageRequest(image=images_pb2.Image(
        name="example.com/app:1", labels={"k": "v"}, target=descriptor_pb2.Descriptor(
            media_type="application/vnd.oci.image.manifest.v1+json", digest=manifest_digest,
            size=len(manifest)))))
    rows = ctr.table("images", "ls")
    assert rows[0] == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    assert rows[1] == ["example.com/app:1", "application/vnd.oci.image.manifest.v1+json", manifest_digest,
                       "3.0", "MiB", "linux/arm64/v8", "k=v"]
    assert ctr.ok("images", "ls", "-q") == "example.com/app:1\n"


def test_no_daemon_is_one_line(ctr, tmp_path):
    argv = ctr.argv("tasks", "ls")
    argv[argv.index("--address") + 1] = str(tmp_path / "nothing.sock")
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "nothing.sock does not exist" in r.stderr
