"""Contract of the Snapshotter Protocol, after containerd's core/snapshots/testsuite, run for
real on this machine: overlay mounts, whiteouts, views, parent chains, usage, cleanup."""

import os
import stat

import pytest

from dockyard.containerd.snapshots import Kind, Mount, OverlaySnapshotter, mount_all, unmount_all
from dockyard.errors import Conflict, InvalidArgument, NotFound, SystemFailure
from tests.fixtures.host import mounts_under

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts)")



def write_layer(snapshotter, mnt, key, files=(), delete=()):
    mount_all(snapshotter.mounts("moby", key), mnt)
    try:
        for name, text in dict(files).items():
            with open(os.path.join(mnt, name), "w") as f:
                f.write(text)
        for name in delete:
            os.unlink(os.path.join(mnt, name))
    finally:
        unmount_all(mnt)


def read_tree(snapshotter, mnt, key):
    mount_all(snapshotter.mounts("moby", key), mnt)
    try:
        return {n: open(os.path.join(mnt, n)).read() for n in sorted(os.listdir(mnt))}
    finally:
        unmount_all(mnt)


def test_prepare_commit_stat_list(snapshotter):
    mounts = snapshotter.prepare("moby", "extract-1", labels={"a": "1"})
    assert [(m.type, m.options) for m in mounts] == [("bind", ["rw", "rbind"])]
    info = snapshotter.stat("moby", "extract-1")
    assert (info.name, info.kind, info.parent, info.labels) == ("extract-1", Kind.ACTIVE, "", {"a": "1"})
    snapshotter.commit("moby", "layer-1", "extract-1", labels={"c": "1"})
    with pytest.raises(NotFound):
        snapshotter.stat("moby", "extract-1")
    info = snapshotter.stat("moby", "layer-1")
    assert (info.kind, info.labels) == (Kind.COMMITTED, {"c": "1"})
    snapshotter.prepare("moby", "ctr", "layer-1")
    snapshotter.view("moby", "look", "layer-1")
    assert [(i.name, i.kind, i.parent) for i in snapshotter.list("moby")] == [
        ("layer-1", Kind.COMMITTED, ""), ("ctr", Kind.ACTIVE, "layer-1"), ("look", Kind.VIEW, "layer-1")]
    assert [i.name for i in snapshotter.list("moby", "kind==Active")] == ["ctr"]
    assert [i.name for i in snapshotter.list("moby", "parent==layer-1,kind==View")] == ["look"]
    assert snapshotter.list("k8s.io") == []


def test_mount_shapes(snapshotter):
    snapshotter.prepare("moby", "a")
    assert snapshotter.view("moby", "v0")[0].options == ["ro", "rbind"]
    snapshotter.commit("moby", "L1", "a")
    snapshotter.prepare("moby", "b", "L1")
    snapshotter.commit("moby", "L2", "b")
    # A view of a single layer is a read-only bind of that layer; of two or more, an overlay.
    (v1,) = snapshotter.view("moby", "v1", "L1")
    assert (v1.type, v1.options) == ("bind", ["ro", "rbind"])
    (v2,) = snapshotter.view("moby", "v2", "L2")
    assert v2.type == "overlay" and not any(o.startswith(("upperdir=", "workdir=")) for o in v2.options)
    (active,) = snapshotter.prepare("moby", "c", "L2")
    assert active.type == "overlay"
    opts = dict(o.split("=", 1) for o in active.options)
    assert {"lowerdir", "upperdir", "workdir"} <= set(opts)
    assert len(opts["lowerdir"].split(":")) == 2
    assert snapshotter.mounts("moby", "c") == [active]
    if isinstance(snapshotter, OverlaySnapshotter):
        l1, l2 = (snapshotter._dir(i, "fs") for i in (1, 3))
        assert v1.source == l1
        assert opts["lowerdir"] == f"{l2}:{l1}"  # nearest parent first
        assert opts["upperdir"].endswith("/fs") and opts["workdir"].endswith("/work")


def test_errors(snapshotter):
    snapshotter.prepare("moby", "a")
    with pytest.raises(Conflict):
        snapshotter.prepare("moby", "a")
    with pytest.raises(NotFound):
        snapshotter.prepare("moby", "b", "missing")
    with pytest.raises(Conflict, match="not committed"):
        snapshotter.prepare("moby", "b", "a")
    snapshotter.view("moby", "v")
    with pytest.raises(Conflict, match="not active"):
        snapshotter.commit("moby", "x", "v")
    snapshotter.commit("moby", "L", "a")
    with pytest.raises(Conflict, match="committed"):
        snapshotter.mounts("moby", "L")
    snapshotter.prepare("moby", "a2")
    with pytest.raises(Conflict, match="already exists"):
        snapshotter.commit("moby", "L", "a2")
    with pytest.raises(NotFound):
        snapshotter.commit("moby", "y", "missing")
    with pytest.raises(NotFound):
        snapshotter.remove("moby", "missing")
    with pytest.raises(NotFound):
        snapshotter.stat("k8s.io", "L")  # namespaced
    for bad in ("", "a\nb"):
        with pytest.raises(InvalidArgument):
            snapshotter.prepare("moby", bad)
    with pytest.raises(InvalidArgument):
        snapshotter.prepare("version", "k")


