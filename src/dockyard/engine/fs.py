"""A container's filesystem for the Engine API: `docker cp` (HEAD/GET/PUT
/containers/{id}/archive), `docker diff` (GET /containers/{id}/changes); `docker export` is
dockyard-containerd's Transfer.Export of the container's snapshot (api/fs.py).

Containment is the point (security.md §2, CVE-2018-15664 and its 2026 recurrence; §3 rule 4).
A container's root is an fd, never a string the host joins paths onto:

- a running container's root is `/proc/<pid>/root` of its init, opened once (the pid checked to
  be the container's, by its cgroup, with a pidfd held across the open so a recycled pid is
  noticed), which also shows its bind mounts as the process sees them;
- a stopped one's is its snapshot mounted on a private temporary directory under the exec-root
  (read-only, the upperdir made the top lowerdir, for reads; read-write for PUT).

Paths inside are resolved by the kernel with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)
(dockyard.linux.fs): `..` and absolute symlinks stop at the container's "/", magic links are
refused, and a path component swapped for a symlink between two calls still resolves inside.
Trees are read by directory fds with O_NOFOLLOW (images/diff.py's walker); archives are written
by images/apply.py's contained applier, rooted at the container root, after the entry names are
rebased onto the extraction directory and refused if their `..` climbs out of it (moby's
"breakout" check). Nothing here chroots, execs a program or looks a name up with NSS inside the
container (CVE-2019-14271, GHSA-x86f-5xw2-fm2r): a compressed upload is decompressed in-process
with the standard library (gzip, bzip2, xz) or zstandard.

The stat of a path (X-Docker-Container-Path-Stat) follows moby's container.StatPath: the
directory part resolved in the container, the last component not followed unless the path ends
in "/" or "/."; `mode` carries Go's os.FileMode bits, which the docker CLI decodes.
"""

from __future__ import annotations

import base64
import bz2
import contextlib
import errno
import json
import lzma
import os
import posixpath
import signal
import stat
import tarfile
import tempfile
from dataclasses import dataclass

from dockyard.containerd import snapshots as csnapshots
from dockyard.engine import timeutil
from dockyard.errors import DockyardError, InvalidArgument, NotFound, SystemFailure
from dockyard.images import apply as layer_apply
from dockyard.images import compression
from dockyard.images import diff as layer_diff
from dockyard.linux.fs import O_PATH, open_in_root

STAT_HEADER = "X-Docker-Container-Path-Stat"
_CHUNK = 1 << 20
_MAX_LINKS = 40          # symlinks followed when reporting a link's target (Linux's MAXSYMLINKS)

# Go's os.FileMode type bits (io/fs FileMode), as the docker CLI reads `mode`.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

# Filesystems of a running container that are not its files (seen through /proc/<pid>/root,
# unlike moby's view of the rootfs from the daemon's namespace): never archived.
_VIRTUAL_FS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs",
                         "debugfs", "tracefs", "bpf", "fusectl", "configfs", "pstore"})

# Change kinds of GET /containers/{id}/changes (FilesystemChange / ChangeType).
MODIFIED, ADDED, DELETED = 0, 1, 2


def go_file_mode(mode: int) -> int:
    """Go's os.FileMode of a st_mode (os.fillFileStatFromSys)."""
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFDIR:
        out |= GO_MODE_DIR
    elif kind == stat.S_IFLNK:
        out |= GO_MODE_SYMLINK
    elif kind == stat.S_IFBLK:
        out |= GO_MODE_DEVICE
    elif kind == stat.S_IFCHR:
        out |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    elif kind == stat.S_IFIFO:
        out |= GO_MODE_NAMED_PIPE
    elif kind == stat.S_IFSOCK:
        out |= GO_MODE_SOCKET
    if mode & stat.S_ISUID:
        out |= GO_MODE_SETUID
    if mode & stat.S_ISGID:
        out |= GO_MODE_SETGID
    if mode & stat.S_ISVTX:
        out |= GO_MODE_STICKY
    return out


def encode_stat(path_stat: dict) -> str:
    """The X-Docker-Container-Path-Stat header value: base64 (standard, padded) of the JSON."""
    return base64.b64encode(json.dumps(path_stat, separators=(",", ":")).encode()).decode()


# -- paths ------------------------------------------------------------------------------------------

