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
    empty file) unless it exists, and return an O_PATH fd on it; symlinks on the way are
    followed as if `root_fd` were "/", so nothing is ever created outside it."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    fd = os.dup(root_fd)
    try:
        for i, name in enumerate(parts):
            leaf = i == len(parts) - 1
            sub = "/".join(parts[: i + 1])
            try:
                nfd = open_in_root(root_fd, sub)
            except FileNotFoundError:
                if leaf and not directory:
                    os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o644, dir_fd=fd))
                else:
                    try:
                        os.mkdir(name, mode, dir_fd=fd)
                    except FileExistsError:
                        pass
                nfd = open_in_root(root_fd, sub)
            os.close(fd)
            fd = nfd
            if not leaf and not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), sub)
        return fd
    except BaseException:
        os.close(fd)
        raise


def fd_path(fd: int) -> str:
    """The magic-link path through which a pinned fd can be used as a mount target."""
    return f"/proc/self/fd/{fd}"
