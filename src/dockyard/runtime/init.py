"""Stage 2: the container process itself, from the moment it exists in the new namespaces to
its execve. Two entries: `container_init` (the container's pid 1: builds the root filesystem,
then blocks on exec.fifo until `start`) and `exec_process` (a process `exec` adds to a running
container). Both end in `_finish`, which drops privileges in runc's order and execs.

Everything here runs in a forked child: it never returns; errors go to the parent as an
"error" message while the parent still listens, and to stderr afterwards. Every module it
needs is imported up front: after pivot_root the host's files are out of reach, and importing
code from the container's filesystem as host root is exactly what must never happen."""

import errno
import os
import signal
import socket
import sys

from dockyard.errors import InvalidArgument
from dockyard.linux import capabilities, keyring, prctl, user
from dockyard.linux import fds as fdutil
from dockyard.linux import seccomp as kernel_seccomp
from dockyard.linux.libc import check, libc

from . import execve, hooks, rootfs, sync, terminal


def container_init(launch, sock: socket.socket) -> None:
    status = 1
    try:
        sync.expect(sock, "go")
        os.setsid()
        if launch.new_keyring:
            _join_keyring(launch.container_id)
        config, process = launch.config, launch.process
        linux = config.get("linux", {})
        new = launch.new_namespaces

        def before_pivot():
            sync.send(sock, "ready")
            sync.expect(sock, "ready-ok")
            hooks.run_hooks("createContainer", config.get("hooks", {}).get("createContainer", []),
                            launch.hook_state(os.getpid(), "creating"))

        rootfs.prepare(config, launch.rootfs, cgroup=launch.cgroup,
                       new_cgroupns="cgroup" in new,
                       in_userns=any(t == "user" for t, _ in launch.namespaces),
                       terminal=bool(process.get("terminal")), no_pivot=launch.no_pivot,
                       before_pivot=before_pivot)
        if process.get("terminal"):
            terminal.setup(launch.console, process.get("consoleSize"), mount_console=True)
        if "hostname" in config:
            socket.sethostname(config["hostname"])
        if config.get("domainname"):
            _set_domainname(config["domainname"])
        # Before finalize: /proc/sys is one of the read-only paths.
        for key, value in (linux.get("sysctl") or {}).items():
            _write_sysctl(key, value)
        rootfs.finalize(config)
        if linux.get("personality"):
            p = linux["personality"]
            prctl.personality(p["domain"], p.get("flags"))
        _finish(launch, sock)
    except execve.ExecError as e:
        status = e.status
        _report(sock, e)
    except BaseException as e:
        _report(sock, e)
    os._exit(status)


def exec_process(launch, sock: socket.socket) -> None:
    status = 1
    try:
        sync.expect(sock, "go")
        if launch.process.get("terminal"):
            os.setsid()
            terminal.setup(launch.console, launch.process.get("consoleSize"), mount_console=False)
        _finish(launch, sock)
    except execve.ExecError as e:
        status = e.status
        _report(sock, e)
    except BaseException as e:
        _report(sock, e)
    os._exit(status)


def forbid_imports() -> None:
    """From here on the filesystem is the container's: a lazy import would either fail or,
    worse, run Python code planted in the image as root with all capabilities (the
    CVE-2019-14271 class). Drop the path-based importers so any import fails loudly; the
    modules we need are all loaded already."""
    sys.path[:] = []
    sys.path_importer_cache.clear()
    sys.meta_path[:] = [f for f in sys.meta_path
                        if getattr(f, "__name__", "") in ("BuiltinImporter", "FrozenImporter")]
    sys.path_hooks[:] = []


def _finish(launch, sock: socket.socket) -> None:
    process = launch.process
    nnp = bool(process.get("noNewPrivileges"))
    seccomp = launch.seccomp
    if nnp:
        prctl.set_no_new_privs()
    notify_fd = None
    # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before the caps
    # go. With it, load it as late as possible so fewer of our own syscalls pass through it;
    # a notify filter is loaded early in both cases, its fd must reach the parent.
    if seccomp is not None and (not nnp or seccomp.notify):
        notify_fd = _load_seccomp(seccomp)
    caps = process.get("capabilities")
    capabilities.drop_bounding(caps)  # also keeps the permitted set across the uid change
    u = process.get("user", {})
    user.set_user(u.get("uid", 0), u.get("gid", 0), u.get("additionalGids") or [], u.get("umask"))
    capabilities.set_capabilities(caps)
    _chdir(process.get("cwd") or "/")
    env = process.get("env") or []
    args = process.get("args") or []
    path = execve.resolve(args, env, launch.host_binary)
    sync.send(sock, "created", fds=[notify_fd] if notify_fd is not None else [])
    sock.close()
    if launch.init:
        _wait_for_start(launch.fifo_fd)
        hooks.run_hooks("startContainer", launch.config.get("hooks", {}).get("startContainer", []),
                        launch.hook_state(1, "running"))
    fdutil.close_from(3 + launch.preserve_fds)
    _default_signals()
    if seccomp is not None and nnp and not seccomp.notify:
        _load_seccomp(seccomp)
    execve.execute(path, args, env, launch.host_binary)


def _default_signals() -> None:
    """The interpreter ignores SIGPIPE and SIGXFSZ for itself, and ignored signals survive
    execve: give the container's program every signal at its default, none blocked."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # signals the C library reserves for itself
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _load_seccomp(compiled) -> int | None:
    return kernel_seccomp.install(compiled)


def _chdir(cwd: str) -> None:
    """chdir, then make sure the result is inside our root: a cwd reached through a leaked fd
    (CVE-2024-21626, cwd=/proc/self/fd/N) makes getcwd report an unreachable path."""
    try:
        os.chdir(cwd)
    except OSError as e:
        raise InvalidArgument(f"chdir to cwd ({cwd!r}) set in config.json failed: {e.strerror}") from None
    try:
        here = os.getcwd()
    except OSError:
        here = ""
    if not here.startswith("/"):
        raise InvalidArgument(f"current working directory {cwd!r} is outside of the container root")


def _join_keyring(container_id: str) -> None:
    try:
        keyring.join_session_keyring(f"_ses.{container_id}")
    except OSError as e:
        # Kernels built without keys, or a seccomp profile denying keyctl around us: runc
        # carries on without a keyring of its own there too.
        if e.errno not in (errno.ENOSYS, errno.EPERM, errno.EACCES):
            raise


def _wait_for_start(fifo_fd: int) -> None:
    """Block until `start` opens exec.fifo for reading (the create/start split)."""
    fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)


def _write_sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise InvalidArgument(f"sysctl {key}={value}: {e.strerror}") from None


def _set_domainname(name: str) -> None:
    data = name.encode()
    check(libc.setdomainname(data, len(data)), "setdomainname")


def _report(sock: socket.socket, e: BaseException) -> None:
    message = sync.describe(e)
    try:
        sync.send(sock, "error", message=message)
    except OSError:
        # The parent has gone (after `created`): stderr is the container's now.
        try:
            sys.stderr.write(f"dockyard-runc init: {message}\n")
            sys.stderr.flush()
        except OSError:
            pass
