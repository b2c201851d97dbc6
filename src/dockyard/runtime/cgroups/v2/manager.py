"""The v2 manager: one directory in the unified tree.

The controller modules are imported by the methods that use them: `state`, `kill` and `delete`
load a manager on every call and need none of them (or just the freezer); `devices` brings
ctypes and bpf(2) along."""

from __future__ import annotations

import os

from dockyard.runtime import log

from ..common import BaseManager, CgroupDir, CgroupError, Mount, check_under, place


class V2Manager(BaseManager):
    version = 2

    def __init__(self, root: str, path: str):
        self.root = root
        self.paths = {"": path}

    @classmethod
    def new(cls, subpath: str, relative: bool, root: str, mounts: list[Mount], own: dict[str, str]) -> "V2Manager":
        mount = next((m for m in mounts if m.fstype == "cgroup2" and m.mountpoint == root), Mount("/", root, "cgroup2", ()))
        return cls(root, place(mount, own.get(""), subpath, relative))

    @classmethod
    def load(cls, state: dict, root: str) -> "V2Manager":
        return cls(root, check_under(root, state["paths"][""]))

    @property
    def path(self) -> str:
        return self.paths[""]

    def state(self) -> dict:
        return {"version": 2, "paths": dict(self.paths)}

    def mount_sources(self) -> list[tuple[str, str]]:
        return [("", self.path)]

    def _cg(self, controller: str = "cgroup") -> CgroupDir:
        return CgroupDir(controller, self.path)

    def create(self) -> None:
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as err:
            raise CgroupError(f"cannot create cgroup {self.path}: {os.strerror(err.errno)}", err.errno) from err
        parent = self.root
        for part in os.path.relpath(self.path, self.root).split(os.sep):
            _enable_controllers(CgroupDir("cgroup", parent))
            parent = os.path.join(parent, part)

    def apply(self, pid: int) -> None:
        self._cg().write("cgroup.procs", pid)

    def set(self, resources: dict | None) -> None:
        from . import cpu, cpuset, hugetlb, io, memory, pids

        r = resources or {}
        for key in ("network", "rdma"):
            if r.get(key):
                log.warning(f"cgroup v2 {key} resources are not supported; ignoring them")
        if r.get("memory"):
            memory.set(self._cg("memory"), r["memory"])
        if r.get("cpu"):
            cpu.set(self._cg("cpu"), r["cpu"])
            cpuset.set(self._cg("cpuset"), r["cpu"])
        if r.get("pids"):
            pids.set(self._cg("pids"), r["pids"])
        if r.get("blockIO"):
            io.set(self._cg("io"), r["blockIO"])
        if r.get("hugepageLimits"):
            hugetlb.set(self._cg("hugetlb"), r["hugepageLimits"])
        if r.get("devices"):
            from . import devices

            devices.set(self._cg("devices"), r["devices"])
        # Raw v2 keys come last so they override the converted values, as in runc.
        for key, value in (r.get("unified") or {}).items():
            if "/" in key or key.startswith("."):
                raise CgroupError(f"invalid linux.resources.unified key {key!r}")
            self._cg(key.partition(".")[0]).write(key, value)

    def stats(self) -> dict:
        from . import cpu, hugetlb, io, memory, pids

        out = {}
        for key, filename, module in (
            ("cpu", "cpu.stat", cpu),
            ("memory", "memory.current", memory),
            ("pids", "pids.current", pids),
            ("blkio", "io.stat", io),
            ("hugetlb", "cgroup.controllers", hugetlb),
        ):
            if self._cg().has(filename) and (values := module.stats(self._cg(key))):
                out[key] = values
        return out

    def freeze(self) -> None:
        from . import freezer

        freezer.freeze(self._cg())

    def thaw(self) -> None:
        from . import freezer

        freezer.thaw(self._cg())

    def is_frozen(self) -> bool:
        from . import freezer

        return freezer.is_frozen(self._cg())

    def kill_all(self, sig: int) -> None:
        import signal  # the Python module builds enums on import; only kill and delete get here

        if sig == signal.SIGKILL and self._cg().has("cgroup.kill"):
            self._cg().write("cgroup.kill", 1)  # kernel 5.14+: kills the subtree without races
        else:
            super().kill_all(sig)


def _enable_controllers(cg: CgroupDir) -> None:
    """Enable in `cg`'s children every controller `cg` has, as runc does."""
    enabled = cg.read("cgroup.subtree_control").split()
    missing = [c for c in cg.read("cgroup.controllers").split() if c not in enabled]
    if not missing:
        return
    try:
        cg.write("cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
    except CgroupError:
        # One refusal (e.g. cpu with real-time tasks about) fails the whole write; go one by one.
        for controller in missing:
            try:
                cg.write("cgroup.subtree_control", f"+{controller}")
            except CgroupError as err:
                log.warning(f"cannot enable cgroup controller {controller}: {err}")
