"""Device nodes and /dev symlinks in a container's /dev (runtime-spec config-linux.md §Devices,
§Default Devices, runtime-linux.md §Dev symbolic links)."""

import errno
import os
import stat

from dockyard.linux import mount as mnt
from dockyard.linux.fs import fd_path, make_in_root, open_in_root

DEFAULT_DEVICES = [
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7, "fileMode": 0o666},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8, "fileMode": 0o666},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9, "fileMode": 0o666},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0, "fileMode": 0o666},
]

DEV_SYMLINKS = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
                ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr")]

_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def create_devices(root_fd: int, devices: list[dict], *, bind_from_host: bool) -> None:
    """The default devices, then the configured ones (which win on the same path).
    In a user namespace mknod is refused, so, as runc does, bind the host's node instead."""
    by_path = {d["path"]: d for d in DEFAULT_DEVICES}
    for d in devices or []:
        by_path[d["path"]] = d
    for dev in by_path.values():
        create_device(root_fd, dev, bind_from_host)


def create_device(root_fd: int, dev: dict, bind_from_host: bool) -> None:
    path = dev["path"]
    if not path.startswith("/dev/"):
        raise ValueError(f"device path {path} is not under /dev")
    kind = _TYPES.get(dev["type"])
    if kind is None:
        raise ValueError(f"device {path}: unknown type {dev['type']!r}")
    if bind_from_host:
        fd = make_in_root(root_fd, path, directory=False)
        try:
            mnt.mount(path, fd_path(fd), None, mnt.MS_BIND)
        finally:
            os.close(fd)
        return
    parent_fd = make_in_root(root_fd, os.path.dirname(path), directory=True)
    name = os.path.basename(path)
    try:
        try:
            os.unlink(name, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        mode = dev.get("fileMode", 0o666) & 0o7777
        rdev = os.makedev(dev.get("major", 0), dev.get("minor", 0)) if kind != stat.S_IFIFO else 0
        os.mknod(name, mode | kind, rdev, dir_fd=parent_fd)
        # mknod honours the umask: set the exact mode, then the owner.
        os.chmod(name, mode, dir_fd=parent_fd, follow_symlinks=False)
        os.chown(name, dev.get("uid", 0), dev.get("gid", 0), dir_fd=parent_fd, follow_symlinks=False)
    finally:
        os.close(parent_fd)


def create_symlinks(root_fd: int) -> None:
    dev_fd = open_in_root(root_fd, "/dev", os.O_PATH | os.O_DIRECTORY)
    try:
        links = list(DEV_SYMLINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "core"))
        links.append(("pts/ptmx", "ptmx"))
        for target, name in links:
            if name == "ptmx":
                try:
                    os.unlink(name, dir_fd=dev_fd)
                except FileNotFoundError:
                    pass
            try:
                os.symlink(target, name, dir_fd=dev_fd)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
    finally:
        os.close(dev_fd)


# What every container may use whatever its config says, as runc allows it: creating any
# node (m), the default devices, the console and ptys, and /dev/net/tun.
_ALWAYS_ALLOWED = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": d["major"], "minor": d["minor"], "access": "rwm"}
      for d in DEFAULT_DEVICES),
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},    # /dev/console
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},    # /dev/ptmx
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},              # /dev/pts/*
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # /dev/net/tun
]


def cgroup_rules(linux: dict) -> list[dict]:
    """The device cgroup rules: config's own (usually deny-all first), then the always-allowed
    devices and every device the config creates."""
    rules = list((linux.get("resources") or {}).get("devices") or [])
    rules += _ALWAYS_ALLOWED
    for d in linux.get("devices") or []:
        if d.get("type") in ("c", "b", "u"):
            rules.append({"allow": True, "type": "b" if d["type"] == "b" else "c",
                          "major": d.get("major"), "minor": d.get("minor"), "access": "rwm"})
    return rules
