"""OCI `linux.seccomp` (config-linux.md §Seccomp) to a loadable filter, as runc builds it.

`compile` validates the spec, builds the filter with libseccomp and caches the exported BPF on
disk: libseccomp takes tens of milliseconds on Docker's default profile, a cache read takes
microseconds. The result is plain data, computed in the parent before fork; the child only calls
`dockyard.linux.seccomp.install` right before execve.

Every runtime verb is a fresh interpreter, so this module imports at the top only what
`compile` needs on a cache hit; the rest (tempfile on a miss, socket for a notify listener, re
for Docker profiles) is imported where it is used. This is the parent's side only: the child's
`install` lives in `dockyard.linux.seccomp`, which must not import lazily.
"""

import errno
import json
import os

from dockyard import atomicfile
from dockyard.errors import InvalidArgument, Unsupported
from dockyard.linux import seccomp as kernel
from dockyard.linux.seccomp import CompiledFilter
from dockyard.runtime import log

ACTIONS = {
    "SCMP_ACT_KILL": kernel.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": kernel.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": kernel.ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": kernel.ACT_TRAP,
    "SCMP_ACT_ERRNO": kernel.ACT_ERRNO,
    "SCMP_ACT_TRACE": kernel.ACT_TRACE,
    "SCMP_ACT_ALLOW": kernel.ACT_ALLOW,
    "SCMP_ACT_LOG": kernel.ACT_LOG,
    "SCMP_ACT_NOTIFY": kernel.ACT_NOTIFY,
}

OPERATORS = {
    "SCMP_CMP_NE": kernel.CMP_NE,
    "SCMP_CMP_LT": kernel.CMP_LT,
    "SCMP_CMP_LE": kernel.CMP_LE,
    "SCMP_CMP_EQ": kernel.CMP_EQ,
    "SCMP_CMP_GE": kernel.CMP_GE,
    "SCMP_CMP_GT": kernel.CMP_GT,
    "SCMP_CMP_MASKED_EQ": kernel.CMP_MASKED_EQ,
}

# OCI arch names to libseccomp's own names (seccomp_arch_resolve_name).
ARCHES = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
}

FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": kernel.FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": kernel.FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": kernel.FILTER_FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": kernel.FILTER_FLAG_WAIT_KILLABLE_RECV,
}

# Bump when the way a spec becomes BPF changes, so old cache entries stop matching.
_CACHE_FORMAT = 1
_MAX_ARGS = 6
_U64 = 2**64 - 1


class _Rule:
    __slots__ = ("name", "action", "condition_sets")

    def __init__(self, name: str, action: int, condition_sets: list[list[tuple[int, int, int, int]]]):
        self.name = name
        self.action = action
        # Each inner list is one libseccomp rule; its conditions are ANDed, the rules are ORed.
        self.condition_sets = condition_sets


class _Plan:
    __slots__ = ("default_action", "arches", "flags", "notify", "rules")

    def __init__(self, default_action: int, arches: list[str], flags: int, notify: bool,
                 rules: list[_Rule]):
        self.default_action = default_action
        self.arches = arches
        self.flags = flags
        self.notify = notify
        self.rules = rules


def compile(spec: dict, cache_dir: str | os.PathLike | None = None) -> CompiledFilter:
    """Validate an OCI `linux.seccomp` object and compile it, reusing `cache_dir` if given."""
    plan = _parse(spec)
    if cache_dir is None:
        program = _build(plan)
    else:
        path = os.path.join(os.fspath(cache_dir), f"{_cache_key(spec)}.bpf")
        program = _read_cached(path)
        if program is None:
            program = _build(plan)
            try:
                _write_atomic(path, program)
            except OSError as e:  # the cache only saves time; a full disk must not stop a start
                log.warning(f"seccomp cache write failed: path={path} error={e}")
    return CompiledFilter(program=program, flags=plan.flags, notify=plan.notify)


