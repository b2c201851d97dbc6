"""`delete [--force] <id>`: release everything create made. Like runc, a created container is
deleted without --force (its waiting init is killed); a running one needs --force."""

from dockyard.errors import Conflict, NotFound

from .. import lifecycle
from ..state import CREATED, STOPPED, Container


def configure(p):
    p.add_argument("--force", "-f", action="store_true", help="forcibly deletes the container if it is still running (uses SIGKILL)")
    p.add_argument("container_id")


def run(args) -> int:
    try:
        container, cgroup = lifecycle.load(args.root, args.container_id)
    except NotFound:
        if args.force:
            # A create killed before it recorded anything leaves only its directory behind.
            Container(args.root, args.container_id, {}).remove()
            return 0
        raise
    status = container.status(cgroup)
    if status not in (STOPPED, CREATED) and not args.force:
        raise Conflict(f"cannot delete container {args.container_id} that is not stopped: {status}")
    lifecycle.destroy(container, cgroup)
    return 0
