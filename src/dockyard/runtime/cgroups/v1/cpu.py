"""v1 cpu (CFS shares, quota/period, burst, idle, real-time budget) and cpuacct statistics
(usage lives in the cpuacct hierarchy, throttling in the cpu one)."""

import os

from ..common import CgroupDir, CgroupError


def set(cg: CgroupDir, cpu: dict) -> None:
    # Period first: a new quota is checked against the period in force.
    if cpu.get("period"):
        cg.write("cpu.cfs_period_us", cpu["period"])
    if cpu.get("quota"):
        cg.write("cpu.cfs_quota_us", cpu["quota"])
    if cpu.get("burst") is not None:
        cg.write("cpu.cfs_burst_us", cpu["burst"])
    if cpu.get("shares"):
        cg.write("cpu.shares", cpu["shares"])
        actual = cg.read_int("cpu.shares")
        if actual != cpu["shares"]:
            raise CgroupError(f"cpu.shares {cpu['shares']} is out of range: the kernel set {actual}")
    if cpu.get("realtimePeriod"):
        cg.write("cpu.rt_period_us", cpu["realtimePeriod"])
    if cpu.get("realtimeRuntime"):
        cg.write("cpu.rt_runtime_us", cpu["realtimeRuntime"])
    if cpu.get("idle") is not None:
        cg.write("cpu.idle", cpu["idle"])


def _ints(cg: CgroupDir, name: str) -> list[int]:
    return [int(v) for v in cg.read(name).split()] if cg.has(name) else []


def stats(cpu: CgroupDir, cpuacct: CgroupDir) -> dict:
    out = {}
    if cpuacct.path is not None:
        ticks = cpuacct.read_keyed("cpuacct.stat")
        ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        out["usage"] = {
            "total": cpuacct.read_int("cpuacct.usage"),
            "percpu": _ints(cpuacct, "cpuacct.usage_percpu"),
            "percpu_kernel": _ints(cpuacct, "cpuacct.usage_percpu_sys"),
            "percpu_user": _ints(cpuacct, "cpuacct.usage_percpu_user"),
            "kernel": ticks.get("system", 0) * ns_per_tick,
            "user": ticks.get("user", 0) * ns_per_tick,
        }
    if cpu.has("cpu.stat"):
        stat = cpu.read_keyed("cpu.stat")
        out["throttling"] = {
            "periods": stat.get("nr_periods", 0),
            "throttledPeriods": stat.get("nr_throttled", 0),
            "throttledTime": stat.get("throttled_time", 0),
        }
    return out
