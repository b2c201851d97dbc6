"""seccomp: libseccomp (through ctypes) to compile filters, seccomp(2) to load them.

Compiling and loading are split on purpose. The runtime compiles in the parent with libseccomp
and exports the classic-BPF program; the container-side child only calls seccomp(2) with those
bytes, so it needs neither libseccomp state nor any allocation beyond one small struct.

`install` runs in the container's init after pivot_root, where nothing may be imported any more
(the host's files are gone): everything it needs is imported here, at module import. Nothing
else is: no dataclasses or functools, which would cost more than the rest of the module.
"""

import collections
import ctypes
import errno
import os

from .libc import SYS_seccomp, libc, syscall

# seccomp(2) operations and SECCOMP_SET_MODE_FILTER flags (linux/seccomp.h).
SECCOMP_SET_MODE_FILTER = 1
FILTER_FLAG_TSYNC = 1 << 0
FILTER_FLAG_LOG = 1 << 1
FILTER_FLAG_SPEC_ALLOW = 1 << 2
FILTER_FLAG_NEW_LISTENER = 1 << 3
FILTER_FLAG_TSYNC_ESRCH = 1 << 4
FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

# Filter return actions (seccomp.h); ERRNO and TRACE carry a 16-bit datum.
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_NOTIFY = 0x7FC00000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000

# enum scmp_compare
CMP_NE, CMP_LT, CMP_LE, CMP_EQ, CMP_GE, CMP_GT, CMP_MASKED_EQ = range(1, 8)

# enum scmp_filter_attr
_FLTATR_CTL_NNP = 3
_FLTATR_CTL_OPTIMIZE = 8

_NR_SCMP_ERROR = -1
_SOCK_FILTER_SIZE = 8  # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
BPF_MAXINSNS = 4096


class CompiledFilter(collections.namedtuple("CompiledFilter", "program flags notify")):
    """A ready-to-load filter: plain, immutable data, so it is computed before fork and
    pickles cleanly. program: raw struct sock_filter array; flags: SECCOMP_FILTER_FLAG_* for
    seccomp(2); notify: uses SCMP_ACT_NOTIFY, so install() returns a listener fd."""

    __slots__ = ()


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libseccomp = None


def _lib() -> ctypes.CDLL:
    # Loaded on first use: only the compiling side needs it, and a host without libseccomp
    # should fail at compile time, not at import.
    global _libseccomp
    if _libseccomp is not None:
        return _libseccomp
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.restype = None
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    _libseccomp = lib
    return lib


def _check(rc: int, what: str) -> None:
    # libseccomp returns -errno rather than setting errno.
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")


def library_version() -> str:
    v = _lib().seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def resolve_arch(name: str) -> int | None:
    """libseccomp's token for an arch name such as "x86_64", or None if it has none."""
    return _lib().seccomp_arch_resolve_name(name.encode()) or None


def resolve_syscall(name: str) -> int | None:
    """The native (or libseccomp pseudo) syscall number, or None if libseccomp doesn't know it."""
    nr = _lib().seccomp_syscall_resolve_name(name.encode())
    return None if nr == _NR_SCMP_ERROR else nr


class FilterBuilder:
    """One libseccomp filter context; use as a context manager so it is always released."""

    def __init__(self, default_action: int):
        self._ctx = _lib().seccomp_init(default_action)
        if not self._ctx:
            raise OSError(errno.EINVAL, f"seccomp_init: invalid default action {default_action:#x}")
        try:
            # Loading never goes through libseccomp, but keep the context honest about NNP.
            self._set_attr(_FLTATR_CTL_NNP, 0)
        except OSError:
            _lib().seccomp_release(self._ctx)
            raise

    def __enter__(self) -> "FilterBuilder":
        return self

    def __exit__(self, *exc) -> None:
        _lib().seccomp_release(self._ctx)
        self._ctx = None

    def _set_attr(self, attr: int, value: int) -> None:
        _check(_lib().seccomp_attr_set(self._ctx, attr, value), "seccomp_attr_set")

    def optimize_tree(self) -> None:
        """Binary-tree dispatch: O(log n) per syscall instead of a scan of a long rule list."""
        self._set_attr(_FLTATR_CTL_OPTIMIZE, 2)

    def add_arch(self, token: int) -> None:
        rc = _lib().seccomp_arch_add(self._ctx, token)
        if rc != -errno.EEXIST:  # the native arch is present from seccomp_init
            _check(rc, "seccomp_arch_add")

    def add_rule(self, action: int, nr: int,
                 conditions: list[tuple[int, int, int, int]] = ()) -> None:
        """conditions: (arg index, CMP_*, datum_a, datum_b) all ANDed in one rule."""
        array = (_ArgCmp * len(conditions))(*[_ArgCmp(*c) for c in conditions])
        _check(_lib().seccomp_rule_add_array(self._ctx, action, nr, len(conditions), array),
               "seccomp_rule_add")

    def export_bpf(self) -> bytes:
        fd = os.memfd_create("dockyard-seccomp", os.MFD_CLOEXEC)
        try:
            _check(_lib().seccomp_export_bpf(self._ctx, fd), "seccomp_export_bpf")
            size = os.fstat(fd).st_size
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)


def valid_program(program: bytes) -> bool:
    n, rest = divmod(len(program), _SOCK_FILTER_SIZE)
    return rest == 0 and 0 < n <= BPF_MAXINSNS


def install(compiled: CompiledFilter) -> int | None:
    """Load the filter into the calling thread with seccomp(2).

    Needs NO_NEW_PRIVS or CAP_SYS_ADMIN. Returns the notification listener fd (close-on-exec)
    when the filter uses SCMP_ACT_NOTIFY, else None.
    """
    program = ctypes.create_string_buffer(compiled.program, len(compiled.program))
    fprog = _SockFprog(len(compiled.program) // _SOCK_FILTER_SIZE, ctypes.addressof(program))
    fd = syscall(SYS_seccomp, ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
                 ctypes.c_ulong(compiled.flags), ctypes.byref(fprog), what="seccomp")
    return fd if compiled.flags & FILTER_FLAG_NEW_LISTENER else None


def flags_supported(flags: int) -> bool:
    """Does the kernel accept these SECCOMP_SET_MODE_FILTER flags?

    The kernel validates flags before it reads the program, so a NULL program yields EFAULT
    for known flags and EINVAL for unknown ones, without installing anything.
    """
    rc = libc.syscall(ctypes.c_long(SYS_seccomp), ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
                      ctypes.c_ulong(flags), ctypes.c_void_p(None))
    return rc == -1 and ctypes.get_errno() == errno.EFAULT

