"""Write a layer: tar an overlay upperdir (a container's or build step's changes) or a whole
tree, as image-spec layer.md describes a changeset.

`write_diff` turns overlayfs' own records of deletion into the spec's: a 0:0 character device
becomes a `.wh.<name>` whiteout file, a directory with `trusted.overlay.opaque=y` gets a
`.wh..wh..opq` entry right after its own (layer.md "Whiteouts", "Opaque Whiteout") — the
conversion Docker's overlay2 driver makes. `write_tree` writes a tree as it is (for `export`
of a container filesystem and `import`).

The output is deterministic for a given tree: entries sorted bytewise within each directory,
parents first; POSIX pax format (ustar fields, pax records only where ustar cannot hold a value,
records sorted); numeric uid/gid with no user or group names; mtime in whole seconds (as moby
writes it); no atime/ctime; hardlinked files inside the tree as tar links to the first path.
Extended attributes go in `SCHILY.xattr.*` records, except `trusted.overlay.*` (overlay's
private bookkeeping, meaningless in another filesystem). Sockets are skipped (tar has no type).

The walk goes by directory fds with O_NOFOLLOW: a symlink in the tree is archived as a symlink
and never followed, wherever it points.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass

from dockyard.errors import DockyardError, NoSpace, NotFound, SystemFailure
from dockyard.linux.fs import RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, openat2

from .apply import (BLK, BLOCK, CHR, DIR, FIFO, LINK, OVERLAY_OPAQUE_XATTR, REG, SYMLINK,
                    WHITEOUT_OPAQUE, WHITEOUT_PREFIX)

_CHUNK = 1 << 20
_OVERLAY_XATTR_PREFIX = "trusted.overlay."
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class DiffResult:
    diff_id: str      # "sha256:…" of the bytes written
    size: int         # how many bytes were written


def write_diff(upper: str, out, *, lowers: list[str] | tuple[str, ...] = ()) -> DiffResult:
    """Write the overlay upperdir `upper` to the binary writable `out` as a layer tar.

    `lowers`, when given, are the lower directories the upper was mounted over (any order): a
    whiteout is written only for a name that exists in one of them, so a layer never carries
    deletions of things no layer below has."""
    lower_fds = []
    try:
        for lower in lowers:
            lower_fds.append(_open_root(lower))
        return _write(upper, out, whiteouts=True, lower_fds=lower_fds)
    finally:
        for fd in lower_fds:
            os.close(fd)


def write_tree(root: str, out) -> DiffResult:
    """Write the whole tree under `root` to `out` as a tar, with no whiteout conversion."""
    return _write(root, out, whiteouts=False, lower_fds=[])


def _open_root(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"directory {path} not found") from None
    except OSError as e:
        raise SystemFailure(f"cannot open {path}: {e.strerror}") from None


def _write(root: str, out, *, whiteouts: bool, lower_fds: list[int]) -> DiffResult:
    root_fd = _open_root(root)
    writer = TarWriter(out)
    try:
        Walker(writer, whiteouts, lower_fds).walk(root_fd)
        writer.finish()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace("writing layer: no space left on device") from None
        where = f" {os.fsdecode(e.filename)}" if e.filename else ""
        raise SystemFailure(f"writing layer from {root}:{where} {e.strerror}") from None
    finally:
        os.close(root_fd)
    return DiffResult("sha256:" + writer.hash.hexdigest(), writer.size)


class Walker:
    def __init__(self, writer: "TarWriter", whiteouts: bool, lower_fds: list[int]):
        self.w = writer
        self.whiteouts = whiteouts
        self.lower_fds = lower_fds
        self.seen: dict[tuple[int, int], str] = {}   # (dev, ino) of multiply-linked files

    def walk(self, root_fd: int) -> None:
        """Write the tree below `root_fd` depth first, parents before children (a stack rather
        than recursion: a container can make directories deeper than Python's stack)."""
        stack = [(root_fd, "", (), iter(_sorted(root_fd)))]
        try:
            while stack:
                dir_fd, prefix, parts, names = stack[-1]
                name = next(names, None)
                if name is None:
                    stack.pop()
                    if dir_fd != root_fd:
                        os.close(dir_fd)
                    continue
                sub = self._entry(dir_fd, prefix, parts, name)
                if sub is not None:
                    stack.append((sub, prefix + name + "/", parts + (name,), iter(_sorted(sub))))
        finally:
            for dir_fd, *_ in stack:
                if dir_fd != root_fd:
                    os.close(dir_fd)

    def _entry(self, dir_fd: int, prefix: str, parts: tuple[str, ...], name: str) -> int | None:
        """Write one entry; for a directory, return an fd on it to walk next."""
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        mode = st.st_mode
        path = prefix + name
        if self.whiteouts and stat.S_ISCHR(mode) and st.st_rdev == 0:
            # Checked before hardlinks: overlayfs may share one whiteout inode.
            if self._in_lowers(parts + (name,)):
                # The whiteout device's own time is when it was made (an apply makes it anew):
                # the epoch keeps a layer the same bytes however often it is written.
                self.w.entry(prefix + WHITEOUT_PREFIX + name, REG, st, mode=mode & 0o777, mtime=0)
            return None
        if stat.S_ISSOCK(mode):
            return None
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in self.seen:
                self.w.entry(path, LINK, st, linkname=self.seen[key])
                return None
            self.seen[key] = path
        xattrs = self._xattrs(dir_fd, name)
        if stat.S_ISDIR(mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                opaque = xattrs.get(OVERLAY_OPAQUE_XATTR) == b"y"
                self.w.entry(path + "/", DIR, st, xattrs=_keep(xattrs))
                if self.whiteouts and opaque:
                    self.w.entry(path + "/" + WHITEOUT_OPAQUE, REG, st, mode=mode & 0o777)
            except BaseException:
                os.close(fd)
                raise
            return fd
        if stat.S_ISREG(mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                self.w.entry(path, REG, st, xattrs=_keep(xattrs), data_fd=fd)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            self.w.entry(path, SYMLINK, st, xattrs=_keep(xattrs),
                         linkname=os.readlink(name, dir_fd=dir_fd))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self.w.entry(path, CHR if stat.S_ISCHR(mode) else BLK, st, xattrs=_keep(xattrs))
        elif stat.S_ISFIFO(mode):
            self.w.entry(path, FIFO, st, xattrs=_keep(xattrs))
        return None

    def _xattrs(self, dir_fd: int, name: str) -> dict[str, bytes]:
        # No *at form of listxattr: go through the pinned directory, leaf not followed.
        path = f"/proc/self/fd/{dir_fd}/{name}"
        try:
            keys = os.listxattr(path, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EPERM):
                return {}
            raise
        values = {}
        for key in keys:
            try:
                values[key] = os.getxattr(path, key, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                    raise
        return values

    def _in_lowers(self, parts: tuple[str, ...]) -> bool:
        """Whether a lower has something at `parts` that the merged view could show (reached
        through real directories only, as overlayfs merges them)."""
        if not self.lower_fds:
            return True
        parent = "/".join(parts[:-1]) or "."
        for lower in self.lower_fds:
            try:
                fd = openat2(lower, parent, os.O_PATH | os.O_DIRECTORY,
                             resolve=RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
            except OSError:
                continue
            try:
                os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                return True
            except OSError:
                continue
            finally:
                os.close(fd)
        return False


def _sorted(dir_fd: int) -> list[str]:
    return sorted(os.listdir(dir_fd), key=os.fsencode)   # bytewise, as Go sorts names


def _keep(xattrs: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in xattrs.items() if not k.startswith(_OVERLAY_XATTR_PREFIX)}


class TarWriter:
    """POSIX pax tar output, buffered, hashed and counted."""

    def __init__(self, out):
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0
        self.buf = bytearray()

    def _flush(self) -> None:
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            self.hash.update(data)
            self.size += len(data)
            try:
                self.out.write(data)
            except DockyardError:
                raise
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise NoSpace("writing layer: no space left on device") from None
                raise SystemFailure(f"writing layer: {e.strerror or e}") from None

    def entry(self, name: str, typeflag: bytes, st: os.stat_result, *, mode: int | None = None,
              linkname: str = "", xattrs: dict[str, bytes] | None = None,
              data_fd: int = -1, mtime: int | None = None) -> None:
        size = st.st_size if typeflag == REG and data_fd >= 0 else 0
        major = minor = 0
        if typeflag in (CHR, BLK):
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self.buf += _header(os.fsencode(name), typeflag,
                            stat.S_IMODE(st.st_mode) if mode is None else mode,
                            st.st_uid, st.st_gid, size,
                            st.st_mtime_ns // 1_000_000_000 if mtime is None else mtime,
                            os.fsencode(linkname), major, minor, xattrs)
        if size:
            self._copy(data_fd, size, name)
        if len(self.buf) >= _CHUNK:
            self._flush()

    def _copy(self, fd: int, size: int, name: str) -> None:
        left = size
        while left:
            data = os.read(fd, min(left, _CHUNK))
            if not data:
                raise SystemFailure(f"writing layer: {name} shrank while it was read")
            self.buf += data
            left -= len(data)
            if len(self.buf) >= _CHUNK:
                self._flush()
        self.buf += bytes(-size % BLOCK)

    def finish(self) -> None:
        self.buf += bytes(2 * BLOCK)   # end of archive, as Go's tar.Writer.Close
        self._flush()


def _header(name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
            linkname: bytes, major: int, minor: int, xattrs: dict[str, bytes] | None) -> bytes:
    pax: dict[bytes, bytes] = {}
    prefix = b""
    if len(name) > 100 or not name.isascii():
        split = _split_ustar(name)
        if split is None:
            pax[b"path"] = name
            name = _ascii(name)[:100]
        else:
            prefix, name = split
    if len(linkname) > 100 or not linkname.isascii():
        pax[b"linkpath"] = linkname
        linkname = _ascii(linkname)[:100]
    if uid > 0o7777777:
        pax[b"uid"], uid = str(uid).encode(), 0
    if gid > 0o7777777:
        pax[b"gid"], gid = str(gid).encode(), 0
    if size > 0o77777777777:
        pax[b"size"], size = str(size).encode(), 0
    if not 0 <= mtime <= 0o77777777777:
        pax[b"mtime"], mtime = str(mtime).encode(), 0
    if xattrs:
        for key, value in xattrs.items():
            pax[b"SCHILY.xattr." + os.fsencode(key)] = value
    block = _ustar(name, typeflag, mode, uid, gid, size, mtime, linkname, major, minor, prefix)
    if not pax:
        return block
    records = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
    dirname, _, base = name.rpartition(b"/")
    pax_name = ((dirname + b"/" if dirname else b"") + b"PaxHeaders.0/" + base)[:100]
    return (_ustar(pax_name, b"x", 0o644, 0, 0, len(records), 0, b"", 0, 0, b"")
            + records + bytes(-len(records) % BLOCK) + block)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """prefix/name for an ASCII path too long for the 100-byte field (POSIX ustar)."""
    if not name.isascii() or len(name) > 256:
        return None
    i = name.find(b"/", max(0, len(name) - 101))
    while 0 <= i:
        if i <= 155 and 0 < len(name) - i - 1 <= 100:
            return name[:i], name[i + 1:]
        i = name.find(b"/", i + 1)
    return None


def _ascii(data: bytes) -> bytes:
    return bytes(b for b in data if b < 0x80)


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def _ustar(name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
           linkname: bytes, major: int, minor: int, prefix: bytes) -> bytes:
    head = b"".join((
        name.ljust(100, b"\0"), b"%07o\0" % mode, b"%07o\0" % uid, b"%07o\0" % gid,
        b"%011o\0" % size, b"%011o\0" % mtime))
    tail = b"".join((
        typeflag, linkname.ljust(100, b"\0"), b"ustar\x0000", bytes(64),
        b"%07o\0" % major, b"%07o\0" % minor, prefix.ljust(155, b"\0"), bytes(12)))
    checksum = sum(head) + sum(tail) + 8 * 0x20
    return head + b"%06o\0 " % checksum + tail
