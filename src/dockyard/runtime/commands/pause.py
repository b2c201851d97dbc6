"""`pause <id>`: freeze every process of the container (cgroup freezer)."""

from dockyard.errors import Conflict

from .. import lifecycle
from ..state import CREATED, RUNNING


def configure(p):
    p.add_argument("container_id")


def run(args) -> int:
    container, cgroup = lifecycle.load(args.root, args.container_id)
    if container.status(cgroup) not in (RUNNING, CREATED):
        raise Conflict("container not running")
    cgroup.freeze()
    return 0
