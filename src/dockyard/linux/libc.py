"""The libc handle and the raw-syscall helper shared by the other linux modules."""

import ctypes
import os

libc = ctypes.CDLL("libc.so.6", use_errno=True)

# x86_64 syscall numbers for calls glibc 2.36 has no wrapper for.
SYS_pivot_root = 155
SYS_seccomp = 317
SYS_close_range = 436
SYS_openat2 = 437
SYS_pidfd_send_signal = 424
SYS_mount_setattr = 442


def check(result: int, what: str = "") -> int:
    """Raise OSError from errno when a libc call returned -1."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}" if what else os.strerror(err))
    return result


def syscall(number: int, *args, what: str = "") -> int:
    return check(libc.syscall(ctypes.c_long(number), *args), what)
