"""`list`: the containers under --root, as a table or JSON."""

import json

from .. import lifecycle
from ..state import list_ids


def configure(p):
    p.add_argument("--format", "-f", default="table", choices=["table", "json"])
    p.add_argument("--quiet", "-q", action="store_true", help="display only container IDs")


def run(args) -> int:
    states = []
    for cid in list_ids(args.root):
        try:
            container, cgroup = lifecycle.load(args.root, cid)
        except Exception:
            continue  # removed while we looked
        states.append(container.oci_state(container.status(cgroup)))
    if args.quiet:
        for s in states:
            print(s["id"])
    elif args.format == "json":
        print(json.dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0
