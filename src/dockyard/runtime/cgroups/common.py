"""What both cgroup versions share: the error type, reading and writing interface files with
errors that name the file and value, locating hierarchies from /proc/self/mountinfo and
/proc/self/cgroup, resolving OCI `linux.cgroupsPath`, and the verbs that work the same way on
v1 and v2 (pids, kill_all, destroy)."""

from __future__ import annotations

import collections
import errno
import os
import posixpath
import time

from dockyard.errors import SystemFailure
from dockyard.runtime import log

# Every verb of dockyard-runc is a fresh interpreter, so this package imports only what the
# verb at hand needs: no dataclasses/typing/logging/re at import, and the version-specific code
# is imported by whoever picks the version (see __init__.py).

# runc reports an unlimited value ("max" on v2) as the largest uint64.
UNLIMITED = 2**64 - 1


class CgroupError(SystemFailure):
    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


def __getattr__(name: str):
    # `Manager` is a typing.Protocol: documentation and type-checking only, so `typing` is
    # imported when someone asks for it, not by every command.
    if name == "Manager":
        from .protocol import Manager

        return Manager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _failure(what: str, err: OSError) -> CgroupError:
    return CgroupError(f"{what}: {os.strerror(err.errno)}" if err.errno else f"{what}: {err}", err.errno)


class CgroupDir:
    """One controller's directory. `path` is None when the host has no such controller, so
    the first attempt to use it says so instead of failing on a made-up path."""

    def __init__(self, controller: str, path: str | None):
        self.controller = controller
        self.path = path

    def _file(self, name: str, value=None) -> str:
        if self.path is None:
            action = f"set {name} to {value}" if value is not None else f"read {name}"
            raise CgroupError(f"cannot {action}: the {self.controller} cgroup controller is not mounted")
        return os.path.join(self.path, name)

    def has(self, name: str) -> bool:
        return self.path is not None and os.path.exists(os.path.join(self.path, name))

    def write(self, name: str, value) -> None:
        data = str(value)
        path = self._file(name, data)
        try:
            # One write(2) per value: cgroupfs parses each write as a whole.
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)
        except OSError as err:
            hint = f" (no {name} in {self.path}: is the {self.controller} controller enabled?)" if err.errno == errno.ENOENT else ""
            raise CgroupError(f"cannot set {name} to {data}: {os.strerror(err.errno)}{hint}", err.errno) from err
        log.debug(f"cgroup write file={path} value={data}")

    def read(self, name: str) -> str:
        path = self._file(name)
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as err:
            raise _failure(f"cannot read {path}", err) from err

    def read_int(self, name: str) -> int:
        return parse_int(self.read(name))

    def read_keyed(self, name: str) -> dict[str, int]:
        """A flat-keyed file ("key value" lines) such as memory.stat or cpu.stat."""
        out = {}
        for line in self.read(name).splitlines():
            key, _, value = line.partition(" ")
            if value:
                out[key] = parse_int(value)
        return out


def parse_int(text: str) -> int:
    text = text.strip()
    return UNLIMITED if text == "max" else int(text)


def hugepage_sizes(sysfs: str = "/sys/kernel/mm/hugepages") -> list[str]:
    """Page sizes the kernel offers, in the OCI/cgroup spelling ("2MB", "1GB")."""
    try:
        names = os.listdir(sysfs)
    except FileNotFoundError:
        return []
    return [page_size_name(int(n[len("hugepages-"):-2])) for n in sorted(names) if n.startswith("hugepages-") and n.endswith("kB")]


def page_size_name(kib: int) -> str:
    for unit, size in (("GB", 1 << 20), ("MB", 1 << 10)):
        if kib % size == 0:
            return f"{kib // size}{unit}"
    return f"{kib}KB"


def check_page_size(page_size: str) -> str:
    import re  # only `set` with hugepageLimits gets here

    if not re.match(r"^[1-9][0-9]*[KMG]B$", page_size or ""):
        raise CgroupError(f"invalid hugepage size {page_size!r}: want e.g. 2MB or 1GB")
    return page_size


