"""Resource limits of the container process (config.md §POSIX process `rlimits`), set with
prlimit(2) by the runtime on the init pid before the init execs the user process."""

import ctypes
import os

from ..errors import InvalidArgument, SystemFailure
from .libc import libc

# include/uapi/asm-generic/resource.h (x86_64).
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
RLIM_INFINITY = 2**64 - 1


class _Rlimit64(ctypes.Structure):
    _fields_ = [("soft", ctypes.c_uint64), ("hard", ctypes.c_uint64)]


def _validate(rlimits: list[dict]) -> list[tuple[str, int, int]]:
    checked = []
    seen = set()
    for entry in rlimits:
        kind, soft, hard = entry.get("type"), entry.get("soft"), entry.get("hard")
        if kind not in RLIMITS:
            raise InvalidArgument(f"unknown rlimit type {kind!r}")
        if kind in seen:
            raise InvalidArgument(f"duplicate rlimit type {kind}")
        seen.add(kind)
        for value in (soft, hard):
            if type(value) is not int or not 0 <= value <= RLIM_INFINITY:
                raise InvalidArgument(f"{kind}: limit {value!r} is not a uint64")
        if hard < soft:
            raise InvalidArgument(f"{kind}: soft limit {soft} is above hard limit {hard}")
        checked.append((kind, soft, hard))
    return checked


def apply(pid: int, rlimits: list[dict]) -> None:
    """Set every limit on `pid`; all entries are checked before the first one is set."""
    for kind, soft, hard in _validate(rlimits):
        new = _Rlimit64(soft, hard)
        if libc.prlimit64(pid, RLIMITS[kind], ctypes.byref(new), None) == -1:
            err = ctypes.get_errno()
            raise SystemFailure(f"cannot set {kind} to {soft}/{hard}: {os.strerror(err)}")
