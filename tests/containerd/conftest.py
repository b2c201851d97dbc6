"""Fixtures for the containerd storage core. Each contract suite is parameterized over the
implementations of its Protocol listed here; the gRPC clients join these tables when the gRPC
layer exists, and then run the very same tests."""

import contextlib
import os

import pytest

from dockyard.containerd.content import LocalContentStore
from dockyard.containerd.metadata import MetadataDB
from dockyard.containerd.snapshots import OverlaySnapshotter, unmount_all
from tests.containerd import remote
from tests.fixtures.host import mounts_under


@pytest.fixture
def root(tmp_path) -> str:
    return str(tmp_path / "containerd")


@pytest.fixture
def db(root):
    meta = MetadataDB(root)
    yield meta
    meta.close()


@contextlib.contextmanager
def _just(obj):
    yield obj


# name → factory(root, db); one entry per implementation of each Protocol. A factory returns
# the implementation, or a context manager around it when it has something to tear down.
NAMESPACES = {"local": lambda root, db: db.namespaces, "grpc": remote.namespaces}
CONTAINERS = {"local": lambda root, db: db.containers}
IMAGES = {"local": lambda root, db: db.images}
LEASES = {"local": lambda root, db: db.leases}
CONTENT_STORES = {"local": lambda root, db: LocalContentStore(os.path.join(root, "content"), db)}
SNAPSHOTTERS = {"overlayfs": lambda root, db: OverlaySnapshotter(os.path.join(root, "snapshots"))}


@pytest.fixture(params=sorted(NAMESPACES))
def namespaces(request, root, db):
    made = NAMESPACES[request.param](root, db)
    with made if isinstance(made, contextlib.AbstractContextManager) else _just(made) as impl:
        yield impl


@pytest.fixture(params=sorted(CONTAINERS))
def containers(request, root, db):
    return CONTAINERS[request.param](root, db)


@pytest.fixture(params=sorted(IMAGES))
def images(request, root, db):
    return IMAGES[request.param](root, db)


@pytest.fixture(params=sorted(LEASES))
def leases(request, root, db):
    return LEASES[request.param](root, db)


@pytest.fixture(params=sorted(CONTENT_STORES))
def content(request, root, db):
    return CONTENT_STORES[request.param](root, db)


@pytest.fixture(params=sorted(SNAPSHOTTERS))
def snapshotter(request, root, db):
    s = SNAPSHOTTERS[request.param](root, db)
    yield s
    s.close()


@pytest.fixture
def mnt(tmp_path):
    """A mount point that is always unmounted again, whatever the test did."""
    target = str(tmp_path / "mnt")
    os.mkdir(target)
    yield target
    unmount_all(target)
    assert mounts_under(str(tmp_path)) == []