def container_path(path: str) -> str:
    """The request's path as an absolute, lexically clean path in the container, keeping a
    trailing "/" or "/." (moby archive.PreserveTrailingDotOrSeparator): relative paths are
    relative to "/", and `..` stops at "/"."""
    if not path:
        raise InvalidArgument("path must not be empty")
    if "\0" in path:
        raise InvalidArgument("path must not contain NUL bytes")
    clean = posixpath.normpath("/" + path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    parts = []
    for p in clean.split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p and p != ".":
            parts.append(p)
    clean = "/" + "/".join(parts)
    if clean != "/":
        if path.endswith("/."):
            clean += "/."
        elif path.endswith("/"):
            clean += "/"
    return clean


def _follows_last(path: str) -> bool:
    return path.endswith("/") or path.endswith("/.") or path == "/"


def _split(path: str) -> tuple[str, str]:
    """(directory, last component) of a clean container path without trailing forms."""
    d, _, base = path.rstrip("/").rpartition("/")
    return d or "/", base


def _base_name(path: str) -> str:
    """Go's filepath.Base of the requested path (the name archive entries are rebased to)."""
    if path == "/":
        return "/"
    if path.endswith("/."):
        return "."
    return path.rstrip("/").rpartition("/")[2]


def resolve_link(root_fd: int, path: str) -> str:
    """Where `path` leads inside the root, every symlink followed as if the root were "/"
    (moby's symlink.FollowSymlinkInScope): a path string in the container for PathStat's
    linkTarget. Components that do not exist are kept as they are. Read through fds with
    O_NOFOLLOW from the root; nothing is followed on the host."""
    todo = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    links = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        try:
            parent = open_in_root(root_fd, "/" + "/".join(done), O_PATH | os.O_DIRECTORY)
        except OSError:
            return "/" + "/".join(done + [name] + todo)
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            target = os.readlink(name, dir_fd=parent) if stat.S_ISLNK(st.st_mode) else None
        except OSError:
            return "/" + "/".join(done + [name] + todo)
        finally:
            os.close(parent)
        if target is None:
            done.append(name)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise InvalidArgument(f"too many levels of symbolic links in {path}")
        if target.startswith("/"):
            done = []
        todo = [p for p in target.split("/") if p and p != "."] + todo
    return "/" + "/".join(done)


@dataclass
class _Located:
    """A path found in the root: `parent` an O_PATH fd on its directory, `name` the last
    component (None when the path itself was followed to a directory: then `fd` is on it)."""
    parent: int
    name: str | None
    st: os.stat_result

    def close(self) -> None:
        os.close(self.parent)


def _locate(root_fd: int, path: str, container: str) -> _Located:
    try:
        if _follows_last(path):
            fd = open_in_root(root_fd, path, O_PATH)
            try:
                st = os.fstat(fd)
            except BaseException:
                os.close(fd)
                raise
            if not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise InvalidArgument(f"{path.rstrip('/.') or '/'} is not a directory")
            return _Located(fd, None, st)
        d, base = _split(path)
        parent = open_in_root(root_fd, d, O_PATH | os.O_DIRECTORY)
        try:
            st = os.stat(base, dir_fd=parent, follow_symlinks=False)
        except BaseException:
            os.close(parent)
            raise
        return _Located(parent, base, st)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Could not find the file {path} in container {container}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InvalidArgument(f"{path}: too many levels of symbolic links") from None
        raise SystemFailure(f"stat {path}: {e.strerror}") from None


def stat_path(root_fd: int, path: str, container: str) -> dict:
    """ContainerPathStat of `path` (already container_path-clean) in the root."""
    found = _locate(root_fd, path, container)
    try:
        return _path_stat(root_fd, path, found.st)
    finally:
        found.close()


def _path_stat(root_fd: int, path: str, st: os.stat_result) -> dict:
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = resolve_link(root_fd, path)
    return {"name": _base_name(path), "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": timeutil.format_rfc3339(st.st_mtime_ns), "linkTarget": link}


# -- GET archive --------------------------------------------------------------------------------------

class _RebasedWriter(layer_diff.TarWriter):  # the one tar writer of the project
    """Tar entries of a walked directory named under `base/`; hardlink names too."""

    def __init__(self, out, base: str):
        super().__init__(out)
        self.prefix = "" if base in ("", "/") else base.rstrip("/") + "/"

    def entry(self, name, typeflag, st, *, linkname="", **kwargs):
        if typeflag == layer_apply.LINK:
            linkname = self.prefix + linkname
        super().entry(self.prefix + name, typeflag, st, linkname=linkname, **kwargs)

    def top(self, name, typeflag, st, **kwargs):
        layer_diff.TarWriter.entry(self, name, typeflag, st, **kwargs)


class _Walker(layer_diff.Walker):
    """diff.py's fd walk, skipping the mounts of virtual filesystems (a running container's
    /proc, /sys, /dev/pts … as its process sees them)."""

    def __init__(self, writer, skip_devs: set[int]):
        super().__init__(writer, whiteouts=False, lower_fds=[])
        self.skip_devs = skip_devs

    def _entry(self, dir_fd, prefix, parts, name):
        if self.skip_devs:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if st.st_dev in self.skip_devs:
                return None
        return super()._entry(dir_fd, prefix, parts, name)


def virtual_devs(pid: int) -> set[int]:
    """st_dev of the virtual filesystems mounted in the mount namespace of `pid`."""
    devs = set()
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                try:
                    sep = fields.index("-")
                except ValueError:
                    continue
                if fields[sep + 1] in _VIRTUAL_FS:
                    major, minor = fields[2].split(":")
                    devs.add(os.makedev(int(major), int(minor)))
    except OSError:
        pass
    return devs


def locate(root_fd: int, path: str, container: str) -> tuple[dict, _Located]:
    """The PathStat of `path` and the pinned location write_archive tars (the caller closes
    it): what the stat header describes is what is archived, whatever the container renames
    meanwhile."""
    found = _locate(root_fd, path, container)
    try:
        return _path_stat(root_fd, path, found.st), found
    except BaseException:
        found.close()
        raise


def write_archive(found: _Located, path: str, out, *, skip_devs: set[int] = frozenset()) -> None:
    """Tar what `locate` found at `path` onto `out` (a binary writable), entries named after the
    path's last component as requested (moby containerArchivePath's rebase). A symlink is
    archived as the link (the CLI asks for its target itself with `cp -L`)."""
    base = _base_name(path)
    if base == "/":
        base = "."
    writer = _RebasedWriter(out, base)
    try:
        st = found.st
        if stat.S_ISDIR(st.st_mode):
            if found.name is None:
                fd = open_in_root(found.parent, ".", os.O_RDONLY | os.O_DIRECTORY)
            else:
                fd = os.open(found.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=found.parent)
            try:
                writer.top(base.rstrip("/") + "/", layer_apply.DIR, os.fstat(fd))
                _Walker(writer, set(skip_devs)).walk(fd)
            finally:
                os.close(fd)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(found.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=found.parent)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise InvalidArgument(f"{path} changed while it was archived")
                writer.top(base, layer_apply.REG, st, data_fd=fd)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(st.st_mode):
            writer.top(base, layer_apply.SYMLINK, st, linkname=os.readlink(found.name, dir_fd=found.parent))
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            writer.top(base, layer_apply.CHR if stat.S_ISCHR(st.st_mode) else layer_apply.BLK, st)
        elif stat.S_ISFIFO(st.st_mode):
            writer.top(base, layer_apply.FIFO, st)
        else:
            raise InvalidArgument(f"{path}: a socket cannot be archived")
        writer.finish()
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InvalidArgument(f"{path} changed while it was archived") from None
        raise SystemFailure(f"archiving {path}: {e.strerror}") from None


# -- PUT archive --------------------------------------------------------------------------------------

_MAGIC = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}


