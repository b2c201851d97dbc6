"""Hostile layers (root): whatever a layer tries, nothing outside the target root changes.

Each case is a tar plus what we expect: refused (InvalidArgument) or contained (applied, and
the named paths exist inside the root). Either way the tree beside the root — a canary directory
the layers aim at, with a file, a subdirectory and an xattr — must be byte-for-byte, mode-for-mode
untouched. Modelled on moby's pkg/archive breakout tests, extended to whiteouts, hardlinks to
symlinks, directories swapped for symlinks mid-layer, and header abuse."""

import io
import os
import stat
import tarfile

import pytest

from dockyard.errors import InvalidArgument
from dockyard.images.apply import apply_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, xattrs)")

OUT = "@OUT@"   # replaced by the absolute path of the canary directory


def m(name, kind="file", data=b"", link="", pax=None, major=0, minor=0):
    return (name, kind, data, link, pax, major, minor)


def build(members, out_dir: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, link, pax, major, minor in members:
            info = tarfile.TarInfo(name.replace(OUT, out_dir))
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                         "symlink": tarfile.SYMTYPE, "link": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}[kind]
            info.linkname = link.replace(OUT, out_dir)
            info.mode = 0o755 if kind == "dir" else 0o666
            info.size = len(data)
            info.devmajor, info.devminor = major, minor
            if pax:
                info.pax_headers = {k: v.replace(OUT, out_dir) for k, v in pax.items()}
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


def raw_header(name: bytes, typeflag: bytes, size: int) -> bytes:
    """A header tarfile would not write: sizes beyond what follows, odd types."""
    block = bytearray(512)
    block[0:len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:124] = b"0000000\0" * 2
    block[124:136] = b"%011o\0" % size if size < 8**11 else b"\x80" + size.to_bytes(11, "big")
    block[136:148] = b"00000000000\0"
    block[156:157] = typeflag
    block[257:265] = b"ustar\x0000"
    _checksum(block)
    return bytes(block)


def huge_pax(_out):
    return raw_header(b"PaxHeaders/x", b"x", 2 << 30) + bytes(4096)


def many_pax(_out):
    record = b"1024 SCHILY.xattr.user.k%04d=" + b"v" * 990 + b"\n"
    blob = b""
    for i in range(1100):
        rec = record % i
        rec = b"%d" % len(rec) + rec[4:] if len(rec) != 1024 else rec
        blob += raw_header(b"PaxHeaders/x", b"x", len(rec)) + rec + bytes(-len(rec) % 512)
    return blob + raw_header(b"x", b"0", 0) + bytes(1024)


def huge_longname(_out):
    return raw_header(b"././@LongLink", b"L", 100 << 20) + bytes(4096)


