"""v2 cpu: cpu.weight (from OCI shares), cpu.max ("quota period"), cpu.max.burst, cpu.idle.
v2 has no real-time budget."""

import math

from ..common import CgroupDir, CgroupError


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144, default 1024) to cpu.weight (1..10000, default 100).
    runc's curve: 10^((l² + 125·l)/612 − 7/34) with l = log2(shares), which maps 2→1,
    1024→100 and 262144→10000; written over a common denominator so 1024 gives exactly 2."""
    if shares == 0:
        return 0
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    l = math.log2(shares)
    return math.ceil(10 ** ((l * l + 125 * l - 126) / 612))


def set(cg: CgroupDir, cpu: dict) -> None:
    if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
        raise CgroupError("cpu realtimeRuntime/realtimePeriod need cgroup v1: cgroup v2 has no real-time budget")
    if cpu.get("shares"):
        cg.write("cpu.weight", shares_to_weight(cpu["shares"]))
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    if quota or period:
        cg.write("cpu.max", cpu_max(quota, period, cg.read("cpu.max") if period and not quota else None))
    if cpu.get("burst") is not None:
        cg.write("cpu.max.burst", cpu["burst"])
    if cpu.get("idle") is not None:
        cg.write("cpu.idle", cpu["idle"])


def cpu_max(quota: int, period: int, current: str | None = None) -> str:
    """The cpu.max line; with only a period, keep the quota in force (`current`)."""
    if not quota and current:
        limit = current.split()[0]
    else:
        limit = "max" if quota < 0 else str(quota)
    return f"{limit} {period}" if period else limit


def stats(cg: CgroupDir) -> dict:
    stat = cg.read_keyed("cpu.stat")
    return {
        "usage": {
            "total": stat.get("usage_usec", 0) * 1000,
            "kernel": stat.get("system_usec", 0) * 1000,
            "user": stat.get("user_usec", 0) * 1000,
        },
        "throttling": {
            "periods": stat.get("nr_periods", 0),
            "throttledPeriods": stat.get("nr_throttled", 0),
            "throttledTime": stat.get("throttled_usec", 0) * 1000,
        },
    }
