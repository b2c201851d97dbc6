"""pids: pids.max and pids.current (the same files on v1 and v2)."""

from ..common import UNLIMITED, CgroupDir


def set(cg: CgroupDir, pids: dict) -> None:
    limit = pids.get("limit", 0)
    cg.write("pids.max", limit if limit > 0 else "max")


def stats(cg: CgroupDir) -> dict:
    limit = cg.read_int("pids.max")
    # runc reports an unlimited pids.max as 0.
    return {"current": cg.read_int("pids.current"), "limit": 0 if limit == UNLIMITED else limit}
