"""The session keyring: each container gets one of its own, so keys are not shared with the
host's session or with other containers (runc does this unless --no-new-keyring)."""

import ctypes

from .libc import check, libc

SYS_keyctl = 250
KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> int:
    """Create and join a new session keyring called `name`; returns its serial."""
    return check(libc.syscall(ctypes.c_long(SYS_keyctl), KEYCTL_JOIN_SESSION_KEYRING,
                              ctypes.c_char_p(name.encode())), "keyctl(JOIN_SESSION_KEYRING)")
