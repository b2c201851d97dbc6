"""The lifecycle operations of runtime-spec runtime.md §Operations, shared by the verbs:
create, start, signal, destroy. Each one either completes or leaves the system as it was.

Every verb is a fresh interpreter, so what only `create` needs (config validation, the launch
machinery, seccomp) is imported by `create` alone."""

import os
import select
import signal
import time

from dockyard.errors import Conflict, SystemFailure

from . import log
from .state import CREATED, PAUSED, RUNNING, STOPPED, Container, now_rfc3339, proc_start_time, write_atomic


def cgroup_of(container: Container):
    state = container.record.get("cgroup")
    if not state:
        return None
    from .cgroups import load_manager
    return load_manager(state)


def load(root: str, container_id: str):
    c = Container.load(root, container_id)
    return c, cgroup_of(c)


def create(root: str, container_id: str, bundle: str, *, console=None, pid_file=None,
           no_pivot=False, new_keyring=True, preserve_fds=0, foreground=False):
    """Set up the container and leave its init blocked on exec.fifo. Returns (container, started).
    A foreground caller with a terminal and no console socket gets the pty master itself
    (started.console), as `runc run` does."""
    from . import config as cfg
    from . import devices, hooks, launch
    from .cgroups import new_manager
    from .execve import host_runtime_identity
    bundle = os.path.abspath(bundle)
    config = cfg.load(bundle)
    cfg.validate(config)
    rootfs = cfg.rootfs_path(bundle, config)
    namespaces = cfg.namespace_list(config)
    process = config["process"]
    # The container's init can import nothing (see init.forbid_imports): load what it may need.
    if config.get("hooks"):
        hooks.preload()
    if any("tmpcopyup" in (m.get("options") or []) for m in config.get("mounts", [])):
        import shutil  # noqa: F401  (rootfs._tmpfs_copyup)
        import tempfile  # noqa: F401
    console, own_console = console_for(bool(process.get("terminal")), console, foreground)
    Container.reserve(root, container_id)
    container = Container(root, container_id, {
        "id": container_id, "pid": 0, "bundle": bundle, "rootfs": rootfs, "created": now_rfc3339(),
        "owner": _owner(), "config": config,
    })
    cgroup = None
    fifo_fd = None
    try:
        linux = config["linux"]
        seccomp = None
        if linux.get("seccomp"):
            from . import seccomp as seccomp_mod
            seccomp = seccomp_mod.compile(linux["seccomp"], cache_dir=os.path.join(root, ".seccomp-cache"))
        resources = dict(linux.get("resources") or {}, devices=devices.cgroup_rules(linux))
        cgroup = new_manager(container_id, linux.get("cgroupsPath"), resources)
        cgroup.create()
        cgroup.set(resources)
        container.record["cgroup"] = cgroup.state()
        os.mkfifo(container.fifo_path)
        os.chmod(container.fifo_path, 0o622)  # any container user may open it to write
        # An O_PATH handle: init reopens it through /proc/self/fd, so the state dir itself is
        # never reachable from inside the container.
        fifo_fd = os.open(container.fifo_path, os.O_PATH | os.O_CLOEXEC)
        extra = preserve_fds + int(os.environ.get("LISTEN_FDS", "0") or 0)
        spec = launch.Launch(
            container_id=container_id, config=config, process=process, bundle=bundle,
            rootfs=rootfs, init=True, namespaces=namespaces, host_binary=host_runtime_identity(),
            cgroup=cgroup, seccomp=seccomp, console=console, fifo_fd=fifo_fd,
            preserve_fds=extra, no_pivot=no_pivot, new_keyring=new_keyring, foreground=foreground)

        def on_pid(pid):
            # Saved as soon as there is a process, so `delete --force` can clean up after a
            # create that was itself killed half-way.
            container.record.update(pid=pid, init_start_time=proc_start_time(pid), creating=True)
            container.save()

        started = launch.start(spec, on_pid)
        del container.record["creating"]
        container.save()
        started.console = own_console
        os.close(fifo_fd)
        fifo_fd = None
        if started.seccomp_fd is not None:
            _send_seccomp_listener(linux["seccomp"], started.seccomp_fd, container)
        if pid_file:
            write_atomic(os.path.abspath(pid_file), str(started.pid).encode(), 0o644)
        return container, started
    except BaseException:
        if fifo_fd is not None:
            os.close(fifo_fd)
        if cgroup is not None:
            _remove_cgroup(cgroup)
        container.remove()
        raise