CASES = {
    # name: (members or a raw builder, "refused" | paths that must exist in the root; "!path"
    # must be whited out: a 0:0 char device with overlay whiteouts, absent with delete)
    "dotdot": ([m("../escaped", data=b"x")], "refused"),
    "dotdot-nested": ([m("a/../../escaped", data=b"x")], "refused"),
    "dotdot-to-canary": ([m("../canary/file", data=b"pwned")], "refused"),
    "dotdot-cleaned-inside": ([m("a/../b", data=b"x")], ["b"]),
    "absolute-name": ([m(OUT + "/file", data=b"pwned")], [OUT.lstrip("/") + "/file"]),
    "absolute-dir-then-file": ([m("/etc/", "dir"), m("/etc/passwd", data=b"x")], ["etc/passwd"]),
    "symlink-abs-then-write-through": (
        [m("a", "symlink", link=OUT), m("a/file", data=b"pwned")], "refused"),
    "symlink-root-then-write-through": (
        [m("a", "symlink", link="/"), m("a/etc/passwd", data=b"x")], ["etc/passwd"]),
    "symlink-dotdot-then-write-through": (
        [m("a", "symlink", link="../../../../../../.." + OUT), m("a/file", data=b"pwned")],
        "refused"),
    "symlink-dotdot-to-root": (
        [m("a", "symlink", link="../../../../.."), m("a/x", data=b"x")], ["x"]),
    "symlink-abs-resolves-inside-root": (
        [m(OUT + "/", "dir"), m("a", "symlink", link=OUT), m("a/file", data=b"x")],
        [OUT.lstrip("/") + "/file"]),
    "symlink-chain": (
        [m("a", "symlink", link="b"), m("b", "symlink", link="c"), m("c", "symlink", link=OUT),
         m("a/file", data=b"pwned")], "refused"),
    "symlink-chain-inside": (
        [m("a", "symlink", link="b"), m("b", "symlink", link="/real"), m("real/", "dir"),
         m("a/x", data=b"x")], ["real/x"]),
    "symlink-loop": ([m("a", "symlink", link="a"), m("a/x", data=b"x")], "refused"),
    "file-replaces-symlink-to-outside": (
        [m("a", "symlink", link=OUT + "/file"), m("a", data=b"pwned")], ["a"]),
    "dir-replaces-symlink-to-outside": (
        [m("a", "symlink", link=OUT), m("a/", "dir"), m("a/file", data=b"x")], ["a/file"]),
    "device-replaces-symlink-to-outside": (
        [m("a", "symlink", link=OUT + "/file"), m("a", "chr", major=1, minor=3)], ["a"]),
    "dir-swapped-for-symlink-mid-layer": (
        [m("d/", "dir"), m("d/x", data=b"x"), m("d", "symlink", link=OUT),
         m("d/file", data=b"pwned")], "refused"),
    "dir-swapped-for-symlink-dotdot": (
        [m("d/", "dir"), m("d/x", data=b"x"), m("d", "symlink", link="../.." + OUT),
         m("d/sub/", "dir")], "refused"),
    "file-replaces-dir-holding-symlink-out": (
        [m("d/", "dir"), m("d/s", "symlink", link=OUT), m("d", data=b"file now")], ["d"]),
    "hardlink-dotdot": ([m("h", "link", link="../canary/file")], "refused"),
    "hardlink-absolute": ([m("h", "link", link=OUT + "/file")], "refused"),
    "hardlink-through-symlink-dir": (
        [m("s", "symlink", link=OUT), m("h", "link", link="s/file")], "refused"),
    "hardlink-to-symlink-outside": (
        [m("s", "symlink", link=OUT + "/file"), m("h", "link", link="s"),
         m("h", data=b"pwned")], ["h", "s"]),
    "hardlink-to-symlink-then-write-through": (
        [m("s", "symlink", link=OUT), m("h", "link", link="s"), m("h/file", data=b"pwned")],
        "refused"),
    "hardlink-then-rewrite": (
        [m("f", data=b"one"), m("h", "link", link="f"), m("h", data=b"two")], ["f", "h"]),
    "whiteout-dot": ([m(".wh..")], "refused"),
    "whiteout-dotdot": ([m(".wh...")], "refused"),
    "whiteout-dotdot-in-dir": ([m("a/.wh...")], "refused"),
    "whiteout-parent-dotdot": ([m("../.wh.canary")], "refused"),
    "whiteout-absolute": ([m(OUT + "/.wh.file")], ["!" + OUT.lstrip("/") + "/file"]),
    "whiteout-through-symlink-inside": (
        [m("real/", "dir"), m("real/f", data=b"x"), m("a", "symlink", link="/real"),
         m("a/.wh.f")], ["!real/f", "a"]),
    "whiteout-through-symlink": ([m("a", "symlink", link=OUT), m("a/.wh.file")], "refused"),
    "whiteout-of-symlink-to-outside": (
        [m("a", "symlink", link=OUT), m(".wh.a")], ["!a"]),
    "opaque-through-symlink": (
        [m("a", "symlink", link=OUT), m("a/.wh..wh..opq")], "refused"),
    "whiteout-dir-named-like-meta": ([m(".wh.../x", data=b"x")], [".wh.../x"]),
    "device-nodes": (
        [m("dev/", "dir"), m("dev/null", "chr", major=1, minor=3),
         m("dev/sda", "blk", major=8, minor=0), m(OUT + "/dev", "chr", major=1, minor=3)],
        ["dev/null", "dev/sda", OUT.lstrip("/") + "/dev"]),
    "nul-in-pax-path": ([m("x", data=b"x", pax={"path": "a\x00/../../escaped"})], "refused"),
    "nul-in-pax-linkpath": (
        [m("s", "symlink", link="x", pax={"linkpath": OUT + "\x00"})], "refused"),
    "name-too-long": ([m("a/" * 2100 + "x", data=b"x")], "refused"),
    "pax-path-dotdot": ([m("innocent", data=b"x", pax={"path": "../escaped"})], "refused"),
    "overlay-xattr-injection": (
        [m("d/", "dir", pax={"SCHILY.xattr.trusted.overlay.redirect": OUT,
                             "SCHILY.xattr.trusted.overlay.opaque": "y"})], ["d"]),
    "huge-pax-header": (huge_pax, "refused"),
    "too-many-pax-headers": (many_pax, "refused"),
    "huge-gnu-longname": (huge_longname, "refused"),
}


