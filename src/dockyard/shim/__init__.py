"""dockyard-shim: one process per container (containerd-shim-runc-v2's role). It is the parent
and child subreaper of the container's init, runs the OCI runtime CLI for it, owns its stdio
and json-file log, records its exit status on disk, and outlives dockyardd and
dockyard-containerd. Modules:

  protocol  the framed request/response protocol on shim.sock (pure, documented there)
  jsonlog   Docker's json-file entries and line splitting (pure)
  logfile   the rotating log file
  daemon    the running shim: event loop, processes, runtime calls
  cli       `dockyard-shim start` / `dockyard-shim delete`
  client    ShimClient, for dockyard-containerd and tests

`start` runs the daemon in a process it forks (one interpreter start-up per container, not
two). The daemon can also be run on its own: this entry point with containerd-style flags
(`-namespace NS -id ID …`) and no verb, given a listening socket as -socket-fd."""

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("start", "delete", "-h", "--help"):
        from . import cli
        return cli.main(argv)
    from . import daemon
    return daemon.main(argv)
