"""`run <id>`: create and start; in the foreground, wait, then delete (unless --keep)."""

from .. import foreground, lifecycle
from ..terminal import connect_console_socket


def configure(p):
    p.add_argument("--bundle", "-b", default=".")
    p.add_argument("--console-socket", default=None)
    p.add_argument("--detach", "-d", action="store_true", help="detach from the container's process")
    p.add_argument("--keep", action="store_true", help="do not delete the container after it exits")
    p.add_argument("--pid-file", default=None)
    p.add_argument("--no-pivot", action="store_true")
    p.add_argument("--no-new-keyring", action="store_true")
    p.add_argument("--preserve-fds", type=int, default=0)
    p.add_argument("container_id")


def run(args) -> int:
    console = connect_console_socket(args.console_socket) if args.console_socket else None
    try:
        container, started = lifecycle.create(
            args.root, args.container_id, args.bundle, console=console, pid_file=args.pid_file,
            no_pivot=args.no_pivot, new_keyring=not args.no_new_keyring,
            preserve_fds=args.preserve_fds, foreground=not args.detach)
    finally:
        if console is not None:
            console.close()
    cgroup = lifecycle.cgroup_of(container)
    try:
        lifecycle.start(container, cgroup)
    except BaseException:
        lifecycle.destroy(container, cgroup)
        raise
    if args.detach:
        return 0
    code = foreground.run(started)
    if not args.keep:
        lifecycle.destroy(container, cgroup)
    return code
