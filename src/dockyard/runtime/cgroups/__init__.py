"""Cgroup management for dockyard-runc: create a container's cgroup, move processes into it,
write OCI linux.resources into it, read statistics, freeze, signal and remove it.

Two implementations of one contract (`common.Manager`): `v1` (one hierarchy per controller) and
`v2` (the unified tree). `new_manager` picks one from /proc/self/mountinfo; `load_manager`
rebuilds it from `Manager.state()` saved in the container's state.json. systemd's cgroup driver
is not supported: only the cgroupfs driver.

Each runtime verb is a fresh interpreter, so only the chosen version's manager is imported (and
its controller modules only when a verb uses them)."""

from __future__ import annotations

import os

from .common import CgroupError, cgroup_subpath, parse_mountinfo, parse_proc_cgroup, read_proc

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; checkers treat it alike
if TYPE_CHECKING:
    from .protocol import Manager

__all__ = ["CgroupError", "Manager", "load_manager", "new_manager", "detect_version"]


def __getattr__(name: str):
    # Loaded on first use: `Manager` (a typing.Protocol) and the two manager classes.
    if name == "Manager":
        from .protocol import Manager

        return Manager
    if name == "V1Manager":
        from .v1.manager import V1Manager

        return V1Manager
    if name == "V2Manager":
        from .v2.manager import V2Manager

        return V2Manager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def detect_version(root: str, mountinfo: str) -> int:
    """2 when cgroup2 is mounted at `root` (pure v2); 1 when v1 hierarchies are mounted below it
    (a hybrid host's cgroup2 at root/unified is not used for resources); 2 as well for an
    unmounted tree that looks like cgroup2, such as a test's fake one."""
    mounts = parse_mountinfo(mountinfo)
    root = root.rstrip("/") or "/"
    if any(m.fstype == "cgroup2" and m.mountpoint == root for m in mounts):
        return 2
    if any(m.fstype == "cgroup" and m.mountpoint.startswith(root + "/") for m in mounts):
        return 1
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return 2
    raise CgroupError(f"no cgroup filesystem is mounted at {root}")


def new_manager(container_id: str, cgroups_path: str | None, resources: dict | None, root: str = "/sys/fs/cgroup") -> Manager:
    """A manager for the container's cgroup; nothing is created until `create()`.
    `resources` is accepted for the runtime's convenience and applied by `set()`."""
    subpath, relative = cgroup_subpath(cgroups_path, container_id)
    root = root.rstrip("/") or "/"
    mountinfo = read_proc("mountinfo")
    mounts, own = parse_mountinfo(mountinfo), parse_proc_cgroup(read_proc("cgroup"))
    if detect_version(root, mountinfo) == 2:
        from .v2.manager import V2Manager as cls
    else:
        from .v1.manager import V1Manager as cls
    return cls.new(subpath, relative, root, mounts, own)


def load_manager(state: dict, root: str = "/sys/fs/cgroup") -> Manager:
    version = state.get("version")
    if version == 1:
        from .v1.manager import V1Manager

        return V1Manager.load(state, root)
    if version == 2:
        from .v2.manager import V2Manager

        return V2Manager.load(state, root)
    raise CgroupError(f"unknown cgroup state version {version!r}")
