"""The v1 manager: one directory per mounted hierarchy, all for the same cgroups path.

The controller modules are imported by the methods that use them: `state`, `kill` and `delete`
load a manager on every call and need none of them (or just the freezer)."""

from __future__ import annotations

import os

from dockyard.runtime import log

from ..common import BaseManager, CgroupDir, CgroupError, Mount, check_under, place

CONTROLLERS = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb",
               "net_cls", "net_prio", "perf_event", "rdma", "misc"}
# Prefer a hierarchy every process is in for listing pids.
_PROCS_ORDER = ("pids", "freezer", "devices", "memory", "cpu")


class V1Manager(BaseManager):
    version = 1

    def __init__(self, paths: dict[str, str], mountpoints: dict[str, str]):
        self.paths = paths  # controller ("memory", "name=systemd") -> this cgroup's directory
        self._mountpoints = mountpoints  # controller -> where its hierarchy is mounted

    @classmethod
    def new(cls, subpath: str, relative: bool, root: str, mounts: list[Mount], own: dict[str, str]) -> "V1Manager":
        paths: dict[str, str] = {}
        mountpoints: dict[str, str] = {}
        for mount in mounts:
            if mount.fstype != "cgroup" or not mount.mountpoint.startswith(root.rstrip("/") + "/"):
                continue
            controllers = [o for o in mount.super_options if o in CONTROLLERS or o.startswith("name=")]
            for controller in controllers:
                if controller not in paths:
                    paths[controller] = place(mount, own.get(controller), subpath, relative)
                    mountpoints[controller] = mount.mountpoint
        if not paths:
            raise CgroupError(f"no cgroup v1 hierarchy is mounted under {root}")
        return cls(paths, mountpoints)

    @classmethod
    def load(cls, state: dict, root: str) -> "V1Manager":
        paths = {c: check_under(root, p) for c, p in state["paths"].items()}
        return cls(paths, state["mountpoints"])

    def state(self) -> dict:
        return {"version": 1, "paths": dict(self.paths), "mountpoints": dict(self._mountpoints)}

    def _cg(self, controller: str) -> CgroupDir:
        return CgroupDir(controller, self.paths.get(controller))

    def _procs_dir(self) -> str:
        return next((self.paths[c] for c in _PROCS_ORDER if c in self.paths), self._dirs()[0])

    def mount_sources(self) -> list[tuple[str, str]]:
        seen = {}
        for controller, mountpoint in self._mountpoints.items():
            seen.setdefault(mountpoint, self.paths[controller])
        return [(os.path.basename(m), path) for m, path in seen.items()]

    def create(self) -> None:
        from . import cpuset

        cpuset_dir = self.paths.get("cpuset")
        for directory in self._dirs():
            if directory == cpuset_dir:
                cpuset.create(self._mountpoints["cpuset"], directory)
                continue
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as err:
                raise CgroupError(f"cannot create cgroup {directory}: {os.strerror(err.errno)}", err.errno) from err

    def apply(self, pid: int) -> None:
        for directory in self._dirs():
            CgroupDir("cgroup", directory).write("cgroup.procs", pid)

    def set(self, resources: dict | None) -> None:
        from . import blkio, cpu, cpuset, devices, hugetlb, memory, pids

        r = resources or {}
        if r.get("unified"):
            raise CgroupError("linux.resources.unified needs cgroup v2, but this host uses cgroup v1")
        for key in ("network", "rdma"):
            if r.get(key):
                log.warning(f"cgroup v1 {key} resources are not supported; ignoring them")
        if r.get("memory"):
            memory.set(self._cg("memory"), r["memory"])
        if r.get("cpu"):
            cpu.set(self._cg("cpu"), r["cpu"])
            cpuset.set(self._cg("cpuset"), r["cpu"])
        if r.get("pids"):
            pids.set(self._cg("pids"), r["pids"])
        if r.get("blockIO"):
            blkio.set(self._cg("blkio"), r["blockIO"])
        if r.get("hugepageLimits"):
            hugetlb.set(self._cg("hugetlb"), r["hugepageLimits"])
        if r.get("devices"):
            devices.set(self._cg("devices"), r["devices"])

    def stats(self) -> dict:
        from . import blkio, cpu, hugetlb, memory, pids

        out = {}
        cpu_stats = cpu.stats(self._cg("cpu"), self._cg("cpuacct"))
        if cpu_stats:
            out["cpu"] = cpu_stats
        for key, controller, module in (
            ("memory", "memory", memory),
            ("pids", "pids", pids),
            ("blkio", "blkio", blkio),
            ("hugetlb", "hugetlb", hugetlb),
        ):
            if controller in self.paths:
                out[key] = module.stats(self._cg(controller))
        return out

    def freeze(self) -> None:
        from . import freezer

        freezer.freeze(self._cg("freezer"))

    def thaw(self) -> None:
        from . import freezer

        freezer.thaw(self._cg("freezer"))

    def is_frozen(self) -> bool:
        if "freezer" not in self.paths:
            return False
        from . import freezer

        return freezer.is_frozen(self._cg("freezer"))

    def kill_all(self, sig: int) -> None:
        import signal  # the Python module builds enums on import; only kill and delete get here

        if sig != signal.SIGKILL or "freezer" not in self.paths:
            super().kill_all(sig)
            return
        # Frozen, nothing in the cgroup can fork a child we would miss.
        self.freeze()
        try:
            super().kill_all(sig)
        finally:
            self.thaw()
