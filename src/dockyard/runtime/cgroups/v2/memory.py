"""v2 memory: memory.max, memory.low and memory.swap.max (swap alone, where OCI gives
memory + swap as v1 did)."""

from dockyard.runtime import log

from ..common import UNLIMITED, CgroupDir, CgroupError
from ..v1.memory import check_usage


def swap_to_v2(swap: int, limit: int) -> int:
    """OCI memory.swap (memory + swap, v1 style) to memory.swap.max; -1 is unlimited, 0 unset."""
    if limit == -1 and swap == 0:
        return -1  # unlimited memory with swap unset means unlimited swap too, as on v1
    if swap in (-1, 0):
        return swap
    if limit == 0:
        raise CgroupError("cannot set a swap limit without a memory limit")
    if limit < 0:
        raise CgroupError(f"invalid memory limit {limit}")
    if swap < limit:
        raise CgroupError(f"memory+swap limit {swap} is below the memory limit {limit}")
    return swap - limit


def _value(v: int) -> str | int:
    return "max" if v == -1 else v


def set(cg: CgroupDir, memory: dict) -> None:
    limit = memory.get("limit") or 0
    swap = swap_to_v2(memory.get("swap") or 0, limit)
    if memory.get("checkBeforeUpdate") and limit > 0:
        check_usage(cg, "memory.current", limit)
    if swap:
        if cg.has("memory.swap.max"):
            cg.write("memory.swap.max", _value(swap))
        elif swap != -1:
            raise CgroupError(f"cannot set memory.swap.max to {swap}: swap accounting is not enabled in this kernel")
    if limit:
        cg.write("memory.max", _value(limit))
    if memory.get("reservation"):
        cg.write("memory.low", memory["reservation"])
    ignored = [k for k in ("kernel", "kernelTCP", "disableOOMKiller") if memory.get(k)]
    if memory.get("swappiness") not in (None, -1):
        ignored.append("swappiness")
    for key in ignored:
        log.warning(f"cgroup v2 has no equivalent of memory.{key}; ignoring it")


def stats(cg: CgroupDir) -> dict:
    raw = cg.read_keyed("memory.stat")
    usage, limit = cg.read_int("memory.current"), cg.read_int("memory.max")
    out = {
        "cache": raw.get("file", 0),
        "usage": {
            "limit": limit,
            "usage": usage,
            "max": cg.read_int("memory.peak") if cg.has("memory.peak") else 0,
            "failcnt": cg.read_keyed("memory.events").get("max", 0) if cg.has("memory.events") else 0,
        },
        "raw": raw,
    }
    if cg.has("memory.swap.current"):
        # Reported as memory + swap, as v1's memsw was, like runc does.
        swap_limit = cg.read_int("memory.swap.max")
        out["swap"] = {
            "limit": UNLIMITED if UNLIMITED in (limit, swap_limit) else limit + swap_limit,
            "usage": usage + cg.read_int("memory.swap.current"),
            "failcnt": cg.read_keyed("memory.swap.events").get("max", 0) if cg.has("memory.swap.events") else 0,
        }
    return out