def _parse(spec: dict) -> _Plan:
    if not isinstance(spec, dict):
        raise InvalidArgument("seccomp: linux.seccomp must be an object")
    default_action = _action(spec.get("defaultAction"), spec.get("defaultErrnoRet"),
                             "defaultAction")
    if default_action == kernel.ACT_NOTIFY:
        # The runtime itself would block on its first notified call before handing the fd on.
        raise InvalidArgument("seccomp: SCMP_ACT_NOTIFY cannot be the default action")

    arches = []
    for name in _list(spec, "architectures"):
        if name not in ARCHES:
            raise InvalidArgument(f"seccomp: unknown architecture {name!r}")
        arches.append(ARCHES[name])

    flags = 0
    for name in _list(spec, "flags"):
        if name not in FLAGS:
            raise InvalidArgument(f"seccomp: unknown flag {name!r}")
        flags |= FLAGS[name]
    for key in ("listenerPath", "listenerMetadata"):
        if not isinstance(spec.get(key, ""), str):
            raise InvalidArgument(f"seccomp: {key} must be a string")

    rules = []
    for i, entry in enumerate(_list(spec, "syscalls")):
        where = f"syscalls[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"seccomp: {where} must be an object")
        names = entry.get("names")
        if not isinstance(names, list) or not names or \
                not all(isinstance(n, str) and n for n in names):
            raise InvalidArgument(f"seccomp: {where}.names must be a non-empty list of names")
        action = _action(entry.get("action"), entry.get("errnoRet"), f"{where}.action")
        condition_sets = _condition_sets(entry.get("args") or [], where)
        if action == kernel.ACT_NOTIFY and "write" in names:
            # As runc: the runtime itself still writes after install, to hand the fd on.
            raise InvalidArgument("seccomp: SCMP_ACT_NOTIFY cannot be used for write")
        if action == default_action:
            continue  # redundant, and libseccomp refuses it
        rules.extend(_Rule(name, action, condition_sets) for name in names)

    notify = any(rule.action == kernel.ACT_NOTIFY for rule in rules)
    if notify:
        if not spec.get("listenerPath"):
            raise InvalidArgument("seccomp: SCMP_ACT_NOTIFY needs listenerPath")
        flags |= kernel.FILTER_FLAG_NEW_LISTENER
        if flags & kernel.FILTER_FLAG_TSYNC:
            # TSYNC with a listener must report a failed sync as ESRCH (seccomp(2)).
            flags |= kernel.FILTER_FLAG_TSYNC_ESRCH
    else:
        # It only changes how a listener waits; the kernel refuses it without one.
        flags &= ~kernel.FILTER_FLAG_WAIT_KILLABLE_RECV
    return _Plan(default_action, arches, flags, notify, rules)


def _list(obj: dict, key: str) -> list:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise InvalidArgument(f"seccomp: {key} must be a list")
    return value


