"""`exec <id> [command...]` or `exec -p process.json <id>`: run a new process in the
container's namespaces and cgroup, with the container's seccomp filter."""

import json
import os

from dockyard.errors import Conflict, InvalidArgument, Unsupported
from dockyard.linux.namespaces import NAMESPACES

from .. import foreground, launch, lifecycle
from ..execve import host_runtime_identity
from ..state import PAUSED, STOPPED, write_atomic
from ..terminal import connect_console_socket


def configure(p):
    p.add_argument("--process", "-p", default=None, help="path to the process.json")
    p.add_argument("--detach", "-d", action="store_true")
    p.add_argument("--tty", "-t", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--console-socket", default=None)
    p.add_argument("--pid-file", default=None)
    p.add_argument("--env", "-e", action="append", default=[], help="set environment variables")
    p.add_argument("--cwd", default=None, help="current working directory in the container")
    p.add_argument("--user", "-u", default=None, help="UID (format: <uid>[:<gid>])")
    p.add_argument("--additional-gids", "-g", action="append", type=int, default=[])
    p.add_argument("--cap", "-c", action="append", default=[], help="add a capability to the bounding set")
    p.add_argument("--no-new-privs", action="store_true")
    p.add_argument("--apparmor", default=None)
    p.add_argument("--process-label", default=None)
    p.add_argument("--preserve-fds", type=int, default=0)
    p.add_argument("--ignore-paused", action="store_true")
    p.add_argument("container_id")
    p.add_argument("process_args", nargs="...", metavar="command")


def build_process(args, base: dict) -> dict:
    """process.json as given, or the container's process with the command-line changes."""
    if args.process:
        try:
            with open(args.process) as f:
                process = json.load(f)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"cannot read process {args.process}: {e}") from None
        if not isinstance(process, dict) or not process.get("args"):
            raise InvalidArgument(f"process {args.process}: args must not be empty")
        return process
    if not args.process_args:
        raise InvalidArgument("exec: a command is required")
    process = {k: v for k, v in base.items() if k not in ("args", "terminal", "consoleSize")}
    process["args"] = list(args.process_args)
    process["terminal"] = args.tty
    process["env"] = list(base.get("env") or []) + args.env
    if args.cwd:
        process["cwd"] = args.cwd
    if args.user:
        uid, _, gid = args.user.partition(":")
        try:
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise InvalidArgument(f"exec: invalid user {args.user!r}: want <uid>[:<gid>]") from None
    if args.additional_gids:
        process.setdefault("user", {})["additionalGids"] = args.additional_gids
    if args.cap:
        caps = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        for cap in args.cap:
            for key in ("bounding", "effective", "permitted", "ambient", "inheritable"):
                if cap not in caps.setdefault(key, []):
                    caps[key].append(cap)
        process["capabilities"] = caps
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    if args.apparmor:
        process["apparmorProfile"] = args.apparmor
    if args.process_label:
        process["selinuxLabel"] = args.process_label
    return process


def run(args) -> int:
    container, cgroup = lifecycle.load(args.root, args.container_id)
    status = container.status(cgroup)
    if status == STOPPED:
        raise Conflict("cannot exec in a stopped container")
    if status == PAUSED and not args.ignore_paused:
        raise Conflict("cannot exec in a paused container (use --ignore-paused to override)")
    config = container.config
    process = build_process(args, config.get("process") or {})
    if process.get("apparmorProfile") or process.get("selinuxLabel"):
        raise Unsupported("apparmor and selinux are not enabled on this system")
    namespaces = [(n["type"], f"/proc/{container.pid}/ns/{NAMESPACES[n['type']][1]}")
                  for n in config["linux"].get("namespaces", [])]
    seccomp = None
    if config["linux"].get("seccomp"):
        from .. import seccomp as seccomp_mod
        seccomp = seccomp_mod.compile(config["linux"]["seccomp"],
                                      cache_dir=os.path.join(args.root, ".seccomp-cache"))
    console = connect_console_socket(args.console_socket) if args.console_socket else None
    console, own_console = lifecycle.console_for(bool(process.get("terminal")), console,
                                                 not args.detach)
    spec = launch.Launch(
        container_id=container.id, config=config, process=process, bundle=container.record["bundle"],
        rootfs=container.record["rootfs"], init=False, namespaces=namespaces,
        host_binary=host_runtime_identity(), cgroup=cgroup, seccomp=seccomp, console=console,
        preserve_fds=args.preserve_fds, foreground=not args.detach)
    try:
        started = launch.start(spec)
    finally:
        if console is not None:
            console.close()
    started.console = own_console
    if args.pid_file:
        write_atomic(os.path.abspath(args.pid_file), str(started.pid).encode(), 0o644)
    if args.detach:
        return 0
    return foreground.run(started)
