"""`resume <id>`: thaw a paused container."""

from dockyard.errors import Conflict

from .. import lifecycle
from ..state import PAUSED


def configure(p):
    p.add_argument("container_id")


def run(args) -> int:
    container, cgroup = lifecycle.load(args.root, args.container_id)
    if container.status(cgroup) != PAUSED:
        raise Conflict("container not paused")
    cgroup.thaw()
    return 0
