"""Apply a layer: extract an uncompressed layer tar into a snapshot directory, safely.

A layer (image-spec layer.md) is a tar of changes: entries to add or replace, and whiteouts —
`.wh.<name>` deletes `<name>` from the layers below, `.wh..wh..opq` hides everything below a
directory ("Whiteouts", "Opaque Whiteout"). With `whiteouts="overlay"` the directory is an
overlay upperdir and whiteouts become what overlayfs understands (Documentation/filesystems/
overlayfs.rst "whiteouts and opaque directories"): a 0:0 character device named `<name>`, and
the xattr `trusted.overlay.opaque=y`. With `whiteouts="delete"` the named paths are removed
instead (flattening into a plain directory).

Containment is the point of this module: a layer is untrusted input and must never create,
change or delete anything outside `root`. How:

- Names are cleaned lexically first, as moby's `archive.applyLayer` does: `.` and empty
  components dropped, a leading `/` ignored (absolute names are relative to the root), `..`
  applied to the components before it. A name whose `..` climbs above the root is REFUSED
  (InvalidArgument naming the entry), as are NUL bytes and names over 4096 bytes. So the
  kernel is only ever handed single components, never `..`.
- Parent directories are opened component by component with O_NOFOLLOW|O_DIRECTORY from a
  directory fd; the fds of real (symlink-free) directories are cached. When a component is a
  symlink, the parent is resolved by the kernel with openat2(RESOLVE_IN_ROOT), i.e. as if the
  root were "/" — the same result Docker gets by extracting in a chroot: an entry `a/passwd`
  after a symlink `a -> /etc` lands in `<root>/etc/passwd`. Nothing follows a symlink out.
- The last component is never followed: files are created with O_CREAT|O_EXCL|O_NOFOLLOW after
  removing whatever was there, links/nodes with the *at calls, attributes with fchown/fchmod/
  futimens on the new fd or the AT_SYMLINK_NOFOLLOW forms. A file is always a new inode, so a
  hardlink can never be used to write into another file.
- Hardlink targets are cleaned and resolved the same way and must name an existing non-directory
  inside the root; linkat(2) without AT_SYMLINK_FOLLOW links a symlink itself, not its target.
- Removing a directory (replaced by a non-directory, or whited out) uses fd-based rmtree and
  drops cached fds at or below it.
- Limits as Go's archive/tar: pax, GNU long-name and global headers at most 1 MiB each.
  `trusted.overlay.*` xattrs in a layer are dropped: only whiteouts may make overlay metadata.

The tar reader is our own (POSIX pax, GNU long names, base-256 numbers; Go's archive/tar rules
for header-only types), because applying means hashing every byte read (the DiffID, image-spec
config.md, is the sha256 of the whole uncompressed tar including the trailing blocks) and
because `tarfile`'s per-member overhead dominated a 50,000-file layer.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import sys
import stat
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from dockyard.errors import DockyardError, InvalidArgument, NoSpace, SystemFailure
from dockyard.linux.fs import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

log = logging.getLogger(__name__)

BLOCK = 512
MAX_SPECIAL = 1 << 20        # pax / GNU long name / global header size, as Go's archive/tar
MAX_NAME = 4096              # PATH_MAX
_CHUNK = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)
# name mode uid gid size mtime chksum typeflag linkname magic(6) version(2) uname gname
# devmajor devminor prefix (POSIX.1-1988 ustar; GNU keeps atime/ctime where prefix is).
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s6s2x32x32x8s8s155s12x")
_FS_ENCODING = sys.getfilesystemencoding()
_MAX_TIME_NS = (1 << 62) * 1_000_000_000
_DIR_CACHE = 128             # open directory fds kept (LRU); well under RLIMIT_NOFILE

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTR_PREFIX = "trusted.overlay."

# Entry kinds (tar typeflags, POSIX ustar + GNU).
REG, LINK, SYMLINK, CHR, BLK, DIR, FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"
_HEADER_ONLY = {LINK, SYMLINK, CHR, BLK, DIR, FIFO}   # size field ignored (Go's isHeaderOnlyType)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class ApplyResult:
    diff_id: str      # "sha256:…" of every byte of the uncompressed tar stream
    size: int         # length of that stream


def apply_layer(stream, root: str, *, whiteouts: str = "overlay") -> ApplyResult:
    """Extract the uncompressed tar `stream` (anything with read(n)) into the directory `root`,
    reading it to EOF. Raises InvalidArgument for a malformed or hostile layer (naming the
    entry), NoSpace when the disk is full, SystemFailure when the kernel refuses otherwise."""
    if whiteouts not in ("overlay", "delete"):
        raise InvalidArgument(f"unknown whiteout mode {whiteouts!r} (want overlay or delete)")
    inp = _Input(stream)
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SystemFailure(f"cannot open layer target {root}: {e.strerror}") from None
    applier = _Applier(root_fd, inp, whiteouts)
    try:
        for entry in _entries(inp):
            try:
                consumed = applier.apply(entry)
            except OSError as e:
                raise _entry_error(entry.name, e) from None
            finally:
                applier.release()
            inp.skip(entry.size - consumed + (-entry.size % BLOCK))
        try:
            applier.finish()
        except OSError as e:
            raise _entry_error("", e) from None
        inp.drain()
    finally:
        applier.close()
    return ApplyResult("sha256:" + inp.hash.hexdigest(), inp.size)


def _entry_error(name: str, e: OSError) -> DockyardError:
    what = f"layer entry {name!r}" if name else "layer"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"{what}: no space left on device")
    if e.errno == errno.ENOENT:
        return InvalidArgument(f"invalid {what}: its directory does not exist in the layer root "
                               "(a symlink on the way points to nothing there)")
    if e.errno in (errno.ENOTDIR, errno.ELOOP, errno.EEXIST, errno.EISDIR,
                   errno.ENAMETOOLONG, errno.EINVAL, errno.EMLINK, errno.E2BIG, errno.ERANGE,
                   errno.EXDEV):
        return InvalidArgument(f"invalid {what}: {e.strerror}")
    return SystemFailure(f"{what}: {e.strerror}")


# ---------------------------------------------------------------------------------------------
# Reading: a hashing buffered input and a tar header parser.


class _Input:
    """Buffered reads from the layer stream; every byte read is hashed and counted."""

    def __init__(self, stream):
        self._stream = stream
        self.hash = hashlib.sha256()
        self.size = 0
        self._buf = b""
        self._pos = 0

    def _read(self, n: int) -> bytes:
        try:
            data = self._stream.read(n)
        except DockyardError:
            raise
        except OSError as e:
            raise SystemFailure(f"reading layer: {e.strerror or e}") from None
        if data:
            self.hash.update(data)
            self.size += len(data)
        return data

    def _fill(self, n: int) -> None:
        """Make at least n bytes available at _pos, or raise for a truncated stream."""
        chunks = [self._buf[self._pos:]]
        have = len(chunks[0])
        while have < n:
            data = self._read(max(_CHUNK, n - have))
            if not data:
                raise InvalidArgument("invalid layer: unexpected end of tar data")
            chunks.append(data)
            have += len(data)
        self._buf = b"".join(chunks)
        self._pos = 0

    def at_eof(self) -> bool:
        if self._pos < len(self._buf):
            return False
        data = self._read(_CHUNK)
        self._buf, self._pos = data, 0
        return not data

    def take(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n:
            self._fill(n)
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        return data

    def skip(self, n: int) -> None:
        avail = len(self._buf) - self._pos
        if n <= avail:
            self._pos += n
            return
        n -= avail
        self._buf, self._pos = b"", 0
        while n > 0:
            data = self._read(_CHUNK)
            if not data:
                raise InvalidArgument("invalid layer: unexpected end of tar data")
            if len(data) > n:
                self._buf, self._pos = data, n
                return
            n -= len(data)

    def copy_to(self, fd: int, n: int) -> None:
        """Write the next n bytes of the stream to fd."""
        pos = self._pos
        if n <= len(self._buf) - pos:   # the whole file is buffered (small files)
            self._pos = pos + n
            data = self._buf[pos:pos + n]
            written = os.write(fd, data)
            if written < n:
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(fd, view):]
            return
        while n > 0:
            avail = len(self._buf) - self._pos
            if avail == 0:
                data = self._read(_CHUNK)
                if not data:
                    raise InvalidArgument("invalid layer: unexpected end of tar data")
                self._buf, self._pos = data, 0
                avail = len(data)
            k = n if n < avail else avail
            view = memoryview(self._buf)[self._pos:self._pos + k]
            while view:
                view = view[os.write(fd, view):]
            self._pos += k
            n -= k

    def drain(self) -> None:
        """Read (and hash) whatever follows the end-of-archive blocks."""
        self._buf, self._pos = b"", 0
        while self._read(_CHUNK):
            pass


class _Entry:
    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime_ns", "atime_ns",
                 "linkname", "devmajor", "devminor", "xattrs")


def _entries(inp: _Input):
    """Yield the entries of the tar; the consumer reads or skips each entry's data (size bytes
    plus padding) before asking for the next."""
    pax: dict[str, bytes] = {}
    special = 0
    longname = longlink = None
    if inp.at_eof():
        return  # an empty stream is an empty layer (as Go's reader sees it)
    while True:
        block = inp.take(BLOCK)
        if block == _ZERO_BLOCK:
            # End of archive: a second zero block, or EOF right after the first (Go accepts).
            if not inp.at_eof() and inp.take(BLOCK) != _ZERO_BLOCK:
                raise InvalidArgument("invalid layer: data after a zero block")
            return
        (name_f, mode_f, uid_f, gid_f, size_f, mtime_f, sum_f, typeflag, link_f, magic,
         devmajor_f, devminor_f, prefix_f) = _USTAR.unpack(block)
        try:   # the common, well-formed case: octal digits padded with NUL/space
            stored_sum = int(sum_f.rstrip(b"\0 "), 8)
            size = int(size_f.rstrip(b"\0 ") or b"0", 8)
        except ValueError:
            stored_sum = _number(sum_f, "checksum")
            size = _number(size_f, "size")
        if stored_sum != _byte_sum(block) - sum(sum_f) + 256:   # the field counts as 8 spaces
            _check_signed_sum(block, stored_sum)
        if size < 0:
            raise InvalidArgument("invalid layer: negative size in a tar header")
        if typeflag in (b"x", b"g", b"L", b"K"):
            if size > MAX_SPECIAL:
                raise InvalidArgument(f"invalid layer: tar extended header of {size} bytes "
                                      f"(limit {MAX_SPECIAL})")
            data = inp.take(size)
            inp.skip(-size % BLOCK)
            if typeflag == b"g":
                continue  # global pax headers are ignored, as moby does
            special += size
            if special > MAX_SPECIAL:
                raise InvalidArgument("invalid layer: too many tar extended headers for one entry")
            if typeflag == b"x":
                pax.update(_parse_pax(data))
            elif typeflag == b"L":
                longname = data.split(b"\0", 1)[0]
            else:
                longlink = data.split(b"\0", 1)[0]
            continue

        e = _Entry()
        if b"path" in pax:
            raw = pax[b"path"]
        elif longname is not None:
            raw = longname
        else:
            raw = name_f.split(b"\0", 1)[0]
            if magic == b"ustar\0":   # POSIX ustar: the name may be split with a prefix
                prefix = prefix_f.split(b"\0", 1)[0]
                if prefix:
                    raw = prefix + b"/" + raw
        e.name = _text(raw, "name")
        if typeflag == LINK or typeflag == SYMLINK:
            if b"linkpath" in pax:
                link = pax[b"linkpath"]
            elif longlink is not None:
                link = longlink
            else:
                link = link_f.split(b"\0", 1)[0]
            e.linkname = _text(link, "link name")
        else:
            e.linkname = ""

        if typeflag == b"\0":
            typeflag = DIR if e.name.endswith("/") else REG
        elif typeflag == b"7":
            typeflag = REG   # contiguous file: a regular file everywhere we care about
        elif typeflag not in _HEADER_ONLY and typeflag != REG:
            what = "sparse files are" if typeflag == b"S" else f"tar entry type {typeflag!r} is"
            raise InvalidArgument(f"invalid layer entry {e.name!r}: {what} not supported")
        e.type = typeflag
        try:
            e.mode = int(mode_f.rstrip(b"\0 ") or b"0", 8) & 0o7777
            e.uid = int(uid_f.rstrip(b"\0 ") or b"0", 8)
            e.gid = int(gid_f.rstrip(b"\0 ") or b"0", 8)
            mtime = int(mtime_f.rstrip(b"\0 ") or b"0", 8) * 1_000_000_000
        except ValueError:
            e.mode = _number(mode_f, "mode") & 0o7777
            e.uid = _number(uid_f, "uid")
            e.gid = _number(gid_f, "gid")
            mtime = _number(mtime_f, "mtime") * 1_000_000_000
        if typeflag == CHR or typeflag == BLK:
            e.devmajor = _number(devmajor_f, "devmajor")
            e.devminor = _number(devminor_f, "devminor")
        else:
            e.devmajor = e.devminor = 0
        e.xattrs = None
        if pax:
            size = _pax_int(pax, b"size", size)
            e.uid = _pax_int(pax, b"uid", e.uid)
            e.gid = _pax_int(pax, b"gid", e.gid)
            if b"mtime" in pax:
                mtime = _pax_time(pax[b"mtime"])
            e.atime_ns = _pax_time(pax[b"atime"]) if b"atime" in pax else mtime
            for key, value in pax.items():
                if key.startswith(b"SCHILY.xattr."):
                    if e.xattrs is None:
                        e.xattrs = {}
                    e.xattrs[_text(key[13:], "xattr name")] = value
                elif key.startswith(b"GNU.sparse."):
                    raise InvalidArgument(f"invalid layer entry {e.name!r}: sparse files are not "
                                          "supported")
        else:
            e.atime_ns = mtime
        e.mtime_ns = mtime
        e.size = 0 if typeflag in _HEADER_ONLY else size
        if not (0 <= e.uid <= 0xFFFFFFFE and 0 <= e.gid <= 0xFFFFFFFE):
            raise InvalidArgument(f"invalid layer entry {e.name!r}: uid/gid out of range")
        if not (0 <= e.devmajor <= 0xFFFFFFFF and 0 <= e.devminor <= 0xFFFFFFFF):
            raise InvalidArgument(f"invalid layer entry {e.name!r}: device number out of range")
        if not (abs(e.mtime_ns) < _MAX_TIME_NS and abs(e.atime_ns) < _MAX_TIME_NS):
            raise InvalidArgument(f"invalid layer entry {e.name!r}: time out of range")
        if e.size < 0:
            raise InvalidArgument(f"invalid layer entry {e.name!r}: negative size")
        pax = {}
        special = 0
        longname = longlink = None
        yield e


def _byte_sum(block: bytes) -> int:
    """sum(block), in C: adler32's low half is 1 + the byte sum mod 65521, exact for 256
    bytes (at most 65280)."""
    view = memoryview(block)
    return (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:]) & 0xFFFF) - 2


def _check_signed_sum(block: bytes, stored: int) -> None:
    """Some old tars summed signed bytes; anything else is not a tar header."""
    if stored != sum((b ^ 0x80) - 0x80 for b in block[:148] + b" " * 8 + block[156:]):
        raise InvalidArgument("invalid layer: bad tar header checksum (not a tar stream?)")


def _number(field: bytes, what: str) -> int:
    """An octal field (NUL/space padded) or GNU base-256 (high bit of the first byte set)."""
    if field and field[0] & 0x80:
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if field[0] & 0x40:   # negative (0xff prefix)
            value -= 1 << (8 * len(field) - 1)
        return value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidArgument(f"invalid layer: bad tar header {what} field {text[:20]!r}") from None


def _text(raw: bytes, what: str) -> str:
    """Header bytes as a str that os.* turns back into the same bytes (surrogateescape)."""
    if len(raw) > MAX_NAME:
        raise InvalidArgument(f"invalid layer: tar entry {what} longer than {MAX_NAME} bytes")
    if b"\0" in raw:
        raise InvalidArgument(f"invalid layer: NUL byte in a tar entry {what}")
    return raw.decode(_FS_ENCODING, "surrogateescape")


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    """Records "<len> <key>=<value>\\n" (POSIX.1-2008 pax "extended header")."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # some writers pad with NULs
        space = data.find(b" ", pos, pos + 21)
        try:
            length = int(data[pos:space])
        except ValueError:
            length = 0
        end = pos + length
        if space < 0 or length <= 0 or end > len(data) or data[end - 1] != 0x0A:
            raise InvalidArgument("invalid layer: malformed pax extended header")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq or not key:
            raise InvalidArgument("invalid layer: malformed pax extended header")
        if key in (b"path", b"linkpath") and b"\0" in value:
            raise InvalidArgument("invalid layer: NUL byte in a tar entry name")
        if value or key.startswith(b"SCHILY.xattr."):
            records[key] = value
        else:
            records.pop(key, None)   # an empty value deletes the keyword
        pos = end
    return records


