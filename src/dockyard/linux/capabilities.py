"""Process capabilities: capset(2), the bounding and ambient sets, and the name table.

The container init applies an OCI `process.capabilities` object (config.md §Linux process) in
two phases, as runc does: `drop_bounding` while still root, then the user change, then
`set_capabilities`. Unknown capability names and ones this kernel lacks are warnings, not
errors (runtime-spec), so both phases return the warnings for the caller to log."""

import ctypes

from . import prctl
from .libc import check, libc

# include/uapi/linux/capability.h, in bit order.
_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NUMBERS: dict[str, int] = {name: number for number, name in enumerate(_NAMES)}
NAMES: dict[int, str] = dict(enumerate(_NAMES))

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def parse(names: list[str]) -> tuple[set[int], list[str]]:
    """Map names to numbers; names unknown to us or above this kernel's last cap come back
    as the second item, for a warning (runtime-spec: they MUST NOT be an error)."""
    top = last_cap()
    known: set[int] = set()
    unknown: list[str] = []
    for name in names:
        number = NUMBERS.get(name)
        if number is None or number > top:
            unknown.append(name)
        else:
            known.add(number)
    return known, unknown


def _parse_sets(caps: dict | None) -> tuple[dict[str, set[int]], list[str]]:
    # A missing object means no capabilities at all, not "leave them as they are".
    caps = caps or {}
    sets: dict[str, set[int]] = {}
    unknown: list[str] = []
    for key in _SETS:
        sets[key], bad = parse(caps.get(key) or [])
        unknown += [name for name in bad if name not in unknown]
    warnings = [f"ignoring unknown or unavailable capabilities: {unknown}"] if unknown else []
    return sets, warnings


def _mask(numbers: set[int]) -> tuple[int, int]:
    bits = sum(1 << n for n in numbers)
    return bits & 0xFFFFFFFF, bits >> 32


def capset(effective: set[int], permitted: set[int], inheritable: set[int]) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for word, (e, p, i) in enumerate(zip(_mask(effective), _mask(permitted),
                                         _mask(inheritable))):
        data[word] = _CapData(e, p, i)
    check(libc.capset(ctypes.byref(header), data), "capset")


def drop_bounding(caps: dict | None) -> list[str]:
    """Phase one, while still root (PR_CAPBSET_DROP needs CAP_SETPCAP): drop every cap not
    in `bounding`, then set keepcaps so the permitted set survives the setuid to come."""
    sets, warnings = _parse_sets(caps)
    for number in range(last_cap() + 1):
        if number not in sets["bounding"]:
            prctl.prctl(prctl.PR_CAPBSET_DROP, number)
    prctl.set_keepcaps(True)
    return warnings


def set_capabilities(caps: dict | None) -> list[str]:
    """Phase two, after the user change: clear keepcaps (the container's own setuid must
    drop caps as usual), set effective/permitted/inheritable, then the ambient set."""
    sets, warnings = _parse_sets(caps)
    prctl.set_keepcaps(False)
    capset(sets["effective"], sets["permitted"], sets["inheritable"])
    prctl.prctl(prctl.PR_CAP_AMBIENT, prctl.PR_CAP_AMBIENT_CLEAR_ALL)
    for number in sorted(sets["ambient"]):
        # The kernel only raises an ambient cap that is permitted and inheritable; runc
        # warns and goes on, so a config that forgot one still starts.
        if number not in sets["permitted"] or number not in sets["inheritable"]:
            warnings.append(f"cannot raise ambient capability {NAMES[number]}: "
                            "not in the permitted and inheritable sets")
            continue
        try:
            prctl.prctl(prctl.PR_CAP_AMBIENT, prctl.PR_CAP_AMBIENT_RAISE, number)
        except OSError as e:
            warnings.append(f"cannot raise ambient capability {NAMES[number]}: {e.strerror}")
    return warnings


def current() -> dict[str, set[str]]:
    """This process's capability sets from /proc/self/status, by OCI set name; bits we
    have no name for show as their number."""
    fields = {"CapBnd": "bounding", "CapEff": "effective", "CapInh": "inheritable",
              "CapPrm": "permitted", "CapAmb": "ambient"}
    result: dict[str, set[str]] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in fields:
                bits = int(value.strip(), 16)
                result[fields[key]] = {NAMES.get(n, str(n))
                                       for n in range(64) if bits >> n & 1}
    return result
