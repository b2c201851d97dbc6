"""`events [--stats] [--interval 5s] <id>`: resource statistics as runc prints them, one JSON
object per line; `--stats` prints one and exits, otherwise they stream until the container stops,
with an "oom" event whenever the cgroup's OOM-kill count goes up."""

import json
import re
import sys
import time

from dockyard.errors import Conflict, InvalidArgument

from .. import lifecycle
from ..state import STOPPED


def configure(p):
    p.add_argument("--interval", default="5s", help="set the stats collection interval")
    p.add_argument("--stats", action="store_true", help="display the container's stats then exit")
    p.add_argument("container_id")


def parse_interval(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    if not m:
        raise InvalidArgument(f"invalid interval {text!r}")
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def _emit(kind: str, cid: str, data=None) -> None:
    event = {"type": kind, "id": cid}
    if data is not None:
        event["data"] = data
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _oom_kills(stats: dict) -> int:
    return int(stats.get("memory", {}).get("raw", {}).get("oom_kill", 0) or 0)


def run(args) -> int:
    interval = parse_interval(args.interval)
    container, cgroup = lifecycle.load(args.root, args.container_id)
    if container.status(cgroup) == STOPPED:
        raise Conflict("container not running")
    if args.stats:
        _emit("stats", container.id, cgroup.stats())
        return 0
    last_oom = None
    while container.status(cgroup) != STOPPED:
        stats = cgroup.stats()
        ooms = _oom_kills(stats)
        if last_oom is not None and ooms > last_oom:
            _emit("oom", container.id)
        last_oom = ooms
        _emit("stats", container.id, stats)
        time.sleep(interval)
    return 0
