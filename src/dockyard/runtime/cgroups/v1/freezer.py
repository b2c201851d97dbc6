"""v1 freezer: freezer.state goes THAWED -> FREEZING -> FROZEN; freezing is done only once
the kernel reports FROZEN."""

from ..common import CgroupDir, CgroupError, wait_for


def freeze(cg: CgroupDir) -> None:
    def frozen() -> bool:
        # Re-writing nudges tasks that were forking while the first write was in progress.
        cg.write("freezer.state", "FROZEN")
        return cg.read("freezer.state") == "FROZEN"

    try:
        wait_for(frozen, f"{cg.path} to freeze")
    except CgroupError:
        thaw(cg)
        raise


def thaw(cg: CgroupDir) -> None:
    cg.write("freezer.state", "THAWED")


def is_frozen(cg: CgroupDir) -> bool:
    return cg.read("freezer.state") == "FROZEN"
