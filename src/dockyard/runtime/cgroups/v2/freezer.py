"""v2 freezer: write cgroup.freeze, then wait for cgroup.events to say "frozen 1"."""

from ..common import CgroupDir, CgroupError, wait_for


def freeze(cg: CgroupDir) -> None:
    cg.write("cgroup.freeze", 1)
    try:
        wait_for(lambda: is_frozen(cg), f"{cg.path} to freeze")
    except CgroupError:
        thaw(cg)
        raise


def thaw(cg: CgroupDir) -> None:
    cg.write("cgroup.freeze", 0)


def is_frozen(cg: CgroupDir) -> bool:
    return cg.read_keyed("cgroup.events").get("frozen") == 1