def device_rule(rule: dict) -> tuple[str, int, int, str]:
    """Validate one OCI device cgroup rule: (type, major, minor, access), -1 for a wildcard."""
    kind = rule.get("type") or "a"
    access = rule.get("access") or "rwm"
    if kind not in ("a", "b", "c") or not access or set(access) - set("rwm"):
        raise CgroupError(f"invalid device rule {rule}: type must be a, b or c and access letters r, w, m")
    major, minor = rule.get("major"), rule.get("minor")
    return kind, -1 if major is None else int(major), -1 if minor is None else int(minor), access


# --- locating hierarchies ---------------------------------------------------------------------


class Mount(collections.namedtuple("Mount", "root mountpoint fstype super_options")):
    """One line of mountinfo. root: the part of the hierarchy this mount shows ("/" unless
    bind-mounted or namespaced); super_options: a tuple of the superblock's options."""

    __slots__ = ()


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    import re  # octal escapes (a space in a mount point) are rare

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(rest) < 3:
            continue
        mounts.append(Mount(_unescape(fields[3]), _unescape(fields[4]), rest[0], tuple(rest[2].split(","))))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controller: path}; the v2 entry is under ""."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    return out


def read_proc(name: str) -> str:
    with open(f"/proc/self/{name}") as f:
        return f.read()


def cgroup_subpath(cgroups_path: str | None, container_id: str) -> tuple[str, bool]:
    """Normalize OCI linux.cgroupsPath to ("/a/b", relative?). A relative path is placed under
    the runtime's own cgroup, as runc does. '..' cannot climb above its base."""
    if not cgroups_path:
        return f"/dockyard/{container_id}", False
    if len(cgroups_path.split(":")) == 3:
        raise CgroupError("systemd cgroup driver is not supported")
    clean = posixpath.normpath("/" + cgroups_path.lstrip("/"))
    if clean == "/":
        raise CgroupError(f"cgroupsPath {cgroups_path!r} names the cgroup root")
    return clean, not cgroups_path.startswith("/")


def place(mount: Mount, own: str | None, subpath: str, relative: bool) -> str:
    """The directory for `subpath` in the hierarchy mounted at `mount`."""
    base = "/"
    if relative and own:
        # Our own cgroup is given from the hierarchy's root; the mount may show only a subtree.
        base = own[len(mount.root):] if mount.root != "/" and own.startswith(mount.root) else own
    return os.path.join(mount.mountpoint, posixpath.join(base, subpath.lstrip("/")).lstrip("/"))


def check_under(root: str, path: str) -> str:
    """Refuse a saved path outside the cgroup root (state.json is not trusted blindly)."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if real == real_root or not real.startswith(real_root.rstrip("/") + "/"):
        raise CgroupError(f"cgroup path {path} is not below {root}")
    return path


# --- verbs shared by both versions ------------------------------------------------------------


class BaseManager:
    version: int
    paths: dict[str, str]

    def _dirs(self) -> list[str]:
        return list(dict.fromkeys(self.paths.values()))

    def _procs_dir(self) -> str:
        return self._dirs()[0]

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._dirs())

    def pids(self) -> list[int]:
        found: list[int] = []
        for dirpath, _, _ in os.walk(self._procs_dir()):
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    found.extend(int(line) for line in f if line.strip())
            except FileNotFoundError:
                continue  # removed while we walked
        return sorted(set(found))

    def kill_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def destroy(self) -> None:
        for directory in self._dirs():
            for dirpath, _, _ in os.walk(directory, topdown=False):
                _rmdir(dirpath)


def _rmdir(path: str, attempts: int = 10) -> None:
    delay = 0.01
    for attempt in range(attempts):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            # EBUSY: processes that were just killed have not left the cgroup yet.
            if err.errno != errno.EBUSY or attempt == attempts - 1:
                raise _failure(f"cannot remove cgroup {path}", err) from err
        time.sleep(delay)
        delay *= 2


def wait_for(predicate, what: str, attempts: int = 200) -> None:
    """Poll with a growing pause (~2s total) until predicate() is true."""
    delay = 0.001
    for _ in range(attempts):
        if predicate():
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    raise CgroupError(f"timed out waiting for {what}")
