"""Starting a container process, as runc's nsexec stages do it, in three processes:

    parent (the CLI: create/run/exec) ── fork ──▶ stage 1: join/unshare namespaces,
                                                   user-ns maps via the parent, then fork
                                                   ──▶ stage 2: the container process
                                                       (init.container_init or init.exec_process)

A new pid (or time) namespace only applies to children, hence the second fork. The parent
puts stage 1 in the cgroup before it unshares anything, writes the user-ns maps, applies
rlimits and oom_score_adj to stage 2, and runs the runtime-namespace hooks when stage 2 says
its mounts are ready. Every step is acknowledged over one socketpair (see sync.py)."""

import os
import signal
import socket

from dockyard.errors import SystemFailure
from dockyard.linux import namespaces as ns
from dockyard.linux import prctl, rlimits

from . import hooks, init, sync


class Launch:
    """Everything the stages need to start one process; stage 1 and 2 see it through fork."""

    def __init__(self, *, container_id: str, config: dict, process: dict, bundle: str,
                 rootfs: str, init: bool, namespaces: list, host_binary: set, cgroup=None,
                 seccomp=None, console: socket.socket | None = None, fifo_fd: int | None = None,
                 preserve_fds: int = 0, no_pivot: bool = False, new_keyring: bool = True,
                 foreground: bool = False):
        self.container_id = container_id
        self.config = config            # the container's config.json, as saved at create
        self.process = process          # config["process"] for init, process.json for exec
        self.bundle = bundle
        self.rootfs = rootfs
        self.init = init                # the container's init, or a process exec'd into it
        self.namespaces = namespaces    # [(oci type, path or None for a new one)]
        self.host_binary = host_binary  # identity of our interpreter (execve.refuse_host_binary)
        self.cgroup = cgroup
        self.seccomp = seccomp          # a compiled filter, see runtime/seccomp.py
        self.console = console
        self.fifo_fd = fifo_fd
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.new_keyring = new_keyring  # a session keyring of its own (runc's default)
        self.foreground = foreground    # stage 1 waits for stage 2 and exits with its status

    @property
    def new_namespaces(self) -> set[str]:
        return {t for t, p in self.namespaces if not p}

    def hook_state(self, pid: int, status: str) -> dict:
        state = {"ociVersion": "1.2.0", "id": self.container_id, "status": status,
                 "pid": pid, "bundle": self.bundle}
        if self.config.get("annotations"):
            state["annotations"] = self.config["annotations"]
        return state


class Started:
    """What the parent knows once the process is set up and waiting (init) or running (exec)."""

    def __init__(self, pid: int, stage1_pid: int, seccomp_fd: int | None):
        self.pid = pid
        self.stage1_pid = stage1_pid
        self.seccomp_fd = seccomp_fd
        self.console = None  # our end of the console socket, when we hold the pty ourselves

    def wait(self) -> int:
        """Foreground only: stage 1 relays stage 2's exit as its own."""
        while True:
            try:
                _, status = os.waitpid(self.stage1_pid, 0)
                return os.waitstatus_to_exitcode(status)
            except InterruptedError:
                continue


