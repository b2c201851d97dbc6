"""`docker stats` and `docker top`: a container's resource usage and its processes.

Stats (docker-engine-api-v1.45.yaml ContainerStatsResponse; moby daemon/stats): dockyard-
containerd's Tasks.Metrics carries the runtime's `events --stats` data (runc's cgroup stats
types: cpu.usage{total,percpu,kernel,user}, cpu.throttling, memory.usage{usage,max,limit,
failcnt} + memory.raw (memory.stat), pids{current,limit}, blkio.ioServiceBytesRecursive …),
for cgroup v1 and v2 alike. Here it becomes Docker's JSON: cpu_stats with the host's
system_cpu_usage (/proc/stat, in ns, as moby's getSystemCPUUsage) and online_cpus, memory_stats
with moby's rule that an unlimited container's limit is the host's memory, blkio_stats,
pids_stats; `precpu_stats` is the previous sample (what the CLI's CPU % needs). A container that
is not running gives the zero stats moby gives. `networks` comes from the container's
/proc/<pid>/net/dev when it has a network of its own (none with host or container: modes).

Top (ContainerTopResponse; moby daemon/top_unix.go): the pids from Tasks.ListPids. With no
ps_args (or "-ef") the `ps -ef` table is made from /proc directly; other ps_args run the host's
`ps` with them (a host binary, as dockerd does) and keep the rows whose PID is the container's.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shlex
import shutil
import subprocess
import time
from datetime import datetime

from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from dockyard.engine import timeutil
from dockyard.errors import Conflict, InvalidArgument, NotFound, SystemFailure

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_NS_PER_TICK = 1_000_000_000 // _CLK_TCK
PS_EF_TITLES = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


# -- stats -------------------------------------------------------------------------------------------

def system_cpu_usage() -> int:
    """Host CPU time in ns: the first line of /proc/stat, user through softirq (moby)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                ticks = [int(x) for x in line.split()[1:8]]
                return sum(ticks) * _NS_PER_TICK
    raise SystemFailure("/proc/stat has no cpu line")


def online_cpus() -> int:
    return int(os.sysconf("SC_NPROCESSORS_ONLN"))


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def empty_cpu() -> dict:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def empty_stats(name: str, cid: str) -> dict:
    """moby's StatsJSON of a container that is not running: zero values, zero read times."""
    zero = timeutil.format_rfc3339(0)
    return {"read": zero, "preread": zero, "pids_stats": {}, "blkio_stats": _blkio({}),
            "num_procs": 0, "storage_stats": {}, "cpu_stats": empty_cpu(),
            "precpu_stats": empty_cpu(), "memory_stats": {}, "name": "/" + name, "id": cid}


def _blkio(b: dict) -> dict:
    def entries(key: str):
        rows = b.get(key)
        if not rows:
            return None
        return [{"major": int(r.get("major", 0)), "minor": int(r.get("minor", 0)),
                 "op": str(r.get("op", "")), "value": int(r.get("value", 0))} for r in rows]
    return {"io_service_bytes_recursive": entries("ioServiceBytesRecursive"),
            "io_serviced_recursive": entries("ioServicedRecursive"),
            "io_queue_recursive": entries("ioQueuedRecursive"),
            "io_service_time_recursive": entries("ioServiceTimeRecursive"),
            "io_wait_time_recursive": entries("ioWaitTimeRecursive"),
            "io_merged_recursive": entries("ioMergedRecursive"),
            "io_time_recursive": entries("ioTimeRecursive"),
            "sectors_recursive": entries("sectorsRecursive")}


def cpu_stats(data: dict, system_usage: int, cpus: int) -> dict:
    cpu = data.get("cpu") or {}
    usage = cpu.get("usage") or {}
    throttling = cpu.get("throttling") or {}
    out = {"cpu_usage": {"total_usage": int(usage.get("total", 0)),
                         "usage_in_kernelmode": int(usage.get("kernel", 0)),
                         "usage_in_usermode": int(usage.get("user", 0))},
           "system_cpu_usage": system_usage, "online_cpus": cpus,
           "throttling_data": {"periods": int(throttling.get("periods", 0)),
                               "throttled_periods": int(throttling.get("throttledPeriods", 0)),
                               "throttled_time": int(throttling.get("throttledTime", 0))}}
    if usage.get("percpu"):   # v1 only, as moby
        out["cpu_usage"]["percpu_usage"] = [int(x) for x in usage["percpu"]]
    return out


