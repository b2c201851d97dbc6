"""`update [options] <id>`: change the container's cgroup limits, from flags or from a
linux.resources JSON (`-r FILE`, `-r -` for stdin); the saved config follows."""

import json
import sys

from dockyard.errors import Conflict, InvalidArgument

from .. import lifecycle
from ..state import STOPPED

# flag → (resources section, key, type)
FLAGS = {
    "memory": ("memory", "limit", int), "memory_reservation": ("memory", "reservation", int),
    "memory_swap": ("memory", "swap", int), "kernel_memory": ("memory", "kernel", int),
    "kernel_memory_tcp": ("memory", "kernelTCP", int),
    "cpu_shares": ("cpu", "shares", int), "cpu_quota": ("cpu", "quota", int),
    "cpu_period": ("cpu", "period", int), "cpu_rt_runtime": ("cpu", "realtimeRuntime", int),
    "cpu_rt_period": ("cpu", "realtimePeriod", int), "cpuset_cpus": ("cpu", "cpus", str),
    "cpuset_mems": ("cpu", "mems", str), "cpu_idle": ("cpu", "idle", int),
    "pids_limit": ("pids", "limit", int), "blkio_weight": ("blockIO", "weight", int),
}


def configure(p):
    p.add_argument("--resources", "-r", default=None, help="path to a file with linux.resources JSON, or - for stdin")
    for flag in FLAGS:
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, default=None)
    p.add_argument("container_id")


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().rstrip("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def collect(args) -> dict:
    resources: dict = {}
    if args.resources:
        try:
            text = sys.stdin.read() if args.resources == "-" else open(args.resources).read()
            resources = json.loads(text)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"cannot read resources: {e}") from None
        if not isinstance(resources, dict):
            raise InvalidArgument("resources must be a JSON object (linux.resources)")
    for flag, (section, key, kind) in FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        try:
            parsed = value if kind is str else (_size(value) if section == "memory" else int(value))
        except ValueError:
            raise InvalidArgument(f"invalid value for --{flag.replace('_', '-')}: {value!r}") from None
        resources.setdefault(section, {})[key] = parsed
    return resources


def run(args) -> int:
    container, cgroup = lifecycle.load(args.root, args.container_id)
    if container.status(cgroup) == STOPPED:
        raise Conflict("container not running")
    resources = collect(args)
    cgroup.set(resources)
    saved = container.config.setdefault("linux", {}).setdefault("resources", {})
    for section, values in resources.items():
        if isinstance(values, dict) and isinstance(saved.get(section), dict):
            saved[section].update(values)
        else:
            saved[section] = values
    container.save()
    return 0
