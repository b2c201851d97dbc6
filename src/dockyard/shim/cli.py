"""`dockyard-shim start` and `dockyard-shim delete`: the two short-lived invocations around a
shim's life, as containerd-shim-runc-v2 has them.

start   makes `<state-dir>/<ns>/<id>/`, binds `shim.sock` there (0600), and starts the daemon:
        fork, setsid, fork again, become the child subreaper, stdio to /dev/null, cwd /, the
        listening socket as fd 3, and run the daemon in that grandchild — no second interpreter
        start-up on every container's path (so `ps` shows the `dockyard-shim start --namespace NS
        --id ID …` it was started as). Once the daemon has written shim.pid and says it is
        ready on a pipe, print the socket path and exit 0. On any error: one line on stderr,
        exit 1, and nothing left behind.
delete  cleans up after a shim that is gone: `runtime delete --force`, the exit status from
        the `exit` file (255 and now when there is none), printed as JSON, the shim's files
        and directory removed."""

import argparse
import json
import os
import signal
import sys
import time

from dockyard.linux import unixsock

from .daemon import EXIT_FILE, PID_FILE, SOCKET, own_file
from .jsonlog import rfc3339nano



class StartError(Exception):
    pass


def default_runtime() -> str:
    return os.path.join(os.path.dirname(sys.executable), "dockyard-runc")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", "-namespace", required=True)
    p.add_argument("--id", "-id", required=True)
    p.add_argument("--bundle", "-bundle", required=True)
    p.add_argument("--state-dir", "-state-dir", required=True)
    p.add_argument("--runtime", "-runtime", default=None,
                   help="OCI runtime binary (default: dockyard-runc next to this interpreter)")
    p.add_argument("--runtime-root", "-runtime-root", default=None, help="the runtime's --root")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dockyard-shim", description="one process per container")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = sub.add_parser("start", help="start a shim for a container and print its socket")
    _common(start)
    start.add_argument("--log-path", default=None, help="json-file log of the container's output")
    start.add_argument("--log-max-size", type=int, default=-1, help="rotate the log at this size (bytes)")
    start.add_argument("--log-max-file", type=int, default=1, help="log files to keep, with the current one")
    start.add_argument("--stdin", action="store_true", help="keep the container's stdin open for attach")
    start.add_argument("--tty", action="store_true", help="the container has a terminal (console socket)")
    delete = sub.add_parser("delete", help="clean up after a shim that is gone")
    _common(delete)
    return parser


def _check_name(kind: str, value: str) -> None:
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        raise StartError(f"invalid {kind} {value!r}")


def _daemon_argv(args, sock_fd: int, ready_fd: int) -> list[str]:
    """The daemon's own arguments (dockyard.shim.daemon.Config)."""
    opts = ["-namespace", args.namespace, "-id", args.id, "-bundle", args.bundle,
            "-state-dir", args.state_dir, "-runtime", args.runtime]
    if args.runtime_root:
        opts += ["-runtime-root", args.runtime_root]
    if args.log_path:
        opts += ["-log-path", args.log_path, "-log-max-size", str(args.log_max_size),
                 "-log-max-file", str(args.log_max_file)]
    opts += ["-stdin"] * args.stdin + ["-tty"] * args.tty
    opts += ["-socket-fd", str(sock_fd), "-ready-fd", str(ready_fd)]
    return opts


