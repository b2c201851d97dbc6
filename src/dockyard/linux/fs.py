"""Root-scoped path resolution: paths inside a container root are resolved by the kernel as if
that root were "/" (openat2 RESOLVE_IN_ROOT), never by string joins on the host."""

import ctypes
import errno
import os
import stat

from .libc import SYS_openat2, libc

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

O_PATH = os.O_PATH


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = libc.syscall(SYS_openat2, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def open_in_root(root_fd: int, path: str, flags: int = O_PATH, mode: int = 0) -> int:
    """Open `path` (absolute or relative) inside the tree whose root is `root_fd`."""
    return openat2(root_fd, path.lstrip("/") or ".", flags, mode,
                   RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def make_in_root(root_fd: int, path: str, *, directory: bool, mode: int = 0o755) -> int:
    """Create `path` inside the root (parents as directories, the leaf as a directory or an
    empty file) unless it exists, and return an O_PATH fd on it. Symlinks on the way are
    followed as if `root_fd` were "/" — a dangling one gets its target created, inside the
    root — so nothing is ever created outside it."""
    return _make(root_fd, path, directory, mode, links=40)


def _make(root_fd: int, path: str, directory: bool, mode: int, links: int) -> int:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for i, name in enumerate(parts):
        leaf = i == len(parts) - 1
        sub = "/" + "/".join(parts[: i + 1])
        try:
            fd = open_in_root(root_fd, sub)
        except FileNotFoundError:
            parent = open_in_root(root_fd, "/" + "/".join(parts[:i]))
            try:
                target = _dangling_link(parent, name)
                if target is not None:
                    if links == 0:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), sub) from None
                    base = target if target.startswith("/") else "/" + "/".join(parts[:i]) + "/" + target
                    os.close(_make(root_fd, base, directory or not leaf, mode, links - 1))
                elif leaf and not directory:
                    os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o644, dir_fd=parent))
                else:
                    try:
                        os.mkdir(name, mode, dir_fd=parent)
                    except FileExistsError:
                        pass
            finally:
                os.close(parent)
            fd = open_in_root(root_fd, sub)
        if leaf:
            return fd
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        os.close(fd)
        if not is_dir:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), sub)
    return os.dup(root_fd)


def _dangling_link(dir_fd: int, name: str) -> str | None:
    try:
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            return os.readlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    return None


def fd_path(fd: int) -> str:
    """The magic-link path through which a pinned fd can be used as a mount target."""
    return f"/proc/self/fd/{fd}"