def memory_stats(data: dict, host_memory: int) -> dict:
    mem = data.get("memory") or {}
    if not mem:
        return {}
    usage = mem.get("usage") or {}
    limit = int(usage.get("limit", 0))
    if host_memory and (limit == 0 or limit > host_memory):
        limit = host_memory   # moby: an unlimited container is limited by the host
    out = {"usage": int(usage.get("usage", 0)), "stats": {k: int(v) for k, v in (mem.get("raw") or {}).items()},
           "limit": limit}
    if usage.get("max"):
        out["max_usage"] = int(usage["max"])
    if usage.get("failcnt"):
        out["failcnt"] = int(usage["failcnt"])
    return out


def docker_stats(data: dict | None, *, name: str, cid: str, read_ns: int, system_usage: int,
                 cpus: int, host_memory: int, pre: dict | None = None) -> dict:
    """Docker's stats JSON of one Metrics sample (`data`, the runtime's stats) and, as
    precpu_stats / preread, the previous Docker sample `pre` (None: zeros, as one-shot)."""
    if data is None:
        return empty_stats(name, cid)
    pids = data.get("pids") or {}
    pids_stats = {}
    if pids:
        pids_stats["current"] = int(pids.get("current", 0))
        if pids.get("limit"):
            pids_stats["limit"] = int(pids["limit"])
    return {
        "read": timeutil.format_rfc3339(read_ns),
        "preread": pre["read"] if pre else timeutil.format_rfc3339(0),
        "pids_stats": pids_stats,
        "blkio_stats": _blkio(data.get("blkio") or {}),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_stats(data, system_usage, cpus),
        "precpu_stats": pre["cpu_stats"] if pre else empty_cpu(),
        "memory_stats": memory_stats(data, host_memory),
        "name": "/" + name,
        "id": cid,
    }


class Sampler:
    """Successive stats of one container; each sample's precpu is the one before."""

    def __init__(self, daemon, container):
        self.daemon = daemon
        self.cid = container.id
        self.previous: dict | None = None
        self.host_memory = mem_total()
        self.cpus = online_cpus()

    async def metrics(self) -> dict | None:
        """The runtime's stats of the container's task, or None when it has none running."""
        c = self.daemon.store.find(self.cid)
        if c is None:
            raise NotFound(f"No such container: {self.cid}")
        if not c.state.running:
            return None
        cd = self.daemon.containerd
        reply = await cd.call(cd.tasks.Metrics, tpb.MetricsRequest(filters=[f"id=={self.cid}"]))
        for metric in reply.metrics:
            if metric.id == self.cid:
                return json.loads(metric.data.value or b"{}")
        return None

    async def sample(self, *, with_pre: bool = True) -> dict:
        c = self.daemon.store.find(self.cid)
        if c is None:
            raise NotFound(f"No such container: {self.cid}")
        data = await self.metrics()
        read_ns = time.time_ns()
        stats = docker_stats(data, name=c.name, cid=c.id, read_ns=read_ns,
                             system_usage=system_cpu_usage(), cpus=self.cpus,
                             host_memory=self.host_memory,
                             pre=self.previous if with_pre else None)
        if data is not None and c.network_settings.get("SandboxKey") and c.state.pid:
            networks = interface_stats(_read_text(f"/proc/{c.state.pid}/net/dev"))
            if networks:
                stats["networks"] = networks
        self.previous = stats if data is not None else None
        return stats


_NET_DEV_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped")
_NET_DEV_TX = ("tx_bytes", "tx_packets", "tx_errors", "tx_dropped")


def interface_stats(net_dev: str) -> dict:
    """Docker's `networks` stats from /proc/<pid>/net/dev (the container's own network
    namespace, as the process sees it): per interface but lo, rx then tx counters."""
    out = {}
    for line in net_dev.splitlines()[2:]:
        name, found, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if not found or name == "lo" or len(fields) < 16 or not all(f.isdigit() for f in fields):
            continue
        rx = dict(zip(_NET_DEV_FIELDS, map(int, fields[0:4])))
        tx = dict(zip(_NET_DEV_TX, map(int, fields[8:12])))
        out[name] = {**rx, **tx}
    return out


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""  # the process is gone: no figures rather than an error


