"""dockyard-runc's command line, runc's dialect: `dockyard-runc [global options] COMMAND
[command options] ARGS`. Each verb lives in `commands/<verb>.py` with `configure(parser)` and
`run(args) -> exit status`; errors are one line on stderr (and in --log) and exit status 1."""

import argparse
import importlib
import sys

from dockyard import cliargs
from dockyard.errors import DockyardError

from . import log
from .state import DEFAULT_ROOT

COMMANDS = {
    "create": "create a container",
    "start": "executes the user defined process in a created container",
    "state": "output the state of a container",
    "kill": "kill sends the specified signal (default: SIGTERM) to the container's init process",
    "delete": "delete any resources held by the container often used with detached container",
    "run": "create and run a container",
    "exec": "execute new process inside the container",
    "list": "lists containers started by dockyard-runc with the given root",
    "ps": "ps displays the processes running inside a container",
    "pause": "pause suspends all processes inside the container",
    "resume": "resumes all processes that have been previously paused",
    "events": "display container events such as OOM notifications, cpu, memory, and IO usage statistics",
    "update": "update container resource constraints",
    "features": "show the enabled features",
    "spec": "create a new specification file",
}


# Global options that take a value, so the command name can be found without parsing.
_VALUED_GLOBALS = {"--root", "--log", "--log-format", "--rootless", "--criu"}


def command_name(argv: list[str]) -> str | None:
    return cliargs.command_name(argv, COMMANDS, _VALUED_GLOBALS)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dockyard-runc", description="a runc-compatible OCI runtime")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="root directory for storage of container state")
    parser.add_argument("--log", default=None, help="set the log file to write logs to")
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--debug", action="store_true")
    # Accepted for compatibility with callers that always pass them (containerd, docker).
    parser.add_argument("--systemd-cgroup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rootless", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--version", action="store_true")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each subparser costs most of a millisecond: with the verb known, only its own is built.
    for name, help_text in COMMANDS.items():
        if only is None or name == only:
            command = sub.add_parser(name, help=help_text, description=help_text)
            if name == only:
                importlib.import_module(f"dockyard.runtime.commands.{name}").configure(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_name(argv))
    args = parser.parse_args(argv)
    if args.version:
        from dockyard import __version__
        print(f"dockyard-runc version {__version__}\nspec: 1.2.0")
        return 0
    if not args.command:
        parser.print_help()
        return 0
    try:
        log.configure(args.log, args.log_format, args.debug)
    except OSError as e:
        print(f"dockyard-runc: cannot open log file {args.log}: {e.strerror}", file=sys.stderr)
        return 1
    if args.systemd_cgroup:
        log.error("the systemd cgroup driver is not supported")
        return 1
    module = importlib.import_module(f"dockyard.runtime.commands.{args.command}")
    try:
        return module.run(args)
    except DockyardError as e:
        log.error(str(e))
    except OSError as e:
        log.error(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
    except KeyboardInterrupt:
        log.error("interrupted")
    except Exception as e:  # a bug of ours: still one line, the traceback with --debug
        if args.debug:
            import traceback
            log.debug(traceback.format_exc())
        log.error(f"internal error: {type(e).__name__}: {e}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
