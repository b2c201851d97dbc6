"""dockyard-ctr: a command-line client for dockyard-containerd, in the manner of containerd's
`ctr`: `dockyard-ctr [--address SOCK] [--namespace NS] COMMAND …`. Its output is what ctr
prints (the same columns, the same tabwriter layout), so an operator's habits and scripts carry
over. Modules:

  session   the connection: stubs per service, gRPC errors back to dockyard.errors
  output    ctr's table layout (Go's tabwriter), sizes and ages as ctr words them
  spec      the OCI runtime spec of a container run from a plain directory
  console   a task's stdio through the daemon's Tasks.Attach stream; raw mode and SIGWINCH for -t
  commands  one module per command (`configure(parser)`, each verb a `run(session, args)`)

Errors are one line on stderr and exit status 1; `run` and `tasks exec` exit with the
status of the process they ran."""

import argparse
import importlib
import os
import sys

from dockyard import cliargs
from dockyard.errors import DockyardError

COMMANDS = {
    "version": "print the client and server versions",
    "namespaces": "manage namespaces",
    "containers": "manage containers",
    "content": "manage content",
    "snapshots": "manage snapshots",
    "images": "manage images",
    "tasks": "manage tasks",
    "run": "run a container",
}
ALIASES = {"namespace": "namespaces", "ns": "namespaces", "container": "containers",
           "c": "containers", "snapshot": "snapshots", "image": "images", "i": "images",
           "task": "tasks", "t": "tasks"}

_VALUED_GLOBALS = {"--address", "-a", "--namespace", "-n", "--connect-timeout"}


def command_name(argv: list[str]) -> str | None:
    return cliargs.command_name(argv, COMMANDS, _VALUED_GLOBALS, ALIASES)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    from dockyard.containerd.daemon.config import DEFAULT_ADDRESS
    parser = argparse.ArgumentParser(prog="dockyard-ctr",
                                     description="a command-line client for dockyard-containerd")
    parser.add_argument("-a", "--address", default=os.environ.get("CONTAINERD_ADDRESS", DEFAULT_ADDRESS),
                        help=f"address of dockyard-containerd's socket (default {DEFAULT_ADDRESS}, "
                             "env CONTAINERD_ADDRESS)")
    parser.add_argument("-n", "--namespace", default=os.environ.get("CONTAINERD_NAMESPACE") or "default",
                        help='namespace to use (default "default", env CONTAINERD_NAMESPACE)')
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for the daemon to answer (default 10)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if only is None or name == only:
            aliases = [a for a, n in ALIASES.items() if n == name]
            command = sub.add_parser(name, aliases=aliases, help=help_text, description=help_text)
            if name == only:
                importlib.import_module(f"dockyard.ctr.commands.{name}").configure(command)
    return parser


def run(argv: list[str]) -> int:
    """Parses `argv` and runs the command; its exit status. The connection is left to the
    process's exit (see `main`)."""
    args = build_parser(command_name(argv)).parse_args(argv)
    if not getattr(args, "run", None):
        build_parser(command_name(argv)).print_help(sys.stderr)
        return 1
    from .session import Session
    session = Session(args.address, args.namespace, args.connect_timeout)
    try:
        return args.run(session, args) or 0
    except DockyardError as e:
        print(f"dockyard-ctr: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `dockyard-ctr … | head`: nobody reads the rest
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def main(argv: list[str] | None = None) -> int:
    """The console script. It ends with os._exit once its output is flushed: closing a gRPC
    channel (or letting the interpreter tear grpc down) costs ~170 ms of shutdown polling,
    more than the rest of a typical call; a CLI has nothing else to clean up by then (the
    terminal's mode is restored by the command itself)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        status = run(argv)
    except SystemExit as e:  # argparse: usage errors and --help
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            status = status or 1
    os._exit(status)