def _uint(value, limit: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise InvalidArgument(f"seccomp: {where} must be an integer in 0..{limit}")
    return value


def _action(name, errno_ret, where: str) -> int:
    if name not in ACTIONS:
        raise InvalidArgument(f"seccomp: unknown action {name!r} in {where}")
    action = ACTIONS[name]
    if action in (kernel.ACT_ERRNO, kernel.ACT_TRACE):
        # runc's default for both is EPERM; errnoRet on other actions is ignored, as runc does.
        ret = errno.EPERM if errno_ret is None else _uint(errno_ret, 0xFFFF, f"{where} errnoRet")
        action |= ret
    return action


def _condition_sets(args: list, where: str) -> list[list[tuple[int, int, int, int]]]:
    if not isinstance(args, list):
        raise InvalidArgument(f"seccomp: {where}.args must be a list")
    conditions = []
    for j, arg in enumerate(args):
        at = f"{where}.args[{j}]"
        if not isinstance(arg, dict):
            raise InvalidArgument(f"seccomp: {at} must be an object")
        op = arg.get("op")
        if op not in OPERATORS:
            raise InvalidArgument(f"seccomp: unknown operator {op!r} in {at}")
        conditions.append((_uint(arg.get("index"), _MAX_ARGS - 1, f"{at}.index"),
                           OPERATORS[op],
                           _uint(arg.get("value", 0), _U64, f"{at}.value"),
                           _uint(arg.get("valueTwo", 0), _U64, f"{at}.valueTwo")))
    if not conditions:
        return [[]]
    indexes = [c[0] for c in conditions]
    if len(set(indexes)) < len(indexes):
        # libseccomp refuses two conditions on one argument in a rule; like runc, fall back to
        # one rule per condition (so they are ORed, not ANDed).
        return [[c] for c in conditions]
    return [conditions]


def _build(plan: _Plan) -> bytes:
    try:
        with kernel.FilterBuilder(plan.default_action) as builder:
            for name in plan.arches:
                token = kernel.resolve_arch(name)
                if token is None:
                    raise Unsupported(f"seccomp: libseccomp {kernel.library_version()} "
                                      f"does not support architecture {name}")
                try:
                    builder.add_arch(token)
                except OSError as e:  # EDOM: endianness differs from the native arch
                    raise Unsupported(
                        f"seccomp: cannot add architecture {name}: {e.strerror}") from None
            if len(plan.rules) > 32:
                builder.optimize_tree()
            for rule in plan.rules:
                nr = kernel.resolve_syscall(rule.name)
                if nr is None:
                    continue  # newer than libseccomp: profiles for newer kernels still load
                for conditions in rule.condition_sets:
                    try:
                        builder.add_rule(rule.action, nr, conditions)
                    except OSError as e:
                        raise InvalidArgument(
                            f"seccomp: rule for {rule.name}: {e.strerror}") from None
            return builder.export_bpf()
    except OSError as e:  # libseccomp missing, or refusing the filter as a whole
        raise Unsupported(f"seccomp: {e}") from None


def _cache_key(spec: dict) -> str:
    # os.uname().machine is what platform.machine() returns on Linux, without importing platform.
    canonical = json.dumps({"format": _CACHE_FORMAT, "libseccomp": kernel.library_version(),
                            "machine": os.uname().machine, "spec": spec},
                           sort_keys=True, separators=(",", ":"))
    return _sha256(canonical.encode()).hexdigest()


def _sha256(data: bytes):
    """hashlib.sha256, preferring CPython's built-in implementation: importing hashlib loads
    OpenSSL, which costs milliseconds on every `create` and `exec`; the digest is the same."""
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def _read_cached(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            program = f.read()
    except OSError:  # absent or unreadable: a miss, never a failure
        return None
    # A torn or foreign file is a miss too; the caller rewrites it.
    return program if kernel.valid_program(program) else None


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    atomicfile.write(path, data, 0o600)


def send_listener(listener_path: str, fd: int, state: dict, metadata: str = "") -> None:
    """Hand the notify fd to the seccomp agent at listenerPath, with the container process
    state (config-linux.md §The Container Process State) in the same message."""
    message = {"ociVersion": state["ociVersion"], "fds": ["seccompFd"], "pid": state["pid"],
               "state": state}
    if metadata:
        message["metadata"] = metadata
    import socket  # only a filter with SCMP_ACT_NOTIFY gets here

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(listener_path)
        socket.send_fds(sock, [json.dumps(message).encode()], [fd])


def features() -> dict:
    """The `linux.seccomp` part of `runc features` (features-linux.md)."""
    try:
        archs = sorted(oci for oci, name in ARCHES.items() if kernel.resolve_arch(name))
    except OSError:
        return {"enabled": False}
    return {
        "enabled": True,
        "actions": sorted(ACTIONS),
        "operators": sorted(OPERATORS),
        "archs": archs,
        "knownFlags": list(FLAGS),
        "supportedFlags": [name for name, flag in FLAGS.items()
                           if kernel.flags_supported(_probe_flags(flag))],
    }


def _probe_flags(flag: int) -> int:
    # WAIT_KILLABLE_RECV is only valid next to NEW_LISTENER.
    if flag == kernel.FILTER_FLAG_WAIT_KILLABLE_RECV:
        return flag | kernel.FILTER_FLAG_NEW_LISTENER
    return flag


# Docker's profile format (moby profiles/seccomp) names architectures the Go way.
_DOCKER_ARCH = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "i386": ("386", "SCMP_ARCH_X86"),
    "i686": ("386", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}


def docker_profile_to_oci(profile: dict, capabilities: list[str], arch: str = "x86_64",
                          kernel_release: str | None = None) -> dict:
    """Turn a Docker seccomp profile into the OCI `linux.seccomp` for one container, as dockerd
    does: keep the archMap entry of `arch` (uname -m), and each syscall group whose
    includes/excludes (caps, arches, minKernel) match the container's capabilities, the arch and
    the kernel (`kernel_release`, default the running one)."""
    if arch not in _DOCKER_ARCH:
        raise InvalidArgument(f"seccomp: unsupported architecture {arch!r}")
    go_arch, native = _DOCKER_ARCH[arch]
    kernel_version = _kernel_version(kernel_release or os.uname().release)
    caps = set(capabilities)

    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument("seccomp: profile sets both architectures and archMap")
    arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches += [entry["architecture"], *entry.get("subArchitectures", [])]

    oci = {"defaultAction": profile.get("defaultAction"), "architectures": arches}
    for key in ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if key in profile:
            oci[key] = profile[key]

    syscalls = []
    for i, call in enumerate(profile.get("syscalls") or []):
        if call.get("name") and call.get("names"):
            raise InvalidArgument(f"seccomp: syscalls[{i}] sets both name and names")
        includes = call.get("includes") or {}
        excludes = call.get("excludes") or {}
        if go_arch in excludes.get("arches", []) or caps & set(excludes.get("caps", [])):
            continue
        if "minKernel" in excludes and kernel_version >= _kernel_version(excludes["minKernel"]):
            continue
        if includes.get("arches") and go_arch not in includes["arches"]:
            continue
        if not caps.issuperset(includes.get("caps", [])):
            continue
        if "minKernel" in includes and kernel_version < _kernel_version(includes["minKernel"]):
            continue
        rule = {"names": call.get("names") or [call.get("name")], "action": call.get("action")}
        for key in ("errnoRet", "args"):
            if call.get(key) is not None:
                rule[key] = call[key]
        syscalls.append(rule)
    oci["syscalls"] = syscalls
    return oci


def _kernel_version(release: str) -> tuple[int, int]:
    import re  # Docker profiles are converted by the engine, not on the runtime's path

    match = re.match(r"(\d+)\.(\d+)", release)
    if not match:
        raise InvalidArgument(f"seccomp: cannot parse kernel version {release!r}")
    return int(match[1]), int(match[2])
