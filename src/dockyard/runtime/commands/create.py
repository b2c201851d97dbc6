"""`create <id>`: set the container up and leave its init waiting for `start`."""

from dockyard.errors import Unsupported

from .. import lifecycle
from ..terminal import connect_console_socket


def configure(p):
    p.add_argument("--bundle", "-b", default=".", help="path to the root of the bundle directory")
    p.add_argument("--console-socket", default=None, help="path to an AF_UNIX socket which will receive the pty master")
    p.add_argument("--pid-file", default=None, help="file to write the init process id to")
    p.add_argument("--no-pivot", action="store_true", help="do not use pivot root to jail process inside rootfs")
    p.add_argument("--no-new-keyring", action="store_true", help="do not create a new session keyring")
    p.add_argument("--preserve-fds", type=int, default=0, help="pass N additional file descriptors to the container")
    p.add_argument("--pidfd-socket", default=None, help="not supported: refused with an error")
    p.add_argument("container_id")


def run(args) -> int:
    if args.pidfd_socket:
        raise Unsupported("--pidfd-socket is not supported by dockyard-runc yet")
    console = connect_console_socket(args.console_socket) if args.console_socket else None
    try:
        lifecycle.create(args.root, args.container_id, args.bundle, console=console,
                         pid_file=args.pid_file, no_pivot=args.no_pivot,
                         new_keyring=not args.no_new_keyring, preserve_fds=args.preserve_fds)
    finally:
        if console is not None:
            console.close()
    return 0