def start(args) -> int:
    _check_name("namespace", args.namespace)
    _check_name("id", args.id)
    args.bundle = os.path.abspath(args.bundle)
    args.state_dir = os.path.abspath(args.state_dir)
    args.runtime = os.path.abspath(args.runtime or default_runtime())
    if args.runtime_root:
        args.runtime_root = os.path.abspath(args.runtime_root)
    if args.log_path:
        args.log_path = os.path.abspath(args.log_path)
        if not os.path.isdir(os.path.dirname(args.log_path)):
            raise StartError(f"log directory {os.path.dirname(args.log_path)} does not exist")
    if not os.path.isfile(os.path.join(args.bundle, "config.json")):
        raise StartError(f"bundle {args.bundle}: no config.json")
    if not os.access(args.runtime, os.X_OK):
        raise StartError(f"runtime {args.runtime} is not an executable")
    shim_dir = os.path.join(args.state_dir, args.namespace, args.id)
    sock_path = os.path.join(shim_dir, SOCKET)
    if os.path.lexists(sock_path):
        raise StartError(f"a shim for {args.namespace}/{args.id} exists already ({sock_path}); "
                         "delete it first")
    made = [d for d in (os.path.dirname(shim_dir), shim_dir) if not os.path.isdir(d)]
    import socket
    sock = None
    try:
        os.makedirs(shim_dir, mode=0o711, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            unixsock.bind(sock, sock_path)
        finally:
            os.umask(old_umask)
        os.chmod(sock_path, 0o600)
        sock.listen(128)
        pid = _spawn_daemon(args, sock)
    except BaseException as e:
        if sock is not None:
            sock.close()
        _remove_own_files(shim_dir, made)
        if isinstance(e, OSError):
            raise StartError(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}") from None
        raise
    sock.close()
    print(sock_path, flush=True)
    return 0 if pid else 1


def _spawn_daemon(args, sock) -> int:
    """Double fork into a new session; returns the daemon's pid once it is ready."""
    r, w = os.pipe()  # O_CLOEXEC: only the fds we pass on reach the daemon
    child = os.fork()
    if child == 0:  # the intermediate: a new session, and gone at once
        try:
            os.setsid()
            if os.fork() == 0:
                _run_daemon(args, sock, r, w)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    with os.fdopen(r, "rb") as ready:
        answer = ready.read(4096).decode(errors="replace").strip()
    pid_path = os.path.join(args.state_dir, args.namespace, args.id, PID_FILE)
    if answer != "ok":
        pid = _read_pid(pid_path)
        if pid:
            _kill(pid)
        raise StartError(answer.removeprefix("error: ") if answer else "the shim exited before it was ready")
    return _read_pid(pid_path)


def _run_daemon(args, sock, r: int, w: int) -> None:
    """In the grandchild: never returns (the daemon runs here until it exits, or _exit after
    reporting a failure on the ready pipe)."""
    try:
        os.close(r)
        from dockyard.linux.prctl import set_child_subreaper
        set_child_subreaper()
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        # The listener as fd 3, the ready pipe as fd 4, and nothing else we may have inherited.
        # The socket object lets go of its descriptor first: collected later, it would close
        # whatever the daemon had opened under that number by then.
        listener = sock.detach()
        high = max(listener, w) + 1
        os.dup2(listener, high)
        os.dup2(w, high + 1)
        os.dup2(high, 3)
        os.dup2(high + 1, 4)
        w = 4
        os.closerange(5, os.sysconf("SC_OPEN_MAX"))
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        from . import daemon
        code = daemon.main(_daemon_argv(args, 3, w))
    except BaseException as e:  # noqa: BLE001 - anything: report it, never return to the caller's code
        try:
            os.write(w, f"error: cannot start the shim daemon: {e}\n".encode())
        finally:
            os._exit(1)
    os._exit(code)


def _read_pid(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove_own_files(shim_dir: str, made_dirs: list[str]) -> None:
    try:
        names = os.listdir(shim_dir)
    except FileNotFoundError:
        return
    for name in names:
        if own_file(name):
            try:
                os.unlink(os.path.join(shim_dir, name))
            except OSError:
                pass
    for d in reversed(made_dirs) if made_dirs else ():
        try:
            os.rmdir(d)
        except OSError:
            break


def _is_shim(pid: int, namespace: str, cid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    # Started by `start` (its --namespace/--id argv), or by hand as `dockyard-shim -namespace …`.
    wants = [[flag + b"namespace", namespace.encode(), flag + b"id", cid.encode()] for flag in (b"--", b"-")]
    return any(argv[i:i + 4] in wants for i in range(len(argv)))


def delete(args) -> int:
    _check_name("namespace", args.namespace)
    _check_name("id", args.id)
    runtime = os.path.abspath(args.runtime or default_runtime())
    shim_dir = os.path.join(os.path.abspath(args.state_dir), args.namespace, args.id)
    pid = _read_pid(os.path.join(shim_dir, PID_FILE))
    if pid and _is_shim(pid, args.namespace, args.id):
        _kill(pid)  # a hung shim: it must not act on the container behind our back
    argv = [runtime, *(["--root", args.runtime_root] if args.runtime_root else []), "delete", "--force", args.id]
    import subprocess  # only here: `start` stays light
    try:
        r = subprocess.run(argv, cwd=args.bundle if os.path.isdir(args.bundle) else "/",
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise StartError(f"{runtime} delete: {e}") from None
    if r.returncode != 0 and "not exist" not in r.stderr and "not found" not in r.stderr:
        print(f"dockyard-shim: warning: runtime delete: {r.stderr.strip()}", file=sys.stderr)
    status, exited_at = 255, rfc3339nano(time.time_ns())
    try:
        with open(os.path.join(shim_dir, EXIT_FILE)) as f:
            recorded = json.load(f)
        status, exited_at = int(recorded["status"]), str(recorded["exited_at"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    _remove_own_files(shim_dir, [os.path.dirname(shim_dir), shim_dir])
    print(json.dumps({"exit_status": status, "exited_at": exited_at}))
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        return start(args) if args.command == "start" else delete(args)
    except StartError as e:
        print(f"dockyard-shim: {e}", file=sys.stderr)
        return 1