# -- top ----------------------------------------------------------------------------------------------

async def top(daemon, container, ps_args: str = "") -> dict:
    """ContainerTopResponse {Titles, Processes} of a running container."""
    c = container
    if not c.state.running:
        raise Conflict(f"Container {c.id} is not running")
    if c.state.restarting:
        raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
    cd = daemon.containerd
    reply = await cd.call(cd.tasks.ListPids, tpb.ListPidsRequest(container_id=c.id))
    pids = [p.pid for p in reply.processes]
    args = ps_args.strip()
    if args in ("", "-ef"):
        return await asyncio.to_thread(ps_ef, pids)
    return await asyncio.to_thread(run_ps, args, pids)


def ps_ef(pids: list[int]) -> dict:
    """`ps -ef` for these pids, read from /proc (procps's formats)."""
    now = time.time()
    boot = _boot_time()
    rows = []
    for pid in sorted(pids):
        row = _ps_row(pid, now, boot)
        if row is not None:
            rows.append(row)
    return {"Titles": list(PS_EF_TITLES), "Processes": rows}


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _ps_row(pid: int, now: float, boot: float) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except OSError:
        return None   # exited meanwhile
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is state (stat field 3); stat field n is fields[n - 3]
    ppid = int(fields[1])
    tty_nr = int(fields[4])
    utime, stime = int(fields[11]), int(fields[12])
    start = boot + int(fields[19]) / _CLK_TCK
    euid = 0
    for line in status.splitlines():
        if line.startswith("Uid:"):
            euid = int(line.split()[2])
            break
    cpu_seconds = (utime + stime) / _CLK_TCK
    elapsed = max(now - start, 0.0)
    c = min(int(cpu_seconds * 100 / elapsed), 99) if elapsed > 0 else 0
    args = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a]
    cmd = " ".join(args) if args else f"[{comm}]"
    return [_user(euid), str(pid), str(ppid), str(c), _stime(start, now), _tty(tty_nr),
            _cputime(int(cpu_seconds)), cmd]


def _user(uid: int) -> str:
    # The host's user database, as the host's ps shows it (no lookup inside the container).
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
    return name if len(name) <= 8 else str(uid)


def _stime(start: float, now: float) -> str:
    t = datetime.fromtimestamp(start)
    n = datetime.fromtimestamp(now)
    if t.date() == n.date():
        return t.strftime("%H:%M")
    if t.year == n.year:
        return t.strftime("%b%d")
    return t.strftime("%Y")


def _tty(tty_nr: int) -> str:
    if tty_nr == 0:
        return "?"
    major, minor = os.major(tty_nr), os.minor(tty_nr)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    if major == 5 and minor == 1:
        return "console"
    return "?"


def _cputime(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}-{text}" if days else text


def run_ps(ps_args: str, pids: list[int]) -> dict:
    """The host's `ps` with the client's arguments, rows filtered to the container's pids
    (moby parsePSOutput: the PID column found in the header; the command may hold spaces)."""
    ps = shutil.which("ps")
    if ps is None:
        raise SystemFailure("ps is not installed on the host: only the default ps_args are available")
    try:
        argv = shlex.split(ps_args)
    except ValueError as e:
        raise InvalidArgument(f"invalid ps_args: {e}") from None
    try:
        proc = subprocess.run([ps, *argv], capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise SystemFailure("ps did not finish within 30s") from None
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip() or proc.stdout.decode("utf-8", "replace").strip()
        raise SystemFailure(f"ps: {message}")
    return parse_ps(proc.stdout.decode("utf-8", "replace"), pids)


def parse_ps(output: str, pids: list[int]) -> dict:
    lines = output.splitlines()
    if not lines:
        raise SystemFailure("ps printed nothing")
    titles = lines[0].split()
    try:
        pid_index = titles.index("PID")
    except ValueError:
        raise InvalidArgument("Couldn't find PID field in ps output") from None
    wanted = set(pids)
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        fields = line.split()
        try:
            pid = int(fields[pid_index])
        except (IndexError, ValueError):
            raise SystemFailure(f"unexpected pid {fields[pid_index] if len(fields) > pid_index else ''!r} "
                                "in ps output") from None
        if pid not in wanted:
            continue
        if len(fields) > len(titles):
            fields = fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])]
        rows.append(fields)
    return {"Titles": titles, "Processes": rows}
