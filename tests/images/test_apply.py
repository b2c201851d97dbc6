"""apply_layer against the real kernel (root): entry types and attributes, the DiffID, whiteouts
in both modes, and overlay semantics with a real overlay mount over the applied upperdir."""

import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from dockyard.errors import InvalidArgument
from dockyard.images import compression
from dockyard.images.apply import apply_layer
from dockyard.linux.mount import mount, umount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, overlay)")

T = 1_600_000_000


def member(name, kind="file", data=b"", *, mode=None, uid=0, gid=0, mtime=T, link="",
           major=0, minor=0, pax=None):
    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                 "link": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
                 "fifo": tarfile.FIFOTYPE}[kind]
    info.mode = (0o755 if kind == "dir" else 0o644) if mode is None else mode
    info.uid, info.gid, info.mtime, info.linkname = uid, gid, mtime, link
    info.devmajor, info.devminor = major, minor
    info.size = len(data)
    if pax:
        info.pax_headers = pax
    return info, data


def layer(*members, fmt=tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def apply(blob: bytes, root, **kw):
    return apply_layer(io.BytesIO(blob), str(root), **kw)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    return r


def test_diff_id_is_sha256_of_the_whole_stream(root):
    blob = layer(member("a", data=b"hello")) + bytes(5000)   # record padding and more zeros
    result = apply(blob, root)
    assert result.diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert result.size == len(blob)


def test_empty_stream_is_an_empty_layer(root):
    result = apply(b"", root)
    assert result.diff_id == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert os.listdir(root) == []


def test_regular_file_attributes(root):
    apply(layer(member("usr/bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=2000,
                       mtime=T + 5)), root)
    st = os.lstat(root / "usr/bin/tool")
    assert stat.S_IMODE(st.st_mode) == 0o4755          # setuid survives the chown
    assert (st.st_uid, st.st_gid) == (1000, 2000)
    assert st.st_mtime_ns == (T + 5) * 10**9
    assert (root / "usr/bin/tool").read_bytes() == b"#!/bin/sh\n"
    for parent in ("usr", "usr/bin"):                  # not in the tar: 0755 root:root
        pst = os.lstat(root / parent)
        assert stat.S_ISDIR(pst.st_mode) and stat.S_IMODE(pst.st_mode) == 0o755
        assert (pst.st_uid, pst.st_gid) == (0, 0)


def test_large_file_spanning_reads(root):
    data = os.urandom(3 << 20)
    apply(layer(member("big", data=data), member("after", data=b"x")), root)
    assert (root / "big").read_bytes() == data
    assert (root / "after").read_bytes() == b"x"


def test_directory_mode_owner_and_mtime_kept_after_children(root):
    apply(layer(member("tmp/", "dir", mode=0o1777, uid=5, gid=6, mtime=T),
                member("tmp/x", data=b"1", mtime=T + 100)), root)
    st = os.lstat(root / "tmp")
    assert stat.S_IMODE(st.st_mode) == 0o1777
    assert (st.st_uid, st.st_gid) == (5, 6)
    assert st.st_mtime_ns == T * 10**9


def test_symlink_hardlink_devices_fifo(root):
    apply(layer(member("bin/busybox", data=b"BB", mode=0o755),
                member("bin/sh", "link", link="bin/busybox"),
                member("lib", "symlink", link="usr/lib", uid=7, gid=8, mtime=T + 1),
                member("dev/null", "chr", mode=0o666, major=1, minor=3),
                member("dev/loop0", "blk", mode=0o660, major=7, minor=0, gid=6),
                member("run/fifo", "fifo", mode=0o620)), root)
    assert os.lstat(root / "bin/sh").st_ino == os.lstat(root / "bin/busybox").st_ino
    lst = os.lstat(root / "lib")
    assert stat.S_ISLNK(lst.st_mode) and os.readlink(root / "lib") == "usr/lib"
    assert (lst.st_uid, lst.st_gid, lst.st_mtime_ns) == (7, 8, (T + 1) * 10**9)
    null = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(root / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0) and loop.st_gid == 6
    fifo = os.lstat(root / "run/fifo")
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o620


def test_xattrs_including_file_capabilities(root):
    # security.capability v2 for cap_net_raw+ep; set after chown, which would clear it.
    cap = bytes.fromhex("0100000200200000000000000000000000000000")
    apply(layer(member("ping", data=b"ELF", mode=0o755, uid=0, gid=0,
                       pax={"SCHILY.xattr.security.capability": cap.decode("latin-1"),
                            "SCHILY.xattr.user.note": "hello"}),
                member("d/", "dir", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                                         "SCHILY.xattr.user.d": "1"})), root)
    assert os.getxattr(root / "ping", "security.capability") == cap
    assert os.getxattr(root / "ping", "user.note") == b"hello"
    assert os.getxattr(root / "d", "user.d") == b"1"
    # Overlay metadata never comes from a layer.
    assert "trusted.overlay.redirect" not in os.listxattr(root / "d")


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_long_names_and_link_targets(root, fmt):
    deep = "/".join(["d" * 60] * 6) + "/file"
    target = "t" * 200
    apply(layer(member(deep, data=b"deep"), member("sym", "symlink", link=target),
                member("hard", "link", link=deep), fmt=fmt), root)
    assert (root / deep).read_bytes() == b"deep"
    assert os.readlink(root / "sym") == target
    assert os.lstat(root / "hard").st_ino == os.lstat(root / deep).st_ino


