"""cpuset: cpuset.cpus and cpuset.mems (the same files on v1 and v2). On v1 a new cpuset
cgroup starts empty and refuses tasks (ENOSPC) until both are filled, so `create` copies them
down from the parent at every level it makes."""

import os

from ..common import CgroupDir, CgroupError


def set(cg: CgroupDir, cpu: dict) -> None:
    if cpu.get("cpus"):
        cg.write("cpuset.cpus", cpu["cpus"])
    if cpu.get("mems"):
        cg.write("cpuset.mems", cpu["mems"])


def create(mountpoint: str, directory: str) -> None:
    parent = mountpoint
    for part in os.path.relpath(directory, mountpoint).split(os.sep):
        child = os.path.join(parent, part)
        try:
            os.makedirs(child, exist_ok=True)
        except OSError as err:
            raise CgroupError(f"cannot create cgroup {child}: {os.strerror(err.errno)}", err.errno) from err
        up, down = CgroupDir("cpuset", parent), CgroupDir("cpuset", child)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not down.read(name):
                down.write(name, up.read(name))
        parent = child
