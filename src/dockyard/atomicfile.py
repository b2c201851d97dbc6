"""Crash-safe file writes, the project's convention (DESIGN.md): a temporary file in the same
directory, fsync, rename over the target, fsync the directory. After a crash at any point the
target is either whole and new or as it was. Stdlib only: the shim uses it too."""

import os


def write(path: str, data: bytes, mode: int = 0o644) -> None:
    parent = os.path.dirname(path) or "."
    # Named after the target and the writer, so two writers never share a temporary file.
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
