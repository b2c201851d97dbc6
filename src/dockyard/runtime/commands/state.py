"""`state <id>`: the runtime-spec state JSON."""

import json

from .. import lifecycle


def configure(p):
    p.add_argument("container_id")


def run(args) -> int:
    container, cgroup = lifecycle.load(args.root, args.container_id)
    print(json.dumps(container.oci_state(container.status(cgroup)), indent=2))
    return 0