def decompressed(reader):
    """The uncompressed tar of an upload: plain, gzip, zstd (images/compression.py), bzip2 or xz
    (the standard library) — never an external program (GHSA-x86f-5xw2-fm2r)."""
    head = b""
    while len(head) < 6:
        data = reader.read(6 - len(head))
        if not data:
            break
        head += data
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return _Decompressing(reader, head, bz2.BZ2Decompressor() if kind == "bzip2"
                                  else lzma.LZMADecompressor(format=lzma.FORMAT_XZ), kind)
    return compression.decompressed(_Prefixed(reader, head), what="archive")


class _Prefixed:
    def __init__(self, reader, head: bytes):
        self.reader, self.head = reader, head

    def read(self, n: int = -1) -> bytes:
        if self.head:
            data, self.head = self.head, b""
            return data
        return self.reader.read(n)


class _Decompressing:
    """bzip2 / xz, output bounded per read."""

    def __init__(self, reader, head: bytes, dec, kind: str):
        self.reader, self.pending, self.dec, self.kind = reader, head, dec, kind

    def read(self, n: int = -1) -> bytes:
        n = _CHUNK if n is None or n < 0 else n
        while True:
            try:
                if not self.dec.needs_input:
                    out = self.dec.decompress(b"", n)
                elif self.pending or not self.dec.eof:
                    data = self.pending or self.reader.read(_CHUNK)
                    self.pending = b""
                    if not data:
                        if self.dec.eof:
                            return b""
                        raise InvalidArgument(f"invalid archive: truncated {self.kind} data")
                    out = self.dec.decompress(data, n)
                else:
                    return b""
            except (OSError, lzma.LZMAError, EOFError) as e:
                raise InvalidArgument(f"invalid archive: bad {self.kind} data: {e}") from None
            if out or self.dec.eof:
                return out