def _pax_int(pax: dict[bytes, bytes], key: bytes, default: int) -> int:
    value = pax.get(key)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 20:
        raise InvalidArgument(f"invalid layer: bad pax {key.decode()} {value[:20]!r}")
    return int(value)


def _pax_time(value: bytes) -> int:
    """Seconds with an optional decimal fraction, as nanoseconds."""
    sign = -1 if value.startswith(b"-") else 1
    whole, _, frac = value.lstrip(b"-").partition(b".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(whole) > 19:
        raise InvalidArgument(f"invalid layer: bad pax time {value[:30]!r}")
    return sign * (int(whole) * 1_000_000_000 + int((frac[:9] or b"0").ljust(9, b"0")))


def clean(name: str) -> tuple[str, ...]:
    """The components of a layer path, cleaned lexically (like Go's filepath.Clean on "/"+name
    but refusing a `..` that climbs above the root)."""
    if "//" not in name and "/." not in name and name[:1] not in ("/", ".", ""):
        return tuple(name.rstrip("/").split("/"))   # already clean: the common case
    parts: list[str] = []
    for p in name.split("/"):
        if p == "" or p == ".":
            continue
        if p == "..":
            if not parts:
                raise InvalidArgument(f"invalid layer entry {name!r}: path escapes the layer root")
            parts.pop()
        else:
            parts.append(p)
    return tuple(parts)


# ---------------------------------------------------------------------------------------------
# Writing into the root.


class _Applier:
    def __init__(self, root_fd: int, inp: _Input, whiteouts: str):
        self.root_fd = root_fd
        self.inp = inp
        self.overlay = whiteouts == "overlay"
        self.dirs: OrderedDict[tuple[str, ...], int] = OrderedDict()  # symlink-free dirs only
        self.retired: list[int] = []      # fds evicted while an entry may still use them
        self.owned: list[int] = []        # uncached fds for the current entry
        self.dir_times: dict[tuple[str, ...], tuple[int, int]] = {}
        self.kept: set[tuple[str, ...]] = set()   # delete mode: paths this layer made (+ parents)

    def close(self) -> None:
        self.release()
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()
        os.close(self.root_fd)

    def release(self) -> None:
        if not (self.retired or self.owned):
            return
        for fd in self.retired + self.owned:
            os.close(fd)
        self.retired.clear()
        self.owned.clear()

    # -- directory resolution ----------------------------------------------------------------

    def dir_fd(self, parts: tuple[str, ...], create: bool = True, follow: bool = True) -> int:
        """An fd on the directory `parts` inside the root (created 0755 when missing and
        `create`; through symlinks, resolved in the root, when `follow`). Valid until
        release()."""
        if not parts:
            return self.root_fd
        fd = self.dirs.get(parts)
        if fd is not None:
            self.dirs.move_to_end(parts)
            return fd
        i = len(parts) - 1
        while i and parts[:i] not in self.dirs:
            i -= 1
        cur = self.dirs[parts[:i]] if i else self.root_fd
        opened = -1
        try:
            for j in range(i, len(parts)):
                try:
                    fd = self._open_child(cur, parts[j], create)
                except NotADirectoryError:
                    if not follow:
                        raise
                    # A symlink on the way (or a non-directory): let the kernel resolve the
                    # rest with the root as "/".
                    fd = self._resolve_in_root(parts, j, create)
                    if opened >= 0:
                        os.close(opened)
                    opened = -1
                    self.owned.append(fd)
                    return fd
                if opened >= 0:
                    os.close(opened)
                opened = cur = fd
        except BaseException:
            if opened >= 0:
                os.close(opened)
            raise
        self._cache(parts, opened)
        return opened

    def _open_child(self, parent: int, name: str, create: bool) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            _mkdir_implicit(name, parent)
            return os.open(name, _DIR_FLAGS, dir_fd=parent)

    def _resolve_in_root(self, parts: tuple[str, ...], start: int, create: bool) -> int:
        fd = -1
        try:
            for k in range(start, len(parts)):
                path = "/".join(parts[:k + 1])
                try:
                    new = openat2(self.root_fd, path, os.O_RDONLY | os.O_DIRECTORY,
                                  resolve=RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
                except FileNotFoundError:
                    if not create or k == start:
                        raise   # the symlink itself dangles: Docker refuses too
                    _mkdir_implicit(parts[k], fd)
                    new = os.open(parts[k], _DIR_FLAGS, dir_fd=fd)
                if fd >= 0:
                    os.close(fd)
                fd = new
            return fd
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise

    def _cache(self, parts: tuple[str, ...], fd: int) -> None:
        self.dirs[parts] = fd
        if len(self.dirs) > _DIR_CACHE:
            self.retired.append(self.dirs.popitem(last=False)[1])

    def _forget(self, parts: tuple[str, ...]) -> None:
        """Drop cached fds at or below `parts` (that directory is going away)."""
        n = len(parts)
        for key in [k for k in self.dirs if k[:n] == parts]:
            self.retired.append(self.dirs.pop(key))

    def _remove(self, pfd: int, parts: tuple[str, ...]) -> bool:
        """Remove whatever is at parts[-1] in the directory pfd; False if nothing was there."""
        name = parts[-1]
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            self._forget(parts)
            shutil.rmtree(name, dir_fd=pfd)   # fd-based, never follows symlinks
        else:
            os.unlink(name, dir_fd=pfd)
        return True

    # -- entries -----------------------------------------------------------------------------

    def apply(self, e: _Entry) -> int:
        """Apply one entry; returns how many of its data bytes were consumed."""
        parts = clean(e.name)
        if not parts:
            if e.type != DIR:
                raise InvalidArgument(f"invalid layer entry {e.name!r}: the root must be a "
                                      "directory")
            self._attrs_fd(self.root_fd, e)
            self.dir_times[()] = (e.atime_ns, e.mtime_ns)
            return 0
        name = parts[-1]
        parent = parts[:-1]
        if name.startswith(WHITEOUT_PREFIX):
            self._whiteout(e, parent, name)
            return 0
        for p in parent:
            if p.startswith(WHITEOUT_META_PREFIX):
                return 0   # aufs bookkeeping (.wh..wh.plnk/…): not part of the filesystem
        pfd = self.dir_fd(parent)
        if not self.overlay:
            self._keep(parts)
        t = e.type
        if t == REG:
            fd = self._create(pfd, parts, lambda: os.open(name, _FILE_FLAGS, 0o600, dir_fd=pfd))
            try:
                self.inp.copy_to(fd, e.size)
                os.fchown(fd, e.uid, e.gid)
                os.fchmod(fd, e.mode)   # after chown, which clears setuid/setgid
                if e.xattrs:
                    self._xattrs(fd, e)   # after chown, which clears security.capability
                os.utime(fd, ns=(e.atime_ns, e.mtime_ns))
            finally:
                os.close(fd)
            return e.size
        if t == DIR:
            try:
                os.mkdir(name, 0o700, dir_fd=pfd)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(name, dir_fd=pfd).st_mode):
                    self._create(pfd, parts, lambda: os.mkdir(name, 0o700, dir_fd=pfd))
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            if pfd in self.owned:
                self.owned.append(fd)   # under a symlink: not cacheable by path
            else:
                self._forget(parts)
                self._cache(parts, fd)
            self._attrs_fd(fd, e)
            self.dir_times[parts] = (e.atime_ns, e.mtime_ns)
            return 0
        if t == SYMLINK:
            if not e.linkname:
                raise InvalidArgument(f"invalid layer entry {e.name!r}: empty symlink target")
            self._create(pfd, parts, lambda: os.symlink(e.linkname, name, dir_fd=pfd))
            self._attrs_at(pfd, name, e, chmod=False)
            return 0
        if t == LINK:
            self._hardlink(e, pfd, parts)
            return 0
        kind = {CHR: stat.S_IFCHR, BLK: stat.S_IFBLK, FIFO: stat.S_IFIFO}[t]
        dev = os.makedev(e.devmajor, e.devminor) if t != FIFO else 0
        self._create(pfd, parts, lambda: os.mknod(name, kind | 0o600, dev, dir_fd=pfd))
        self._attrs_at(pfd, name, e, chmod=True)
        return 0

    def _create(self, pfd: int, parts: tuple[str, ...], make):
        """Run `make` (an exclusive create); if the name is taken, remove it and try again."""
        try:
            return make()
        except FileExistsError:
            self._remove(pfd, parts)
            return make()

    def _hardlink(self, e: _Entry, pfd: int, parts: tuple[str, ...]) -> None:
        target = clean(e.linkname)
        if not target:
            raise InvalidArgument(f"invalid layer entry {e.name!r}: hardlink to the root")
        if target == parts:
            raise InvalidArgument(f"invalid layer entry {e.name!r}: hardlink to itself")
        try:
            tfd = self.dir_fd(target[:-1], create=False)
            st = os.lstat(target[-1], dir_fd=tfd)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidArgument(f"invalid layer entry {e.name!r}: hardlink target "
                                  f"{e.linkname!r} does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"invalid layer entry {e.name!r}: hardlink to a directory")
        self._create(pfd, parts, lambda: os.link(target[-1], parts[-1], src_dir_fd=tfd,
                                                 dst_dir_fd=pfd, follow_symlinks=False))

    def _whiteout(self, e: _Entry, parent: tuple[str, ...], name: str) -> None:
        if name.startswith(WHITEOUT_META_PREFIX):
            if name == WHITEOUT_OPAQUE:
                self._opaque(parent)
            return   # other .wh..wh. names are aufs bookkeeping
        hidden = name[len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", ".."):
            raise InvalidArgument(f"invalid layer entry {e.name!r}: bad whiteout name")
        pfd = self.dir_fd(parent)
        parts = parent + (hidden,)
        self._remove(pfd, parts)
        if self.overlay:
            os.mknod(hidden, stat.S_IFCHR, 0, dir_fd=pfd)
            os.chown(hidden, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)

    def _opaque(self, parent: tuple[str, ...]) -> None:
        pfd = self.dir_fd(parent)
        if self.overlay:
            os.setxattr(pfd, OVERLAY_OPAQUE_XATTR, b"y")
            return
        self._keep(parent)
        for child in os.listdir(pfd):
            if parent + (child,) not in self.kept:
                self._remove(pfd, parent + (child,))

    def _keep(self, parts: tuple[str, ...]) -> None:
        for i in range(len(parts), 0, -1):
            if parts[:i] in self.kept:
                return
            self.kept.add(parts[:i])

    # -- attributes --------------------------------------------------------------------------

    def _attrs_fd(self, fd: int, e: _Entry) -> None:
        os.fchown(fd, e.uid, e.gid)
        os.fchmod(fd, e.mode)
        if e.xattrs:
            self._xattrs(fd, e)

    def _attrs_at(self, pfd: int, name: str, e: _Entry, *, chmod: bool) -> None:
        os.chown(name, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:
            os.chmod(name, e.mode, dir_fd=pfd, follow_symlinks=False)
        if e.xattrs:
            # lsetxattr has no *at form: go through the pinned parent, leaf not followed.
            self._xattrs(f"/proc/self/fd/{pfd}/{name}", e)
        os.utime(name, ns=(e.atime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _xattrs(self, target, e: _Entry) -> None:
        for key, value in e.xattrs.items():
            if key.startswith(_OVERLAY_XATTR_PREFIX):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as err:
                # As moby: a filesystem or namespace that refuses an xattr is not fatal.
                if err.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise
                log.warning("layer entry %r: xattr %s not set: %s", e.name, key, err.strerror)

    def finish(self) -> None:
        """Directory times last: creating their children changed them."""
        for parts, times in self.dir_times.items():
            try:
                fd = self.dir_fd(parts, create=False, follow=False)
            except (FileNotFoundError, NotADirectoryError):
                continue   # removed or replaced by a later entry
            try:
                os.utime(fd, ns=times)
            finally:
                self.release()


def _mkdir_implicit(name: str, parent: int) -> None:
    """A parent the tar did not list: 0755 root:root (moby's default)."""
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, "a parent is not a directory", name) from None
    os.chmod(name, 0o755, dir_fd=parent, follow_symlinks=False)   # whatever the umask