def start(launch: Launch, on_pid=None) -> Started:
    """Fork the stages and drive them until the process is ready; on any failure kill
    what was forked and raise, leaving nothing running."""
    parent_sock, child_sock = sync.pair()
    stage1_pid = os.fork()
    if stage1_pid == 0:
        parent_sock.close()
        _stage1(launch, child_sock)
    child_sock.close()
    pid = 0
    try:
        if launch.cgroup is not None:
            launch.cgroup.apply(stage1_pid)
        sync.send(parent_sock, "cgroup-ok")
        if "user" in launch.new_namespaces:
            sync.expect(parent_sock, "userns")
            _write_id_maps(stage1_pid, launch.config.get("linux", {}))
            sync.send(parent_sock, "userns-ok")
        msg, _ = sync.expect(parent_sock, "pid")
        pid = msg["pid"]
        if not launch.foreground:
            _reap(stage1_pid)
        _apply_process_limits(pid, launch.process)
        if on_pid:
            on_pid(pid)
        sync.send(parent_sock, "go")
        if launch.init:
            sync.expect(parent_sock, "ready")
            state = launch.hook_state(pid, "creating")
            hook_cfg = launch.config.get("hooks", {})
            hooks.run_hooks("prestart", hook_cfg.get("prestart", []), state)
            hooks.run_hooks("createRuntime", hook_cfg.get("createRuntime", []), state)
            sync.send(parent_sock, "ready-ok")
        _, fds = sync.expect(parent_sock, "created")
        return Started(pid, stage1_pid, fds[0] if fds else None)
    except BaseException:
        for p in (pid, stage1_pid):
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _reap(stage1_pid)
        raise
    finally:
        parent_sock.close()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_id_maps(pid: int, linux: dict) -> None:
    def fmt(maps):
        return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps or [])
    try:
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(fmt(linux.get("uidMappings")))
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(fmt(linux.get("gidMappings")))
    except OSError as e:
        raise SystemFailure(f"cannot write user namespace id mappings: {e.strerror}") from None


def _apply_process_limits(pid: int, process: dict) -> None:
    if process.get("rlimits"):
        rlimits.apply(pid, process["rlimits"])
    if "oomScoreAdj" in process:
        try:
            with open(f"/proc/{pid}/oom_score_adj", "w") as f:
                f.write(str(process["oomScoreAdj"]))
        except OSError as e:
            raise SystemFailure(f"cannot set oomScoreAdj to {process['oomScoreAdj']}: {e.strerror}") from None


# --- stage 1 (a forked child; never returns) ---------------------------------------------------

def _stage1(launch: Launch, sock: socket.socket) -> None:
    status = 1
    try:
        # Nothing in the container may open this process's /proc entries (its exe is the host
        # interpreter): non-dumpable before joining anything; stage 2 inherits it. Likewise no
        # import may happen once we stand in the container's namespaces.
        prctl.set_dumpable(False)
        init.forbid_imports()
        sync.expect(sock, "cgroup-ok")
        _join_namespaces(launch.namespaces)
        new = launch.new_namespaces
        if "user" in new:
            ns.unshare(ns.CLONE_NEWUSER)
            sync.send(sock, "userns")
            sync.expect(sock, "userns-ok")
        if "user" in {t for t, _ in launch.namespaces}:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for kind in new - {"user"}:
            flags |= ns.NAMESPACES[kind][0]
        if flags:
            ns.unshare(flags)
        if "time" in new:
            _write_time_offsets(launch.config.get("linux", {}).get("timeOffsets") or {})
        pid = os.fork()
        if pid == 0:
            if launch.init:
                init.container_init(launch, sock)
            else:
                init.exec_process(launch, sock)
        sync.send(sock, "pid", pid=pid)
        status = 0
        if launch.foreground:
            sock.close()
            _, wstatus = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(wstatus)
            status = code if code >= 0 else 128 - code
    except BaseException as e:  # report, never unwind into the parent's code
        try:
            sync.send(sock, "error", message=sync.describe(e))
        except OSError:
            pass
    finally:
        os._exit(status)


def _join_namespaces(namespaces: list) -> None:
    """Open every path first (they are host paths; joining the mount namespace would hide them)."""
    opened = []
    try:
        for kind, path in namespaces:
            if path:
                try:
                    opened.append((kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
                except OSError as e:
                    raise SystemFailure(f"cannot open {kind} namespace {path}: {e.strerror}") from None
        opened.sort(key=lambda item: ns.JOIN_ORDER.index(item[0]))
        for kind, fd in opened:
            try:
                ns.setns(fd, ns.NAMESPACES[kind][0])
            except OSError as e:
                raise SystemFailure(f"cannot join {kind} namespace: {e.strerror}") from None
    finally:
        for _, fd in opened:
            os.close(fd)


def _write_time_offsets(offsets: dict) -> None:
    lines = []
    for clock in ("monotonic", "boottime"):
        if clock in offsets:
            o = offsets[clock]
            lines.append(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n")
    if lines:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write("".join(lines))