@dataclass
class ExtractOptions:
    no_overwrite_dir_non_dir: bool = False
    owner: tuple[int, int] | None = None   # chown every entry (copyUIDGID with a User)


def extract(root_fd: int, path: str, container: str, body, spool_dir: str,
            options: ExtractOptions | None = None) -> None:
    """Extract the tar `body` (a readable, maybe compressed) into the directory `path` of the
    root, as moby's extractToDir does: the path must exist and be a directory; entry names are
    relative to it and may not climb out of it; with `no_overwrite_dir_non_dir`, an entry may
    not replace a directory by a non-directory or the reverse."""
    options = options or ExtractOptions()
    dest = _extraction_dir(root_fd, path, container)
    os.makedirs(spool_dir, mode=0o700, exist_ok=True)
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        _rebase(root_fd, decompressed(body), dest, spool, options)
        spool.seek(0)
        layer_apply.apply_layer(spool, f"/proc/self/fd/{root_fd}", whiteouts="delete")


def _extraction_dir(root_fd: int, path: str, container: str) -> str:
    """The extraction directory as a path in the root, every symlink resolved in the root."""
    try:
        fd = open_in_root(root_fd, path, O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Could not find the file {path} in container {container}") from None
    except OSError as e:
        raise InvalidArgument(f"{path}: {e.strerror}") from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise InvalidArgument("extraction point is not a directory")
    finally:
        os.close(fd)
    return resolve_link(root_fd, path)


def _rebase(root_fd: int, src, dest: str, out, options: ExtractOptions) -> None:
    """Copy the tar `src` to `out` with every name under `dest` (tarfile only parses and writes
    headers here; images/apply.py applies), checking each entry on the way."""
    dest_parts = tuple(p for p in dest.split("/") if p)
    try:
        tin = tarfile.open(fileobj=src, mode="r|")
    except tarfile.ReadError as e:
        raise InvalidArgument(f"invalid archive: {e}") from None
    tout = tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT)
    try:
        for member in tin:
            name = member.name
            try:
                parts = layer_apply.clean(name)
            except InvalidArgument:
                raise InvalidArgument(f"invalid archive entry {name!r}: its path climbs out of "
                                      f"the extraction directory {dest}") from None
            if any(p.startswith(layer_apply.WHITEOUT_PREFIX) for p in parts):
                raise InvalidArgument(f"invalid archive entry {name!r}: names starting with "
                                      f"{layer_apply.WHITEOUT_PREFIX!r} are reserved for layer whiteouts")
            if not parts:
                if not member.isdir():
                    raise InvalidArgument(f"invalid archive entry {name!r}: not a directory")
                continue   # the extraction directory itself: left as it is
            if options.no_overwrite_dir_non_dir:
                _check_overwrite(root_fd, dest_parts + parts, member, name)
            member.name = "/".join(dest_parts + parts)
            if member.islnk():
                try:
                    target = layer_apply.clean(member.linkname)
                except InvalidArgument:
                    raise InvalidArgument(f"invalid archive entry {name!r}: hardlink target "
                                          f"{member.linkname!r} is outside the archive") from None
                member.linkname = "/".join(dest_parts + target)
            if options.owner is not None:
                member.uid, member.gid = options.owner
            member.uname = member.gname = ""
            member.pax_headers = {k: v for k, v in member.pax_headers.items()
                                  if k.startswith("SCHILY.xattr.")}
            if member.type in (tarfile.GNUTYPE_SPARSE, tarfile.CONTTYPE):
                member.type = tarfile.REGTYPE
            data = tin.extractfile(member) if member.isreg() else None
            tout.addfile(member, data)
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid archive: {e}") from None
    finally:
        tout.close()
        tin.close()