def console_for(terminal: bool, console, foreground: bool):
    """(the socket the container sends its pty master to, our end of it if we made one)."""
    if terminal and console is None:
        if not foreground:
            raise SystemFailure("cannot allocate tty if runc will detach without setting console socket")
        import socket
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return theirs, ours
    if not terminal and console is not None:
        raise SystemFailure("cannot use console socket if runc will not detach or allocate tty")
    return console, None


def _owner() -> str:
    import pwd
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _send_seccomp_listener(spec: dict, fd: int, container: Container) -> None:
    from . import seccomp
    try:
        seccomp.send_listener(spec["listenerPath"], fd, container.oci_state(CREATED),
                              spec.get("listenerMetadata", ""))
    finally:
        os.close(fd)


def start(container: Container, cgroup) -> None:
    status = container.status(cgroup)
    if status != CREATED:
        raise Conflict({STOPPED: "cannot start a container that has stopped",
                        RUNNING: "cannot start an already running container",
                        PAUSED: "cannot start a paused container"}.get(status, f"cannot start a container in state {status}"))
    # The pidfd first: once the fifo is open the init runs, and a short-lived program may
    # have exited (and been reaped by our caller) before we would look for it.
    try:
        pidfd = os.pidfd_open(container.pid)
    except ProcessLookupError:
        raise SystemFailure("container init died before it could be started") from None
    try:
        fifo = os.open(container.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            while True:
                readable, _, _ = select.select([fifo, pidfd], [], [])
                if fifo in readable and os.read(fifo, 1):
                    break
                if pidfd in readable:
                    raise SystemFailure("container init died before it could be started")
                time.sleep(0.001)  # a writer has not opened its end yet
        finally:
            os.close(fifo)
    finally:
        os.close(pidfd)
    os.unlink(container.fifo_path)
    poststart = container.config.get("hooks", {}).get("poststart", [])
    if poststart:
        from . import hooks
        try:
            hooks.run_hooks("poststart", poststart, container.oci_state(RUNNING))
        except Exception:
            # runtime-spec: a failing poststart hook stops the container.
            signal_init(container, signal.SIGKILL)
            raise


def signal_init(container: Container, sig: int) -> None:
    """Signal the init through a pidfd opened while it is verifiably the same process."""
    try:
        pidfd = os.pidfd_open(container.pid)
    except ProcessLookupError:
        raise Conflict("container not running") from None
    try:
        if not container.init_alive():
            raise Conflict("container not running")
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            raise Conflict("container not running") from None  # it exited just now
    finally:
        os.close(pidfd)


def signal_all(cgroup, sig: int) -> None:
    if cgroup is None:
        raise SystemFailure("container has no cgroup to find its processes in")
    for pid in cgroup.pids():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(container: Container, timeout: float = 10.0) -> None:
    try:
        pidfd = os.pidfd_open(container.pid)
    except ProcessLookupError:
        return
    try:
        if container.init_alive():
            select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)


def destroy(container: Container, cgroup) -> None:
    """Undo create: every process in the container's cgroup, the cgroup, the state dir;
    then the poststop hooks, whose failures are only warnings."""
    if container.init_alive():
        if cgroup is not None and cgroup.exists() and cgroup.is_frozen():
            cgroup.thaw()
        try:
            signal_init(container, signal.SIGKILL)
        except Conflict:
            pass
        wait_gone(container)
    if cgroup is not None:
        _remove_cgroup(cgroup)
    poststop = container.config.get("hooks", {}).get("poststop", [])
    state = container.oci_state(STOPPED)
    container.remove()
    if poststop:
        from . import hooks
        for warning in hooks.run_hooks("poststop", poststop, state, warn_only=True) or []:
            log.warning(warning)


def _remove_cgroup(cgroup) -> None:
    if not cgroup.exists():
        return
    if cgroup.is_frozen():
        cgroup.thaw()
    for _ in range(100):
        pids = cgroup.pids()
        if not pids:
            break
        signal_all(cgroup, signal.SIGKILL)
        time.sleep(0.01)
    cgroup.destroy()
