"""Default runtime configurations: what `runc spec` writes, and the values Docker puts in every
container's spec. Pure data: `default_spec` returns a fresh dict to modify; the module-level
constants are shared, so copy them before changing anything."""

import os

OCI_VERSION = "1.2.0"

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# runtime-spec config-linux.md §Default Devices: the runtime creates these whatever the config
# says (plus /dev/console and /dev/ptmx, which are a bind and a symlink, not device nodes).
DEFAULT_DEVICES = tuple(
    {"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666,
     "uid": 0, "gid": 0}
    for path, major, minor in (
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    )
)

# moby daemon/pkg/oci/caps: the capabilities every Docker container gets unless told otherwise.
DOCKER_DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Docker 28 (moby daemon/pkg/oci/defaults.go). Docker also masks every existing
# /sys/devices/system/cpu/cpu<N>/thermal_throttle (GHSA-6fw5-f8r9-fgfm); that list depends on
# the host, so the engine adds it when it builds a spec.
DOCKER_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)

DOCKER_READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# runc libcontainer/specconv: the example spec's lists.
_RUNC_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
    "/sys/devices/virtual/tpm",
)

_RUNC_CAPABILITIES = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")


def _mount(destination: str, type_: str, source: str, options: list[str]) -> dict:
    mount = {"destination": destination, "type": type_, "source": source}
    if options:
        mount["options"] = options
    return mount


def default_spec(args: list[str] | None = None, rootless: bool = False) -> dict:
    """The config.json `runc spec` (or `runc spec --rootless`) writes, with hostname "dockyard"."""
    caps = list(_RUNC_CAPABILITIES)
    spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args is not None else ["sh"],
            "env": [DEFAULT_PATH_ENV, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "dockyard",
        "mounts": [
            _mount("/proc", "proc", "proc", []),
            _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            _mount("/dev/pts", "devpts", "devpts",
                   ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            _mount("/dev/shm", "tmpfs", "shm",
                   ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
            _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
            _mount("/sys/fs/cgroup", "cgroup", "cgroup",
                   ["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t}
                           for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(_RUNC_MASKED_PATHS),
            "readonlyPaths": list(DOCKER_READONLY_PATHS),  # runc's list is the same
        },
    }
    if rootless:
        _make_rootless(spec)
    return spec


def _make_rootless(spec: dict) -> None:
    """What `runc spec --rootless` changes: the caller's ids mapped to root in a user namespace,
    no network namespace, no cgroup settings, and /sys bound from the host because a user
    namespace that does not own the network namespace may not mount sysfs."""
    linux = spec["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    del linux["resources"]
    mounts = []
    for mount in spec["mounts"]:
        if mount["destination"] == "/sys":
            mount = _mount("/sys", "none", "/sys", ["rbind", "nosuid", "noexec", "nodev", "ro"])
        elif mount["type"] == "cgroup":
            # The rbind of /sys already brings the host's cgroup tree, read-only.
            continue
        else:
            # An unprivileged user cannot choose the owner of a new devpts instance.
            options = [o for o in mount.get("options", ()) if not o.startswith(("uid=", "gid="))]
            mount = _mount(mount["destination"], mount["type"], mount["source"], options)
        mounts.append(mount)
    spec["mounts"] = mounts