def test_remove_refuses_parent_with_children(snapshotter):
    snapshotter.prepare("moby", "a")
    snapshotter.commit("moby", "L", "a")
    snapshotter.prepare("moby", "child", "L")
    with pytest.raises(Conflict, match="children"):
        snapshotter.remove("moby", "L")
    snapshotter.remove("moby", "child")
    snapshotter.remove("moby", "L")
    assert snapshotter.list("moby") == []
    if isinstance(snapshotter, OverlaySnapshotter):
        assert sorted(os.listdir(snapshotter.root)) == ["metadata.db", "metadata.db-shm", "metadata.db-wal"]


def test_update_labels(snapshotter):
    snapshotter.prepare("moby", "a", labels={"x": "1"})
    assert snapshotter.update("moby", "a", {"y": "2"}, ["labels.y"]).labels == {"x": "1", "y": "2"}
    assert snapshotter.update("moby", "a", {"z": "3"}).labels == {"z": "3"}
    with pytest.raises(InvalidArgument):
        snapshotter.update("moby", "a", {}, ["parent"])


def test_cleanup_removes_orphans(snapshotter):
    if not isinstance(snapshotter, OverlaySnapshotter):
        pytest.skip("on-disk layout of the overlay snapshotter")
    snapshotter.prepare("moby", "keep")
    for orphan in ("999", "new-5-123"):
        os.makedirs(os.path.join(snapshotter.root, orphan, "fs", "deep"))
    snapshotter.cleanup()
    assert sorted(os.listdir(snapshotter.root)) == ["1", "metadata.db", "metadata.db-shm", "metadata.db-wal"]
    assert snapshotter.stat("moby", "keep").kind is Kind.ACTIVE


@pytest.mark.root
@needs_root
def test_layers_through_real_overlay_mounts(snapshotter, mnt):
    snapshotter.prepare("moby", "extract-1")
    write_layer(snapshotter, mnt, "extract-1", {"a": "A", "b": "B"})
    snapshotter.commit("moby", "L1", "extract-1")

    snapshotter.prepare("moby", "extract-2", "L1")
    mount_all(snapshotter.mounts("moby", "extract-2"), mnt)
    try:
        assert sorted(os.listdir(mnt)) == ["a", "b"]  # the base, through the overlay
        os.unlink(os.path.join(mnt, "b"))               # a whiteout in the upper layer
        with open(os.path.join(mnt, "c"), "w") as f:
            f.write("C")
    finally:
        unmount_all(mnt)
    if isinstance(snapshotter, OverlaySnapshotter):
        whiteout = os.lstat(os.path.join(snapshotter._dir(2, "fs"), "b"))
        assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    snapshotter.commit("moby", "L2", "extract-2")

    snapshotter.view("moby", "look", "L2")
    assert read_tree(snapshotter, mnt, "look") == {"a": "A", "c": "C"}
    mount_all(snapshotter.mounts("moby", "look"), mnt)
    try:
        with pytest.raises(OSError):
            open(os.path.join(mnt, "new"), "w")  # a view is read-only
    finally:
        unmount_all(mnt)
    snapshotter.view("moby", "base", "L1")
    assert read_tree(snapshotter, mnt, "base") == {"a": "A", "b": "B"}  # the lower layer untouched
    assert mounts_under(mnt) == []


@pytest.mark.root
@needs_root
def test_deep_chain_nearest_layer_wins(snapshotter, mnt):
    parent = ""
    for i in range(6):
        snapshotter.prepare("moby", f"x{i}", parent)
        write_layer(snapshotter, mnt, f"x{i}", {"f": str(i), f"only{i}": "."})
        snapshotter.commit("moby", f"L{i}", f"x{i}")
        parent = f"L{i}"
    snapshotter.prepare("moby", "ctr", parent)
    tree = read_tree(snapshotter, mnt, "ctr")
    assert tree["f"] == "5" and {f"only{i}" for i in range(6)} <= set(tree)


@pytest.mark.root
@needs_root
def test_usage(snapshotter, mnt):
    snapshotter.prepare("moby", "a")
    empty = snapshotter.usage("moby", "a")
    assert empty.inodes == 1
    write_layer(snapshotter, mnt, "a", {"big": "x" * (1 << 20), "small": "s"})
    active = snapshotter.usage("moby", "a")
    assert active.inodes == 3 and active.size >= (1 << 20) + empty.size
    snapshotter.commit("moby", "L", "a")
    assert snapshotter.usage("moby", "L") == active  # walked on first ask, then kept
    snapshotter.view("moby", "v", "L")
    assert snapshotter.usage("moby", "v").size == 0


@pytest.mark.root
@needs_root
def test_mount_failure_leaves_nothing_mounted(mnt, tmp_path):
    with pytest.raises(SystemFailure):
        mount_all([Mount("bind", str(tmp_path / "missing"), ["rw", "rbind"])], mnt)
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(SystemFailure):
        mount_all([Mount("bind", str(src), ["rbind"]), Mount("overlay", "overlay", ["lowerdir=/nonexistent"])], mnt)
    assert mounts_under(mnt) == []


@pytest.mark.root
@needs_root
def test_cleanup_never_empties_a_mount(snapshotter, tmp_path):
    if not isinstance(snapshotter, OverlaySnapshotter):
        pytest.skip("on-disk layout of the overlay snapshotter")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "file").write_text("keep me")
    orphan = os.path.join(snapshotter.root, "4242", "fs")
    os.makedirs(orphan)
    mount_all([Mount("bind", str(precious), ["rw", "rbind"])], orphan)
    try:
        snapshotter.cleanup()
        assert (precious / "file").read_text() == "keep me"
    finally:
        unmount_all(orphan)
    snapshotter.cleanup()
    assert not os.path.exists(os.path.join(snapshotter.root, "4242"))
