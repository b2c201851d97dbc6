"""File-descriptor hygiene: nothing of the host's may reach a container (CVE-2024-21626)."""

import os

from .libc import SYS_close_range, libc

CLOSE_RANGE_CLOEXEC = 1 << 2


def _close_range(first: int, flags: int) -> bool:
    return libc.syscall(SYS_close_range, first, 0xFFFFFFFF, flags) == 0


def cloexec_from(first: int) -> None:
    """Mark every fd >= first close-on-exec (they stay usable until execve)."""
    if _close_range(first, CLOSE_RANGE_CLOEXEC):
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def close_from(first: int) -> None:
    if not _close_range(first, 0):
        os.closerange(first, 1 << 20)
