"""v1 memory: memory.limit_in_bytes and memory.memsw.limit_in_bytes (memory + swap), which the
kernel keeps ordered (memsw >= memory) at every write."""

import errno

from dockyard.runtime import log

from ..common import CgroupDir, CgroupError

LIMIT = "memory.limit_in_bytes"
MEMSW = "memory.memsw.limit_in_bytes"


def set(cg: CgroupDir, memory: dict) -> None:
    limit = memory.get("limit") or 0
    swap = memory.get("swap") or 0
    if memory.get("checkBeforeUpdate") and limit > 0:
        check_usage(cg, "memory.usage_in_bytes", limit)
    if swap and swap != -1 and not cg.has(MEMSW):
        raise CgroupError(f"cannot set {MEMSW} to {swap}: swap accounting is not enabled in this kernel")
    swap = swap if cg.has(MEMSW) else 0
    if limit and swap:
        # Raise memsw before memory and lower it after, so memsw >= memory holds throughout.
        if swap == -1 or swap >= cg.read_int(LIMIT):
            _write_limit(cg, MEMSW, swap)
            _write_limit(cg, LIMIT, limit)
        else:
            _write_limit(cg, LIMIT, limit)
            _write_limit(cg, MEMSW, swap)
    elif limit:
        _write_limit(cg, LIMIT, limit)
    elif swap:
        _write_limit(cg, MEMSW, swap)
    if memory.get("reservation"):
        cg.write("memory.soft_limit_in_bytes", memory["reservation"])
    if memory.get("kernel"):
        log.warning("kernel memory limits are not supported by current kernels; ignoring memory.kernel")
    if memory.get("kernelTCP"):
        cg.write("memory.kmem.tcp.limit_in_bytes", memory["kernelTCP"])
    swappiness = memory.get("swappiness")
    if swappiness is not None and swappiness != -1:
        if not 0 <= swappiness <= 100:
            raise CgroupError(f"invalid memory swappiness {swappiness}: want 0 to 100")
        cg.write("memory.swappiness", swappiness)
    if memory.get("disableOOMKiller"):
        cg.write("memory.oom_control", 1)
    if memory.get("useHierarchy") is not None:
        cg.write("memory.use_hierarchy", int(bool(memory["useHierarchy"])))


def check_usage(cg: CgroupDir, usage_file: str, limit: int) -> None:
    usage = cg.read_int(usage_file)
    if limit < usage:
        raise CgroupError(f"cannot set memory limit to {limit}: current usage {usage} is above it")


def _write_limit(cg: CgroupDir, name: str, value: int) -> None:
    try:
        cg.write(name, value)
    except CgroupError as err:
        if err.errno != errno.EBUSY:
            raise
        # The kernel could not reclaim enough memory to get under the new limit.
        usage = cg.read(name.replace("limit_in_bytes", "usage_in_bytes"))
        raise CgroupError(f"{err} (current usage {usage} is above the new limit)", err.errno) from err


def _entry(cg: CgroupDir, prefix: str) -> dict:
    return {
        "limit": cg.read_int(f"{prefix}.limit_in_bytes"),
        "usage": cg.read_int(f"{prefix}.usage_in_bytes"),
        "max": cg.read_int(f"{prefix}.max_usage_in_bytes"),
        "failcnt": cg.read_int(f"{prefix}.failcnt"),
    }


def stats(cg: CgroupDir) -> dict:
    raw = cg.read_keyed("memory.stat")
    out = {"cache": raw.get("total_cache", raw.get("cache", 0)), "usage": _entry(cg, "memory"), "raw": raw}
    for key, prefix in (("swap", "memory.memsw"), ("kernel", "memory.kmem"), ("kernelTCP", "memory.kmem.tcp")):
        if cg.has(f"{prefix}.usage_in_bytes"):
            out[key] = _entry(cg, prefix)
    return out
