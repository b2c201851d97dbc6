"""write_diff / write_tree (root): an overlay upperdir made by the kernel becomes a layer with
spec whiteouts; the output is a valid, deterministic tar; write_diff → apply_layer reproduces
the same merged view over the same lowers."""

import hashlib
import io
import os
import stat
import subprocess
import tarfile

import pytest

from dockyard.images.apply import apply_layer
from dockyard.images.diff import write_diff, write_tree
from dockyard.linux.mount import mount, umount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, mknod)")


def tree(top) -> dict:
    """What a container would see: type, mode, owner, mtime (seconds), content/target, xattrs
    (overlay's own excluded)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            xattrs = {k: os.getxattr(path, k, follow_symlinks=False)
                      for k in os.listxattr(path, follow_symlinks=False)
                      if not k.startswith("trusted.overlay.")}
            entry = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     xattrs]
            if not stat.S_ISDIR(st.st_mode):
                entry.append(st.st_mtime_ns // 10**9)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entry.append(f.read())
            elif stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(path))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry.append(st.st_rdev)
            state[os.path.relpath(path, top)] = tuple(map(repr, entry))
    return state


class Overlay:
    def __init__(self, base, name):
        self.upper = base / f"{name}-upper"
        self.work = base / f"{name}-work"
        self.merged = base / f"{name}-merged"
        for d in (self.upper, self.work, self.merged):
            d.mkdir()

    def __call__(self, lower):
        mount("overlay", str(self.merged), "overlay", 0,
              f"lowerdir={lower},upperdir={self.upper},workdir={self.work}")
        return self

    def __enter__(self):
        return self.merged

    def __exit__(self, *exc):
        umount(str(self.merged))


@pytest.fixture
def lower(tmp_path):
    low = tmp_path / "lower"
    (low / "etc").mkdir(parents=True)
    (low / "etc/passwd").write_text("root:x:0:0\n")
    (low / "etc/shadow").write_text("secret\n")
    (low / "var/cache/apt").mkdir(parents=True)
    (low / "var/cache/apt/pkg1").write_text("1")
    (low / "var/cache/apt/pkg2").write_text("2")
    (low / "bin").mkdir()
    (low / "bin/sh").write_text("sh")
    (low / "unchanged").write_text("same")
    return low


def change(merged, outside):
    """What a container does: every kind of change overlayfs records."""
    (merged / "etc/passwd").write_text("root:x:0:0\nuser:x:1000:1000\n")   # copy-up + modify
    os.unlink(merged / "etc/shadow")                                        # whiteout
    subprocess.run(["rm", "-rf", str(merged / "var/cache/apt")], check=True)
    (merged / "var/cache/apt").mkdir()                                     # opaque dir
    (merged / "var/cache/apt/fresh").write_text("new")
    subprocess.run(["rm", "-rf", str(merged / "bin")], check=True)        # whole dir whiteout
    (merged / "new/deep/er").mkdir(parents=True)
    (merged / "new/deep/er/file").write_bytes(os.urandom(70_000))
    (merged / "new/suid").write_text("s")
    os.chown(merged / "new/suid", 1000, 2000)
    os.chmod(merged / "new/suid", 0o4750)
    os.setxattr(merged / "new/suid", "user.origin", b"test")
    os.symlink(str(outside), merged / "new/out")                           # not followed
    os.link(merged / "new/suid", merged / "new/suid-link")                 # hardlink pair
    os.mkfifo(merged / "new/fifo")
    os.mknod(merged / "new/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    long_name = "n" * 200
    (merged / "new" / long_name).write_text("long")
    (merged / ("x" * 90) / ("y" * 90) / ("z" * 90)).mkdir(parents=True)  # > 256 bytes path
    (merged / ("x" * 90) / ("y" * 90) / ("z" * 90) / "f").write_text("f")
    os.utime(merged / "new/deep/er/file", (1_500_000_000, 1_500_000_000))


@pytest.fixture
def changed(tmp_path, lower):
    """An upperdir produced by the kernel from `change`, and the merged view it gave."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("do not archive")
    ov = Overlay(tmp_path, "c")
    with ov(lower) as merged:
        change(merged, outside)
        expected = tree(merged)
    return ov.upper, expected


def diff_bytes(upper, **kw) -> tuple[bytes, object]:
    out = io.BytesIO()
    result = write_diff(str(upper), out, **kw)
    return out.getvalue(), result


