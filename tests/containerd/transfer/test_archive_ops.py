"""save / load / import / export over real local stores (content store, overlay snapshotter,
metadata) in a temporary root: archives in and out, images named and unpacked, what a failure
leaves (nothing), and skopeo reading what we save."""

import gzip
import io
import json
import os
import stat
import subprocess
import tarfile

import pytest

from dockyard.containerd import gc
from dockyard.containerd.content import LocalContentStore
from dockyard.containerd.metadata import MetadataDB
from dockyard.containerd.snapshots import OverlaySnapshotter, mount_all
from dockyard.containerd.transfer import archive
from dockyard.containerd.transfer.stores import Stores
from dockyard.errors import InvalidArgument, NotFound
from dockyard.oci import digest as digests
from dockyard.oci import image as oci
from tests.fixtures import busybox
from tests.containerd.transfer.conftest import NS, assert_nothing_left, tar_layer

BUSYBOX = "docker.io/library/busybox:latest"


@pytest.fixture
def other(tmp_path):
    """A second, independent set of stores (another daemon's root)."""
    root = str(tmp_path / "other")
    db = MetadataDB(root)
    snapshotter = OverlaySnapshotter(os.path.join(root, "snapshots"))
    yield Stores(LocalContentStore(os.path.join(root, "content"), db), snapshotter, db.images, db.leases, db)
    snapshotter.close()
    db.close()


@pytest.fixture
def docker_archive(tmp_path) -> str:
    return str(busybox.build_docker_archive(tmp_path / "busybox.tar"))


def staging(stores_root) -> str:
    return os.path.join(stores_root, "transfer")


def load_file(stores, path, events=None, tmp=None):
    with open(path, "rb") as f:
        return archive.load(stores, NS, f, events, staging=str(tmp))


def top_chain(stores, name: str) -> str:
    image = stores.images.get(NS, name)
    _, _, config = archive.resolve(stores, NS, oci.Descriptor(image.target.media_type, image.target.digest,
                                                              image.target.size))
    return oci.chain_ids(config.diff_ids)[-1]


def test_load_docker_archive_names_and_unpacks(stores, docker_archive, tmp_path, mnt, events):
    made = load_file(stores, docker_archive, events, tmp_path / "staging")
    assert [i.name for i in made] == [BUSYBOX]
    assert "Loaded image: busybox:latest" in events.statuses("")
    assert stores.leases.list(NS) == []
    assert os.listdir(tmp_path / "staging") == []  # staging cleaned up
    # The snapshot chain is complete and holds the rootfs; GC keeps it (the image reaches it).
    gc.collect(stores.db, stores.content, {"overlayfs": stores.snapshotter})
    stores.snapshotter.view(NS, "look", top_chain(stores, BUSYBOX))
    mount_all(stores.snapshotter.mounts(NS, "look"), mnt)
    assert os.path.isfile(os.path.join(mnt, "bin", "busybox"))


def test_load_twice_is_the_same_image(stores, docker_archive, tmp_path):
    first = load_file(stores, docker_archive, None, tmp_path)
    second = load_file(stores, docker_archive, None, tmp_path)
    assert first[0].target == second[0].target
    assert [i.name for i in stores.images.list(NS)] == [BUSYBOX]