def test_ustar_prefix_and_non_utf8_names(root):
    name = "p" * 120 + "/" + "n" * 90
    apply(layer(member(name, data=b"u"), fmt=tarfile.USTAR_FORMAT), root)
    assert (root / name).read_bytes() == b"u"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        info = tarfile.TarInfo(os.fsdecode(b"caf\xe9"))
        tar.addfile(info)
    apply(raw.getvalue(), root)
    assert b"caf\xe9" in os.listdir(os.fsencode(root))


def test_replacements(root):
    apply(layer(member("a/", "dir"), member("a/child", data=b"c"),
                member("f", data=b"file"), member("s", "symlink", link="/etc"),
                member("keep/", "dir"), member("keep/old", data=b"o")), root)
    apply(layer(member("a", data=b"now a file"),         # dir -> file (tree removed)
                member("f/", "dir"),                     # file -> dir
                member("s/", "dir"), member("s/x", data=b"x"),   # symlink -> dir
                member("keep/", "dir", mode=0o700), member("keep/new", data=b"n")), root)
    assert (root / "a").read_bytes() == b"now a file"
    assert os.path.isdir(root / "f") and not os.path.islink(root / "s")
    assert (root / "s/x").read_bytes() == b"x"
    assert sorted(os.listdir(root / "keep")) == ["new", "old"]   # directories merge
    assert stat.S_IMODE(os.lstat(root / "keep").st_mode) == 0o700


def test_file_rewritten_is_a_new_inode(root):
    apply(layer(member("f", data=b"one"), member("h", "link", link="f"),
                member("h", data=b"two")), root)
    assert (root / "f").read_bytes() == b"one"
    assert (root / "h").read_bytes() == b"two"


