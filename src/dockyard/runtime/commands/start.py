"""`start <id>`: release a created container's init to exec the user's process."""

from .. import lifecycle


def configure(p):
    p.add_argument("container_id")


def run(args) -> int:
    container, cgroup = lifecycle.load(args.root, args.container_id)
    lifecycle.start(container, cgroup)
    return 0