def test_save_then_load_elsewhere_keeps_the_digests(stores, other, docker_archive, tmp_path):
    load_file(stores, docker_archive, None, tmp_path)
    archive_path = tmp_path / "saved.tar"
    with open(archive_path, "wb") as out:
        archive.save(stores, NS, ["busybox"], out)  # found by its normalized name
    made = load_file(other, archive_path, None, tmp_path)
    assert [i.name for i in made] == [BUSYBOX]
    assert made[0].target == stores.images.get(NS, BUSYBOX).target
    assert top_chain(other, BUSYBOX) == top_chain(stores, BUSYBOX)
    # An independent reader agrees about what is in it.
    out = subprocess.run(["skopeo", "inspect", "--raw", f"docker-archive:{archive_path}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["config"]["digest"] == json.loads(
        stores.content.reader_at(NS, made[0].target.digest).read_at(0, made[0].target.size))["config"]["digest"]


def test_save_two_names_of_one_image_writes_it_once(stores, docker_archive, tmp_path):
    load_file(stores, docker_archive, None, tmp_path)
    image = stores.images.get(NS, BUSYBOX)
    stores.images.create(NS, type(image)("docker.io/library/other:1", image.target))
    buf = io.BytesIO()
    archive.save(stores, NS, [BUSYBOX, "other:1"], buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert len(manifest) == 1
    assert sorted(manifest[0]["RepoTags"]) == ["busybox:latest", "other:1"]


def test_save_unknown_image_is_not_found(stores):
    with pytest.raises(NotFound):
        archive.save(stores, NS, ["nothere:1"], io.BytesIO())


@pytest.mark.parametrize("data", [b"", b"not a tar at all" * 100, gzip.compress(b"junk" * 100)],
                         ids=["empty", "junk", "gzipped-junk"])
def test_load_garbage_is_refused_and_leaves_nothing(stores, tmp_path, data):
    with pytest.raises(InvalidArgument):
        archive.load(stores, NS, io.BytesIO(data), staging=str(tmp_path / "staging"))
    assert os.listdir(tmp_path / "staging") == []
    assert_nothing_left(stores)


def test_load_gzipped_archive(stores, docker_archive, tmp_path):
    packed = tmp_path / "busybox.tar.gz"
    packed.write_bytes(gzip.compress(open(docker_archive, "rb").read()))
    assert [i.name for i in load_file(stores, packed, None, tmp_path)] == [BUSYBOX]


def rootfs_tar(tmp_path) -> bytes:
    rootfs = busybox.build_rootfs(tmp_path / "rootfs")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name)
    return buf.getvalue()


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_import_rootfs_makes_a_one_layer_image(stores, tmp_path, mnt, packed):
    data = rootfs_tar(tmp_path)
    stream = io.BytesIO(gzip.compress(data) if packed else data)
    image = archive.import_rootfs(stores, NS, stream, "imported/fs:1")
    assert image.name == "docker.io/imported/fs:1"
    assert image.target.media_type == oci.DOCKER_MANIFEST
    desc, manifest, config = archive.resolve(stores, NS, oci.Descriptor(image.target.media_type,
                                                                        image.target.digest, image.target.size))
    assert [layer.media_type for layer in manifest.layers] == [oci.DOCKER_LAYER_GZIP]
    assert config.diff_ids == (digests.sha256(data),)
    assert config.platform.os == "linux" and config.platform.architecture == oci.host_platform().architecture
    assert config.history[0]["comment"] == "Imported from -"
    # The layer blob is the gzip of exactly the tar we gave.
    layer = stores.content.reader_at(NS, manifest.layers[0].digest)
    assert gzip.decompress(layer.read_at(0, layer.size)) == data
    assert stores.leases.list(NS) == [] and stores.content.list_statuses(NS) == []
    gc.collect(stores.db, stores.content, {"overlayfs": stores.snapshotter})
    stores.snapshotter.view(NS, "look", config.diff_ids[0])
    mount_all(stores.snapshotter.mounts(NS, "look"), mnt)
    assert os.path.isfile(os.path.join(mnt, "bin", "busybox"))


def test_import_garbage_is_refused_and_leaves_nothing(stores):
    with pytest.raises(InvalidArgument):
        archive.import_rootfs(stores, NS, io.BytesIO(b"\x01" * 5000), "junk:1")
    assert_nothing_left(stores)


def test_import_needs_a_valid_name(stores):
    with pytest.raises(InvalidArgument):
        archive.import_rootfs(stores, NS, io.BytesIO(rootfs_tar_small()), "Bad Name")
    assert stores.images.list(NS) == []


def rootfs_tar_small() -> bytes:
    return tar_layer([("etc", "dir", b""), ("etc/hostname", "file", b"x\n")])


def export(stores, key, tmp_path) -> dict[str, tarfile.TarInfo]:
    buf = io.BytesIO()
    archive.export_snapshot(stores, NS, key, buf, staging=str(tmp_path / "staging"))
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        return {m.name.lstrip("./").rstrip("/"): m for m in tar.getmembers()}


def test_export_committed_and_active_snapshots(stores, tmp_path):
    base = tar_layer([("etc", "dir", b""), ("etc/keep", "file", b"k"), ("etc/gone", "file", b"g"),
                      ("bin", "dir", b""), ("bin/tool", "file", b"#!/bin/sh\n", 0o755)])
    image = archive.import_rootfs(stores, NS, io.BytesIO(base), "exp:1")
    chain = top_chain(stores, image.name)
    committed = export(stores, chain, tmp_path)
    assert {"etc/keep", "etc/gone", "bin/tool"} <= set(committed)
    assert committed["bin/tool"].mode & 0o777 == 0o755
    # A container's snapshot: a file added, one deleted (an overlay whiteout in its upper dir).
    mounts = stores.snapshotter.prepare(NS, "ctr-1", chain)
    upper = next(o[len("upperdir="):] for o in mounts[0].options if o.startswith("upperdir="))
    os.makedirs(os.path.join(upper, "etc"))
    with open(os.path.join(upper, "etc", "new"), "w") as f:
        f.write("n")
    os.mknod(os.path.join(upper, "etc", "gone"), stat.S_IFCHR | 0o000, os.makedev(0, 0))
    active = export(stores, "ctr-1", tmp_path)
    assert {"etc/keep", "etc/new", "bin/tool"} <= set(active)
    assert "etc/gone" not in active
    assert not any(name.startswith(".wh.") or "/.wh." in name for name in active)
    # Nothing stays mounted or viewed.
    assert [s.name for s in stores.snapshotter.list(NS) if s.name.startswith("export-")] == []
    stores.snapshotter.remove(NS, "ctr-1")


def test_export_unknown_snapshot_is_not_found(stores, tmp_path):
    with pytest.raises(NotFound):
        export(stores, "nope", tmp_path)
