"""`ps <id> [ps options]`: the host's ps, filtered to the container's processes."""

import json
import subprocess

from dockyard.errors import Conflict, SystemFailure

from .. import lifecycle
from ..state import STOPPED


def configure(p):
    p.add_argument("--format", "-f", default="table", choices=["table", "json"])
    p.add_argument("container_id")
    p.add_argument("ps_args", nargs="...")


def run(args) -> int:
    container, cgroup = lifecycle.load(args.root, args.container_id)
    if container.status(cgroup) == STOPPED:
        raise Conflict("container not running")
    pids = set(cgroup.pids()) if cgroup is not None else {container.pid}
    if args.format == "json":
        print(json.dumps(sorted(pids)))
        return 0
    ps_args = args.ps_args or ["-ef"]
    try:
        out = subprocess.run(["ps", *ps_args], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemFailure(f"ps: {getattr(e, 'stderr', '') or e}") from None
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise SystemFailure("couldn't find PID field in ps output")
    col = header.index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            print(line)
    return 0