def _check_overwrite(root_fd: int, parts: tuple[str, ...], member: tarfile.TarInfo, name: str) -> None:
    try:
        parent = open_in_root(root_fd, "/" + "/".join(parts[:-1]), O_PATH | os.O_DIRECTORY)
    except OSError:
        return   # the parent does not exist (yet): nothing to overwrite
    try:
        st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    except OSError:
        return
    finally:
        os.close(parent)
    if stat.S_ISDIR(st.st_mode) and not member.isdir():
        raise InvalidArgument(f'cannot overwrite directory "/{"/".join(parts)}" with non-directory "{name}"')
    if not stat.S_ISDIR(st.st_mode) and member.isdir():
        raise InvalidArgument(f'cannot overwrite non-directory "/{"/".join(parts)}" with directory "{name}"')


def lookup_user(root_fd: int, user: str) -> tuple[int, int]:
    """uid and gid of a container's Config.User ("name|uid[:group|gid]") from the container's
    own /etc/passwd and /etc/group, read through the root (no NSS: CVE-2019-14271)."""
    name, _, group = user.partition(":")

    def table(path: str) -> list[list[str]]:
        try:
            fd = open_in_root(root_fd, path, os.O_RDONLY)
        except OSError:
            return []
        with os.fdopen(fd, "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
        return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]

    uid = gid = None
    if name.isdigit():
        uid = int(name)
    for row in table("/etc/passwd"):
        if len(row) >= 4 and (row[0] == name or (uid is not None and row[2] == str(uid))):
            with contextlib.suppress(ValueError):
                uid, gid = int(row[2]), int(row[3])
            break
    if uid is None:
        raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for row in table("/etc/group"):
                if len(row) >= 3 and row[0] == group:
                    gid = int(row[2])
                    break
            else:
                raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
    return uid, gid if gid is not None else uid


# -- changes ------------------------------------------------------------------------------------------

def overlay_dirs(mounts) -> tuple[str, list[str]]:
    """(upperdir, lowerdirs nearest first) of a container snapshot's mounts; a snapshot with
    no parent is a bind of its directory (every file in it is added)."""
    for m in mounts:
        if m.type == "overlay":
            upper, lowers = "", []
            for o in m.options:
                if o.startswith("upperdir="):
                    upper = o[len("upperdir="):]
                elif o.startswith("lowerdir="):
                    lowers = o[len("lowerdir="):].split(":")
            if upper:
                return upper, lowers
        elif m.type == "bind":
            return m.source, []
    raise SystemFailure("the container's snapshot has no writable layer")