def test_write_diff_converts_overlay_records_to_spec_whiteouts(changed, lower):
    upper, _ = changed
    blob, result = diff_bytes(upper, lowers=[str(lower)])
    assert result.diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert result.size == len(blob)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = tar.getmembers()
    names = [mb.name for mb in members]
    by_name = {mb.name: mb for mb in members}
    assert "etc/.wh.shadow" in names and by_name["etc/.wh.shadow"].isfile()
    assert ".wh.bin" in names
    # The opaque marker comes right after its directory.
    assert names[names.index("var/cache/apt") + 1] == "var/cache/apt/.wh..wh..opq"
    assert by_name["new/suid-link"].islnk() and by_name["new/suid-link"].linkname == "new/suid"
    assert by_name["new/out"].issym() and "secret" not in " ".join(names)
    assert by_name["new/suid"].pax_headers.get("SCHILY.xattr.user.origin") == "test"
    assert (by_name["new/suid"].uid, by_name["new/suid"].gid, by_name["new/suid"].mode) == \
        (1000, 2000, 0o4750)
    assert by_name["new/deep/er/file"].mtime == 1_500_000_000
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay")
                   for mb in members for k in mb.pax_headers)
    assert all(mb.uname == "" and mb.gname == "" for mb in members)
    assert "unchanged" not in names
    # Parents before children, names sorted bytewise within a directory.
    for i, name in enumerate(names):
        parent = name.rsplit("/", 1)[0] if "/" in name else None
        if parent:
            assert parent in names[:i], name


def test_write_diff_is_deterministic_and_gnu_tar_reads_it(changed, tmp_path):
    upper, _ = changed
    first, _ = diff_bytes(upper)
    second, _ = diff_bytes(upper)
    assert first == second
    path = tmp_path / "layer.tar"
    path.write_bytes(first)
    listing = subprocess.run(["tar", "-tvf", str(path)], capture_output=True, text=True,
                             check=True).stdout
    assert "new/" + "n" * 200 in listing
    assert "x" * 90 + "/" + "y" * 90 + "/" + "z" * 90 + "/f" in listing


def test_round_trip_write_diff_then_apply_layer(changed, lower, tmp_path):
    upper, expected = changed
    blob, result = diff_bytes(upper, lowers=[str(lower)])
    ov = Overlay(tmp_path, "rt")
    applied = apply_layer(io.BytesIO(blob), str(ov.upper))
    assert applied.diff_id == result.diff_id and applied.size == result.size
    with ov(lower) as merged:
        assert tree(merged) == expected
    # And writing the applied upper again gives the very same layer, however much later the
    # whiteouts were made (their devices' times are the apply's: moved on here to be sure).
    for dirpath, _, files in os.walk(ov.upper):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # a whiteout
                os.utime(p, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    again, _ = diff_bytes(ov.upper, lowers=[str(lower)])
    assert again == blob


def test_lowers_prune_whiteouts_that_hide_nothing(tmp_path, lower):
    upper = tmp_path / "upper"
    upper.mkdir()
    os.mknod(upper / "unchanged", stat.S_IFCHR, 0)     # hides a lower file
    os.mknod(upper / "phantom", stat.S_IFCHR, 0)       # hides nothing
    (upper / "etc").mkdir()
    os.mknod(upper / "etc/ghost", stat.S_IFCHR, 0)
    names = lambda blob: tarfile.open(fileobj=io.BytesIO(blob)).getnames()  # noqa: E731
    assert set(names(diff_bytes(upper, lowers=[str(lower)])[0])) == {".wh.unchanged", "etc"}
    assert set(names(diff_bytes(upper)[0])) == {".wh.unchanged", ".wh.phantom", "etc",
                                                "etc/.wh.ghost"}


def test_write_tree_keeps_devices_and_round_trips(tmp_path, lower):
    src = tmp_path / "src"
    subprocess.run(["cp", "-a", str(lower), str(src)], check=True)
    os.mknod(src / "whiteout-looking", 0o600 | stat.S_IFCHR, 0)
    os.symlink("/etc/passwd", src / "abs-link")
    (src / ("d" * 150)).mkdir()
    (src / ("d" * 150) / ("f" * 150)).write_text("long")
    out = io.BytesIO()
    result = write_tree(str(src), out)
    blob = out.getvalue()
    assert result.diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
    names = tarfile.open(fileobj=io.BytesIO(blob)).getnames()
    assert "whiteout-looking" in names and not any(".wh." in n for n in names)
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(blob), str(dest), whiteouts="delete")
    assert tree(dest) == tree(src)
