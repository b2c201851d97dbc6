"""`kill <id> [signal]`: the signal is positional, as runc takes it (default SIGTERM)."""

import signal

from dockyard.errors import Conflict, InvalidArgument

from .. import lifecycle
from ..state import CREATED, PAUSED, RUNNING


def configure(p):
    p.add_argument("--all", "-a", action="store_true", help="send the specified signal to all processes inside the container")
    p.add_argument("container_id")
    p.add_argument("signal", nargs="?", default="SIGTERM")


def parse_signal(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name].value
    except KeyError:
        raise InvalidArgument(f"unknown signal {text!r}") from None


def run(args) -> int:
    sig = parse_signal(args.signal)
    container, cgroup = lifecycle.load(args.root, args.container_id)
    status = container.status(cgroup)
    if status not in (CREATED, RUNNING, PAUSED):
        raise Conflict("container not running")
    if args.all:
        lifecycle.signal_all(cgroup, sig)
    else:
        lifecycle.signal_init(container, sig)
    # Frozen tasks only act on SIGKILL once thawed.
    if status == PAUSED and sig == signal.SIGKILL:
        cgroup.thaw()
    return 0
