"""A full disk during an ingest: a clear error, and the store stays consistent (the ingest's
bytes, offset and digest agree; it can be resumed or aborted; no partial blob appears)."""

import hashlib
import os

import pytest

from dockyard.containerd.content import LocalContentStore
from dockyard.errors import NoSpace
from dockyard.linux.mount import MNT_DETACH, mount, umount

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts)")

pytestmark = [pytest.mark.root, needs_root]


@pytest.fixture
def small_disk(tmp_path):
    path = str(tmp_path / "small")
    os.mkdir(path)
    mount("tmpfs", path, "tmpfs", 0, "size=1m")
    yield path
    umount(path, MNT_DETACH)


def test_enospc_during_ingest(small_disk, db):
    store = LocalContentStore(os.path.join(small_disk, "content"), db)
    w = store.writer("moby", "big")
    chunk = b"x" * 65536
    with pytest.raises(NoSpace, match="no space left on device"):
        for _ in range(64):  # 4 MiB into 1 MiB
            w.write(chunk)
    offset = w.status().offset
    assert 0 < offset < 1 << 20 and offset % len(chunk) == 0
    w.close()

    # The ingest is consistent and resumable: bytes on disk match offset and digest.
    assert store.status("moby", "big").offset == offset
    w = store.writer("moby", "big")
    assert w.digest() == "sha256:" + hashlib.sha256(chunk * (offset // len(chunk))).hexdigest()
    w.close()
    assert os.listdir(os.path.join(small_disk, "content", "blobs", "sha256")) == []

    # Starting another ingest while the disk is full fails cleanly, leaving nothing behind.
    with open(os.path.join(small_disk, "filler"), "wb", buffering=0) as f:  # the last free pages
        with pytest.raises(OSError):
            while True:
                f.write(b"f" * 4096)
    with pytest.raises(NoSpace, match="no space left on device"):
        store.writer("moby", "another")
    assert [s.ref for s in store.list_statuses("moby")] == ["big"]
    assert len(os.listdir(os.path.join(small_disk, "content", "ingest"))) == 1

    # Aborting frees the space; the store works again.
    store.abort("moby", "big")
    w = store.writer("moby", "small")
    w.write(b"small")
    w.commit(5, "sha256:" + hashlib.sha256(b"small").hexdigest())
    assert store.info("moby", "sha256:" + hashlib.sha256(b"small").hexdigest()).size == 5