def test_overlay_whiteouts(root):
    apply(layer(member("gone", data=b"x"), member("d/", "dir"), member("d/a", data=b"a")), root)
    apply(layer(member(".wh.gone"), member("d/", "dir"), member("d/.wh..wh..opq"),
                member(".wh.never-there"), member(".wh..wh.plnk/", "dir"),
                member(".wh..wh.plnk/123", data=b"aufs")), root)
    for name in ("gone", "never-there"):
        st = os.lstat(root / name)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(root / "d", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(root / ".wh..wh.plnk")
    assert not os.path.lexists(root / ".wh.gone")


def test_delete_whiteouts(root):
    apply(layer(member("gone", data=b"x"), member("tree/", "dir"), member("tree/x", data=b"1"),
                member("d/", "dir"), member("d/old", data=b"o"), member("d/sub/", "dir")), root,
          whiteouts="delete")
    apply(layer(member(".wh.gone"), member(".wh.tree"), member(".wh.absent"),
                member("d/", "dir"), member("d/new", data=b"n"), member("d/.wh..wh..opq")), root,
          whiteouts="delete")
    assert sorted(os.listdir(root)) == ["d"]
    assert os.listdir(root / "d") == ["new"]   # opaque: only what this layer put there
    assert "trusted.overlay.opaque" not in os.listxattr(root / "d")


def test_bare_whiteout_is_invalid(root):
    with pytest.raises(InvalidArgument, match=r"'\.wh\.'.*bad whiteout"):
        apply(layer(member(".wh.")), root)


def test_overlay_mount_sees_whiteouts_and_opaque_dirs(tmp_path):
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    apply(layer(member("etc/", "dir"), member("etc/passwd", data=b"root"),
                member("etc/shadow", data=b"secret"), member("var/", "dir"),
                member("var/cache/", "dir"), member("var/cache/a", data=b"a"),
                member("var/cache/b", data=b"b"), member("bin/", "dir"),
                member("bin/sh", data=b"sh")), lower)
    apply(layer(member("etc/", "dir"), member("etc/.wh.shadow"),
                member("var/", "dir"), member("var/cache/", "dir"),
                member("var/cache/.wh..wh..opq"),
                member("var/cache/c", data=b"c"), member(".wh.bin")), upper)
    mount("overlay", str(merged), "overlay", 0,
          f"lowerdir={lower},upperdir={upper},workdir={work}")
    try:
        assert sorted(os.listdir(merged)) == ["etc", "var"]
        assert os.listdir(merged / "etc") == ["passwd"]
        assert os.listdir(merged / "var/cache") == ["c"]
        assert (merged / "etc/passwd").read_bytes() == b"root"
    finally:
        umount(str(merged))


def test_gzip_layer_through_decompression(root):
    blob = layer(member("a/b", data=b"zipped"))
    result = apply_layer(compression.decompressed(io.BytesIO(gzip.compress(blob))), str(root))
    assert result.diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert (root / "a/b").read_bytes() == b"zipped"


def _sparse_member():
    info = tarfile.TarInfo("sparse")
    info.type = tarfile.GNUTYPE_SPARSE
    return info, b""


@pytest.mark.parametrize("blob,message", [
    pytest.param(b"this is not a tar archive at all" * 40, "bad tar header checksum", id="not-tar"),
    pytest.param(layer(member("a", data=b"x" * 2000))[:1200], "unexpected end",
                 id="truncated-data"),
    pytest.param(layer(member("a", data=b"x"))[:300], "unexpected end", id="truncated-header"),
    pytest.param(layer(member("h", "link", link="missing")), "does not exist", id="link-missing"),
    pytest.param(layer(member("d/", "dir"), member("h", "link", link="d")), "to a directory",
                 id="link-to-dir"),
    pytest.param(layer(member("h", "link", link="h")), "itself", id="link-to-self"),
    pytest.param(layer(member("f", data=b"x"), member("f/g", data=b"y")), "'f/g'",
                 id="parent-is-a-file"),
    pytest.param(layer(member(".", "symlink", link="/")), "root must be a directory",
                 id="root-as-symlink"),
    pytest.param(layer(_sparse_member(), fmt=tarfile.GNU_FORMAT), "sparse", id="sparse"),
])
def test_bad_layers_are_invalid_argument(root, blob, message):
    with pytest.raises(InvalidArgument, match=message):
        apply(blob, root)


def test_unknown_whiteout_mode(root):
    with pytest.raises(InvalidArgument, match="whiteout mode"):
        apply(b"", root, whiteouts="aufs")