def snapshot(top: str) -> dict:
    """Everything observable about a tree: types, modes, owners, times, contents, xattrs."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            entry = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink,
                     tuple(sorted(os.listxattr(path, follow_symlinks=False))))
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entry += (f.read(),)
            elif stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(path),)
            state[os.path.relpath(path, top)] = entry
    return state


@pytest.fixture
def world(tmp_path):
    """tmp/root (the target) beside tmp/canary (what a layer must not reach)."""
    root = tmp_path / "root"
    canary = tmp_path / "canary"
    root.mkdir()
    (canary / "sub").mkdir(parents=True)
    (canary / "file").write_bytes(b"untouched")
    (canary / "sub" / "inner").write_bytes(b"untouched too")
    os.setxattr(canary, "user.canary", b"1")
    os.utime(canary, ns=(10**18, 10**18))
    return tmp_path, root, canary


@pytest.mark.parametrize("whiteouts", ["overlay", "delete"])
@pytest.mark.parametrize("case", list(CASES))
def test_layer_cannot_escape_root(world, case, whiteouts):
    tmp, root, canary = world
    spec, expect = CASES[case]
    blob = spec(str(canary)) if callable(spec) else build(spec, str(canary))
    before = snapshot(str(tmp))
    outside_before = {k: v for k, v in before.items() if not k.startswith("root")}
    if expect == "refused":
        with pytest.raises(InvalidArgument):
            apply_layer(io.BytesIO(blob), str(root), whiteouts=whiteouts)
    else:
        apply_layer(io.BytesIO(blob), str(root), whiteouts=whiteouts)
        for path in expect:
            whited = path.startswith("!")
            path = root / path.lstrip("!").replace(OUT.lstrip("/"), str(canary).lstrip("/"))
            if not whited:
                assert os.path.lexists(path), path
            elif whiteouts == "delete":
                assert not os.path.lexists(path), path
            else:
                st = os.lstat(path)
                assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, path
    after = snapshot(str(tmp))
    assert {k: v for k, v in after.items() if not k.startswith("root")} == outside_before


def test_symlink_write_through_lands_inside_root(world):
    """Docker's (chroot) semantics: `a -> /` then `a/etc/passwd` writes <root>/etc/passwd."""
    tmp, root, canary = world
    blob = build([m("a", "symlink", link="/"), m("a/etc/passwd", data=b"inside")], str(canary))
    apply_layer(io.BytesIO(blob), str(root))
    assert (root / "etc/passwd").read_bytes() == b"inside"
    assert os.readlink(root / "a") == "/"


def test_hardlink_to_symlink_links_the_symlink_itself(world):
    tmp, root, canary = world
    blob = build([m("s", "symlink", link=str(canary / "file")), m("h", "link", link="s")],
                 str(canary))
    apply_layer(io.BytesIO(blob), str(root))
    assert os.path.islink(root / "h")
    assert os.lstat(root / "h").st_ino == os.lstat(root / "s").st_ino
    assert (canary / "file").stat().st_nlink == 1