def changes(upper: str, lowers: list[str]) -> list[dict]:
    """FilesystemChange list of an overlay upperdir over its lowers, in walk order (moby's
    archive.Changes for overlay): a 0:0 character device is a deletion; a name a lower shows
    is a modification (a directory only if its mode, size or mtime differ), else an addition;
    an opaque directory a lower had is a deletion (its contents additions); the parent of an
    addition or deletion is modified."""
    lower_fds = []
    try:
        for lower in lowers:
            with contextlib.suppress(OSError):
                lower_fds.append(os.open(lower, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        up = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        for fd in lower_fds:
            os.close(fd)
        raise SystemFailure(f"reading the container's changes: {e.strerror}") from None
    out: list[dict] = []
    changed_dirs: set[str] = set()
    try:
        stack = [(up, "", iter(sorted(os.listdir(up), key=os.fsencode)))]
        while stack:
            dfd, prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                os.close(dfd)
                continue
            path = prefix + "/" + name
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                kind = DELETED
            else:
                below = _lower_stat(lower_fds, path)
                if is_dir and below is not None and _opaque(dfd, name):
                    kind = DELETED
                elif below is None:
                    kind = ADDED
                elif (is_dir and stat.S_ISDIR(below.st_mode) and below.st_size == st.st_size
                      and below.st_mode == st.st_mode and below.st_mtime_ns == st.st_mtime_ns):
                    kind = None
                else:
                    kind = MODIFIED
            if is_dir:
                changed_dirs.add(path)
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                stack.append((sub, path, iter(sorted(os.listdir(sub), key=os.fsencode))))
            if kind is None:
                continue
            if kind in (ADDED, DELETED) and prefix and prefix not in changed_dirs:
                out.append({"Path": prefix, "Kind": MODIFIED})
                changed_dirs.add(prefix)
            out.append({"Path": path, "Kind": kind})
    except OSError as e:
        raise SystemFailure(f"reading the container's changes: {e.strerror}") from None
    finally:
        for dfd, *_ in stack:
            with contextlib.suppress(OSError):
                os.close(dfd)
        for fd in lower_fds:
            os.close(fd)
    return out


def _opaque(dfd: int, name: str) -> bool:
    try:
        return os.getxattr(f"/proc/self/fd/{dfd}/{name}", layer_apply.OVERLAY_OPAQUE_XATTR,
                           follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lower_stat(lower_fds: list[int], path: str) -> os.stat_result | None:
    """What the merged lowers show at `path`: the nearest lower having it, unless a lower above
    hides it (a whiteout or a non-directory on the way, or an opaque directory whose own
    contents are all that shows). Walked through real directories only."""
    parts = [p for p in path.split("/") if p]
    for fd in lower_fds:
        found, stop = _walk_lower(fd, parts)
        if found is not None or stop:
            return found
    return None


def _walk_lower(fd: int, parts: list[str]) -> tuple[os.stat_result | None, bool]:
    """(what this lower has at parts, whether lowers below are hidden from that path)."""
    cur = os.dup(fd)
    try:
        for i, name in enumerate(parts):
            try:
                st = os.stat(name, dir_fd=cur, follow_symlinks=False)
            except OSError:
                return None, False
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None, True
            if i == len(parts) - 1:
                return st, True
            if not stat.S_ISDIR(st.st_mode):
                return None, True
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            os.close(cur)
            cur = nxt
            if _opaque_fd(cur):
                found, _ = _walk_lower(cur, parts[i + 1:])
                return found, True
        return None, False
    finally:
        os.close(cur)


def _opaque_fd(fd: int) -> bool:
    try:
        return os.getxattr(fd, layer_apply.OVERLAY_OPAQUE_XATTR) == b"y"
    except OSError:
        return False


# -- the container's root -----------------------------------------------------------------------------

class Root:
    """An fd on a container's root directory (`fd`), from its running init or its snapshot
    mounted on a private directory; `close()` lets go of it (unmounting what was mounted).
    `pid` is the init's for a running container (0 otherwise)."""

    def __init__(self, fd: int, pid: int = 0, mountpoint: str = ""):
        self.fd, self.pid, self.mountpoint = fd, pid, mountpoint

    @classmethod
    def of_process(cls, pid: int, cid: str) -> "Root":
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise _NotRunning() from None
        try:
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    if cid not in f.read():
                        raise _NotRunning()
                fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                raise _NotRunning() from None
            try:
                signal.pidfd_send_signal(pidfd, 0)   # still the process we checked
            except ProcessLookupError:
                os.close(fd)
                raise _NotRunning() from None
            return cls(fd, pid)
        finally:
            os.close(pidfd)

    @classmethod
    def of_snapshot(cls, mounts, scratch_dir: str, *, writable: bool) -> "Root":
        os.makedirs(scratch_dir, mode=0o700, exist_ok=True)
        target = tempfile.mkdtemp(prefix="fs-", dir=scratch_dir)
        try:
            csnapshots.mount_all(list(mounts) if writable else csnapshots.read_only_mounts(mounts), target)
        except DockyardError:
            os.rmdir(target)
            raise
        try:
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            with contextlib.suppress(DockyardError):
                csnapshots.unmount_all(target)
            os.rmdir(target)
            raise SystemFailure(f"opening the container's root: {e.strerror}") from None
        return cls(fd, 0, target)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.mountpoint:
            try:
                csnapshots.unmount_all(self.mountpoint)
            finally:
                with contextlib.suppress(OSError):
                    os.rmdir(self.mountpoint)
                self.mountpoint = ""


class _NotRunning(Exception):
    """The init is gone (or was never the container's): use the snapshot."""
