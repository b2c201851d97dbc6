"""The running shim: one process per container, in its own session, the child subreaper of
everything the runtime starts. It serves the protocol of `protocol.py` on shim.sock, runs the
OCI runtime CLI for each lifecycle verb, owns the container's stdio (pipes, or the pty master
received over a console socket), writes the output to the json-file log and to attached
clients, reaps the init and any orphan, and records the init's exit in `<dir>/exit` before it
tells anyone.

One thread and one epoll loop; SIGCHLD and SIGTERM arrive as bytes on a wakeup pipe. Requests
that need the runtime are generators that yield "awaitables" (functions taking a completion
callback) and are resumed when the runtime process is reaped, so a slow runtime call never
stops the output from being copied. Imports are kept to C modules and our pure modules: an
idle shim is a Python interpreter and little more (see bench/shim_memory.py)."""

import _signal
import _socket
import os
import select
import sys
import time

from dockyard import atomicfile
from dockyard.linux import unixsock

from . import protocol as P
from .jsonlog import LineSplitter, encode_entry, rfc3339nano
from .logfile import LogFile

CREATED, RUNNING, PAUSED, STOPPED = "created", "running", "paused", "stopped"
READ_SIZE = 64 * 1024
CLIENT_BUFFER_LIMIT = 1 << 20  # output queued for one slow client before its frames are dropped
EXEC_BACKLOG_LIMIT = 1 << 20   # an exec's output kept until its first attach
STDIN_LIMIT = 4 << 20
IN, OUT = select.EPOLLIN | select.EPOLLRDHUP, select.EPOLLOUT
GONE = select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
# Dispositions we change here and a child must not inherit (exec keeps SIG_IGN).
IGNORED_SIGNALS = (_signal.SIGPIPE, _signal.SIGHUP, _signal.SIGINT, _signal.SIGXFSZ)

# Files the shim makes in its directory; everything else there (a bundle, say) is not ours.
SOCKET, PID_FILE, EXIT_FILE, INIT_PID, DIAG_LOG = "shim.sock", "shim.pid", "exit", "init.pid", "shim.log"


def own_file(name: str) -> bool:
    return (name in (SOCKET, PID_FILE, EXIT_FILE, INIT_PID, DIAG_LOG)
            or name.startswith((EXIT_FILE + ".tmp", PID_FILE + ".tmp"))  # atomicfile's
            or (name.startswith(("console-", "exec-")) and name.endswith((".sock", ".pid"))))


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Config:
    """The daemon's arguments, containerd-shim style (`-namespace NS -id ID …`): what `start` hands it."""

    VALUED = ("namespace", "id", "bundle", "state-dir", "runtime", "runtime-root", "log-path",
              "log-max-size", "log-max-file", "socket-fd", "ready-fd")
    FLAGS = ("stdin", "tty")

    def __init__(self, argv: list[str]):
        values, flags = {}, set()
        it = iter(argv)
        for arg in it:
            name = arg.lstrip("-")
            if name in self.VALUED:
                values[name] = next(it, None)
            elif name in self.FLAGS:
                flags.add(name)
            else:
                raise ValueError(f"unknown argument {arg!r}")
        for required in ("namespace", "id", "bundle", "state-dir", "runtime", "socket-fd"):
            if not values.get(required):
                raise ValueError(f"-{required} is required")
        self.namespace, self.id, self.bundle = values["namespace"], values["id"], values["bundle"]
        self.dir = os.path.join(values["state-dir"], self.namespace, self.id)
        self.runtime, self.runtime_root = values["runtime"], values.get("runtime-root")
        self.log_path = values.get("log-path")
        self.log_max_size = int(values.get("log-max-size") or -1)
        self.log_max_file = int(values.get("log-max-file") or 1)
        self.socket_fd = int(values["socket-fd"])
        self.ready_fd = int(values["ready-fd"]) if values.get("ready-fd") else -1
        self.stdin, self.tty = "stdin" in flags, "tty" in flags


class Loop:
    def __init__(self):
        self.epoll = select.epoll()
        self.handlers = {}

    def add(self, fd: int, mask: int, handler) -> None:
        self.epoll.register(fd, mask)
        self.handlers[fd] = handler

    def modify(self, fd: int, mask: int) -> None:
        if fd in self.handlers:
            self.epoll.modify(fd, mask)

    def remove(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    def run_once(self, timeout: float = -1) -> None:
        for fd, events in self.epoll.poll(timeout):
            handler = self.handlers.get(fd)
            if handler is not None:
                handler(events)


class RuntimeResult:
    def __init__(self, code: int, stdout: bytes, error: str):
        self.code, self.stdout, self.error = code, stdout, error


class Conn:
    """One client connection: a frame decoder in, a buffer out; after `attach`, a stream."""

    def __init__(self, shim, sock):
        self.shim, self.sock, self.fd = shim, sock, sock.fileno()
        self.decoder = P.FrameDecoder()
        self.out = bytearray()
        self.closed = self.close_when_flushed = False
        self.attached = None  # the Process whose output this connection streams
        self.subscribed = False  # an event stream (`subscribe`)
        self.stdin_ok = False
        self.dropped = 0
        shim.loop.add(self.fd, IN, self.on_event)

    def send(self, data: bytes, droppable: bool = False) -> None:
        if self.closed:
            return
        if droppable and len(self.out) > CLIENT_BUFFER_LIMIT:
            self.dropped += len(data)  # a slow client loses output; the log and others do not
            return
        if not self.out:
            try:
                data = data[self.sock.send(data):]
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return
            if not data:
                return
            self.shim.loop.modify(self.fd, IN | OUT)
        self.out += data

    def finish(self) -> None:
        """Close once everything queued has been sent."""
        if not self.out:
            self.close()
        else:
            self.close_when_flushed = True

    def on_event(self, events: int) -> None:
        if events & OUT and self.out:
            try:
                del self.out[:self.sock.send(self.out)]
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return
            if not self.out:
                if self.close_when_flushed:
                    self.close()
                    return
                self.shim.loop.modify(self.fd, IN)
        if events & (select.EPOLLIN | GONE):
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            try:
                frames = self.decoder.feed(data)
            except P.ProtocolError as e:
                frames = []
                self.send(P.encode_error(None, P.INVALID, str(e)))
                if e.fatal:
                    self.finish()
                    return
            for kind, body in frames:
                if self.closed:
                    return
                self.shim.on_frame(self, kind, body)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.shim.loop.remove(self.fd)
        self.sock.close()
        if self.attached is not None:
            self.attached.attached.discard(self)
        self.shim.subscribers.discard(self)
        self.shim.conns.discard(self)


class Process:
    """The container's init ("" exec id) or one exec: its pid, state, stdio and waiters."""

    def __init__(self, shim, exec_id: str, terminal: bool, stdin: bool, spec=None):
        self.shim, self.exec_id, self.terminal, self.want_stdin, self.spec = shim, exec_id, terminal, stdin, spec
        self.pid = 0
        self.status = CREATED
        self.exit_status, self.exited_at = 0, ""
        self.outputs = {}  # fd -> [stream, LineSplitter or None]
        self.stdin_fd = -1
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.master = -1
        self.log = None
        self.attached = set()
        self.backlog = [] if exec_id else None
        self.backlog_size = 0
        self.waiters = []
        self.starting = self.deleting = False  # a runtime exec / delete for it is in flight

    # -- stdio --------------------------------------------------------------------------------

    def setup_pipes(self) -> tuple[int, int, int]:
        """Pipes for stdin (or /dev/null), stdout, stderr; returns the child's ends."""
        child = []
        if self.want_stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(w, False)
            self.stdin_fd = w
            child.append(r)
        else:
            child.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        for stream in ("stdout", "stderr"):
            r, w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(r, False)
            self.outputs[r] = [stream, None]
            child.append(w)
        return child[0], child[1], child[2]

    def set_master(self, master: int) -> None:
        os.set_blocking(master, False)
        self.master = master
        self.outputs[master] = ["stdout", None]
        if self.want_stdin:
            self.stdin_fd = master

    def start_output(self) -> None:
        """Begin copying: before this the pipes hold only what the runtime itself wrote."""
        for fd, entry in self.outputs.items():
            if self.log is not None:
                entry[1] = LineSplitter()
            handler = (lambda events, fd=fd: self.on_master(events)) if fd == self.master else \
                (lambda events, fd=fd: self.read_output(fd))
            self.shim.loop.add(fd, IN, handler)

    def read_output(self, fd: int) -> None:
        """Read what is there now (until EAGAIN or EOF); log it and fan it out."""
        entry = self.outputs.get(fd)
        while entry is not None:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:  # EIO: the pty's last slave fd was closed
                data = b""
            if not data:
                self.close_output(fd)
                return
            self.emit(entry, data)
            if len(data) < READ_SIZE:
                return

    def emit(self, entry, data: bytes) -> None:
        stream, splitter = entry
        if splitter is not None:
            ns = time.time_ns()
            lines = splitter.feed(data, ns)
            if lines:
                self.shim.write_log(self, [encode_entry(line, stream, t) for line, t in lines])
        frame = P.encode_frame(P.STDOUT if stream == "stdout" else P.STDERR, data)
        for conn in self.attached:
            conn.send(frame, droppable=True)
        if self.backlog is not None and self.backlog_size < EXEC_BACKLOG_LIMIT:
            self.backlog.append(frame)
            self.backlog_size += len(frame)

    def close_output(self, fd: int) -> None:
        entry = self.outputs.pop(fd, None)
        if entry is None:
            return
        stream, splitter = entry
        if splitter is not None:
            rest = splitter.close(time.time_ns())
            if rest:
                self.shim.write_log(self, [encode_entry(line, stream, t) for line, t in rest])
        self.shim.loop.remove(fd)
        if fd == self.master:
            return  # the master stays open for resize and stdin until the process is deleted
        os.close(fd)

    def drain(self) -> None:
        for fd in list(self.outputs):
            self.read_output(fd)

    def on_master(self, events: int) -> None:
        if events & OUT:
            self.flush_stdin()
        if events & (select.EPOLLIN | GONE):
            self.read_output(self.master)

    def write_stdin(self, data: bytes) -> None:
        if self.stdin_fd < 0 or self.stdin_closing:
            return
        if len(self.stdin_buf) + len(data) > STDIN_LIMIT:
            self.shim.diag(f"stdin of {self.exec_id or 'init'}: buffer full, {len(data)} bytes dropped")
            return
        self.stdin_buf += data
        self.flush_stdin()

    def flush_stdin(self) -> None:
        fd = self.stdin_fd
        if fd < 0:
            return
        try:
            while self.stdin_buf:
                del self.stdin_buf[:os.write(fd, self.stdin_buf)]
        except BlockingIOError:
            pass
        except OSError:  # EPIPE: nobody reads stdin any more
            self.stdin_buf.clear()
            self.stdin_closing = True
        self._watch_stdin()
        if self.stdin_closing and not self.stdin_buf:
            self._close_stdin_now()

    def _watch_stdin(self) -> None:
        fd = self.stdin_fd
        if fd < 0:
            return
        want_out = OUT if self.stdin_buf else 0
        if fd == self.master:
            if fd in self.shim.loop.handlers:
                self.shim.loop.modify(fd, IN | want_out)
            elif want_out:  # output already at EOF, still something to write
                self.shim.loop.add(fd, OUT, self.on_master)
        elif want_out and fd not in self.shim.loop.handlers:
            self.shim.loop.add(fd, OUT, lambda events: self.flush_stdin())
        elif not want_out:
            self.shim.loop.remove(fd)

    def close_stdin(self) -> None:
        self.stdin_closing = True
        if not self.stdin_buf:
            self._close_stdin_now()

    def _close_stdin_now(self) -> None:
        fd, self.stdin_fd = self.stdin_fd, -1
        self.stdin_buf.clear()
        if fd < 0:
            return
        if fd == self.master:
            if fd not in self.outputs:
                self.shim.loop.remove(fd)
            return  # a terminal has no end of input to send: closing stdin just stops writing
        self.shim.loop.remove(fd)
        os.close(fd)

    def close_all(self) -> None:
        for fd in list(self.outputs):
            self.close_output(fd)
        self._close_stdin_now()
        if self.master >= 0:
            self.shim.loop.remove(self.master)
            os.close(self.master)
            self.master = -1
        for conn in list(self.attached):
            conn.finish()
        if self.log is not None:
            self.log.close()
            self.log = None

    def state(self) -> dict:
        return {"id": self.shim.cfg.id, "exec_id": self.exec_id, "bundle": self.shim.cfg.bundle,
                "pid": self.pid, "status": self.status, "terminal": self.terminal,
                "stdin": self.want_stdin, "exit_status": self.exit_status, "exited_at": self.exited_at,
                "oom_kills": self.shim.oom_kills}


class OomWatch:
    """OOM notifications from the memory cgroup of the container's init, without polling.
    v1: an eventfd registered on memory.oom_control through cgroup.event_control; each
    notification is one OOM. v2: memory.events, which kernfs flags with EPOLLPRI on change; an
    OOM each time its `oom_kill` count grows. `check` is called by the loop and before the
    init's exit is announced, so an OOM is always counted before the exit it caused."""

    CGROUP_ROOT = "/sys/fs/cgroup"

    def __init__(self, shim, pid: int):
        self.shim = shim
        self.fd = self.control = -1
        self.v2 = False
        self.last = 0
        path, self.v2 = self.find(pid)
        if self.v2:
            self.fd = os.open(os.path.join(path, "memory.events"), os.O_RDONLY | os.O_CLOEXEC)
            self.last = self.read_oom_kill()
            shim.loop.add(self.fd, select.EPOLLPRI, self.on_event)
            return
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            self.control = os.open(os.path.join(path, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            ec = os.open(os.path.join(path, "cgroup.event_control"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(ec, f"{self.fd} {self.control}".encode())
            finally:
                os.close(ec)
        except BaseException:
            self.close()
            raise
        self.event_control = os.path.join(path, "cgroup.event_control")
        shim.loop.add(self.fd, select.EPOLLIN, self.on_event)

    @classmethod
    def find(cls, pid: int) -> tuple[str, bool]:
        """(the memory cgroup's directory, whether it is cgroup v2); OSError if there is none."""
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        unified = None
        for line in lines:
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                unified = parts[2]
            elif "memory" in parts[1].split(","):
                path = os.path.join(cls.CGROUP_ROOT, "memory", parts[2].lstrip("/"))
                if os.path.isfile(os.path.join(path, "memory.oom_control")):
                    return path, False
        if unified is not None and os.path.exists(os.path.join(cls.CGROUP_ROOT, "cgroup.controllers")):
            path = os.path.join(cls.CGROUP_ROOT, unified.lstrip("/"))
            if os.path.isfile(os.path.join(path, "memory.events")):
                return path, True
        raise FileNotFoundError("no memory cgroup")

    def read_oom_kill(self) -> int:
        for line in _read_all(self.fd).decode(errors="replace").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return self.last

    def on_event(self, events: int) -> None:
        self.check()

    def check(self) -> None:
        if self.fd < 0:
            return
        if self.v2:
            try:
                count = self.read_oom_kill()
            except OSError:  # the cgroup is gone
                self.close()
                return
            new, self.last = max(0, count - self.last), max(count, self.last)
        else:
            try:
                new = int.from_bytes(os.read(self.fd, 8), sys.byteorder)
            except BlockingIOError:
                return
            if not os.path.exists(self.event_control):  # signalled because the cgroup was removed
                self.close()
                return
            new = 1 if new else 0  # one notification, however many the counter coalesced
        if new:
            self.shim.oom(new)

    def close(self) -> None:
        if self.fd >= 0:
            self.shim.loop.remove(self.fd)
            os.close(self.fd)
            self.fd = -1
        if self.control >= 0:
            os.close(self.control)
            self.control = -1


class ConsoleSocket:
    """Where the runtime sends the pty master (runc's --console-socket): one connection, one
    message, the fd in SCM_RIGHTS. The connection waits in the backlog until `receive`, which
    runs once the runtime has exited, so no event-loop plumbing is needed."""

    def __init__(self, path: str):
        self.path = path
        # What the runtime is given: the path, or /proc/<our pid>/fd/… when it is too long.
        self.address = unixsock.Address(path, pid=os.getpid())
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.bind(self.address.name)
        os.chmod(path, 0o600)
        self.sock.listen(1)
        self.sock.setblocking(False)

    def receive(self) -> int:
        try:
            fd, _ = self.sock._accept()
        except BlockingIOError:
            raise P.ShimError(P.FAILED, "the runtime did not send a pty master on the console socket") from None
        conn = _socket.socket(fileno=fd)
        try:
            conn.settimeout(5)
            _, ancdata, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(4))
        finally:
            conn.close()
        for level, kind, data in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
                fds = [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)]
                for extra in fds[1:]:
                    os.close(extra)
                os.set_inheritable(fds[0], False)
                return fds[0]
        raise P.ShimError(P.FAILED, "console socket: no pty master received")

    def close(self) -> None:
        self.sock.close()
        self.address.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _is_own_runtime(path: str) -> bool:
    """Whether `path` is the dockyard-runc of this very installation (then it runs forked)."""
    own = os.path.join(os.path.dirname(sys.executable), "dockyard-runc")
    try:
        return os.path.samefile(path, own)
    except OSError:
        return False


def _fork_runtime(args: list[str], fds) -> int:
    """dockyard-runc ARGS in a fork of this shim instead of a new interpreter (each exec of it
    costs ~50 ms of start-up and imports, three times per container): the child takes `fds` as
    its stdio, drops the shim's signal set-up and runs the runtime's CLI in-process. The same
    command line, log file and exit status as the exec'd runtime; its init still closes every
    inherited descriptor but stdio before the user's program runs (runtime/init.py)."""
    from dockyard.runtime import cli  # once per shim (~0.5 MB): each fork then starts with it
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _signal.set_wakeup_fd(-1)  # the shim's pipe: its SIGCHLD handling is not ours
        for sig in (_signal.SIGCHLD, _signal.SIGTERM, *IGNORED_SIGNALS):
            _signal.signal(sig, _signal.SIG_DFL)
        for n, fd in enumerate(fds):
            os.dup2(fd, n)
        code = cli.main(args)
    except BaseException:  # noqa: BLE001 - never back into the shim's loop
        code = 1
    finally:
        os._exit(code)


class Shim:
    def __init__(self, cfg: Config, listener):
        self.cfg = cfg
        self.runtime_in_process = _is_own_runtime(cfg.runtime)
        self.loop = Loop()
        self.listener = listener
        self.listener.setblocking(False)
        self.loop.add(listener.fileno(), select.EPOLLIN, self.on_accept)
        self.conns = set()
        self.procs = {}      # exec id -> Process; "" is the init
        self.by_pid = {}     # pid -> Process, while it runs
        self.children = {}   # pid of a runtime invocation -> callback(exit code)
        self.early = {}      # exits of pids not known yet, kept while a create or exec runs
        self.expecting = 0
        self.busy = False    # a create is in flight
        self.deleted = False
        self.stopping = False
        self.serial = 0
        self.subscribers = set()  # connections turned into event streams
        self.oom_kills = 0
        self.oom_watch = None
        self._signals()

    # -- plumbing -----------------------------------------------------------------------------

    def _signals(self) -> None:
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.wakeup = r
        _signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in (_signal.SIGCHLD, _signal.SIGTERM):
            _signal.signal(sig, _noop)
        for sig in IGNORED_SIGNALS:
            _signal.signal(sig, _signal.SIG_IGN)
        self.loop.add(r, select.EPOLLIN, self.on_signal)

    def on_signal(self, events: int) -> None:
        try:
            signals = os.read(self.wakeup, 256)
        except BlockingIOError:
            return
        if _signal.SIGCHLD in signals:
            self.reap()
        if _signal.SIGTERM in signals:
            init = self.procs.get("")
            if init is None or init.status == STOPPED:
                self.stopping = True  # nothing runs: a graceful stop
            else:
                self.diag("SIGTERM ignored: the container is running (kill or delete it first)")

    def reap(self) -> None:
        batch = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            batch.append((pid, exit_code(status)))
        ns = time.time_ns()
        callbacks = []
        for pid, code in batch:
            if pid in self.children:
                callbacks.append((self.children.pop(pid), code))
            elif pid in self.by_pid:
                self.exited(self.by_pid.pop(pid), code, ns)
            elif self.expecting:
                self.early[pid] = (code, ns)
            # else: an orphan re-parented to us, now reaped
        for callback, code in callbacks:
            callback(code)
        if not self.expecting:
            self.early.clear()

    def diag(self, msg: str) -> None:
        """The shim's own diagnostics, one logfmt line (its stdio is /dev/null)."""
        line = f'time="{rfc3339nano(time.time_ns())}" level=warning msg={P.dumps(msg)}\n'
        try:
            fd = os.open(os.path.join(self.cfg.dir, DIAG_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def write_log(self, proc: Process, entries: list[bytes]) -> None:
        try:
            proc.log.write(entries)
        except OSError as e:  # a full disk loses log lines, never the container
            self.diag(f"writing {self.cfg.log_path}: {e.strerror}")

    def on_accept(self, events: int) -> None:
        while True:
            try:
                fd, _ = self.listener._accept()
            except BlockingIOError:
                return
            except OSError as e:
                self.diag(f"accept: {e.strerror}")
                return
            sock = _socket.socket(fileno=fd)
            sock.setblocking(False)
            self.conns.add(Conn(self, sock))

    def serve(self) -> None:
        while not self.stopping:
            self.loop.run_once()
        # Give the last answers (shutdown's own) a moment to leave, then go.
        deadline = time.monotonic() + 1
        while any(c.out for c in self.conns) and time.monotonic() < deadline:
            self.loop.run_once(0.05)
        self.cleanup()

    def cleanup(self) -> None:
        self.stop_oom_watch()
        for proc in self.procs.values():
            proc.close_all()
        for conn in list(self.conns):
            conn.close()
        for name in os.listdir(self.cfg.dir):
            if own_file(name):
                try:
                    os.unlink(os.path.join(self.cfg.dir, name))
                except OSError:
                    pass
        for d in (self.cfg.dir, os.path.dirname(self.cfg.dir)):
            try:
                os.rmdir(d)
            except OSError:
                break

    # -- requests -----------------------------------------------------------------------------

    def on_frame(self, conn: Conn, kind: int, body: bytes) -> None:
        if kind == P.REQUEST:
            self.on_request(conn, body)
        elif kind in (P.STDIN, P.STDIN_CLOSE) and conn.stdin_ok and conn.attached is not None:
            if kind == P.STDIN:
                conn.attached.write_stdin(body)
            else:
                conn.attached.close_stdin()
        elif kind in (P.STDIN, P.STDIN_CLOSE):
            conn.send(P.encode_error(None, P.INVALID, "stdin frame on a connection not attached with stdin"))
        else:
            conn.send(P.encode_error(None, P.INVALID, f"unexpected frame type {kind}"))

    def on_request(self, conn: Conn, body: bytes) -> None:
        try:
            req_id, method, params = P.decode_request(body)
        except P.ShimError as e:
            conn.send(P.encode_error(e.req_id, e.code, str(e)))
            return

        def reply(result, error):
            if error is not None:
                conn.send(P.encode_error(req_id, error.code, str(error)))
            else:
                conn.send(P.encode_result(req_id, result))

        if conn.attached is not None or conn.subscribed:
            what = "an attach" if conn.attached is not None else "an event"
            reply(None, P.ShimError(P.INVALID, f"the connection is {what} stream; open another for requests"))
            return
        try:
            outcome = getattr(self, "op_" + method)(conn, params)
        except P.ShimError as e:
            reply(None, e)
            return
        except Exception as e:  # a bug of ours: answer it, keep serving
            self.diag(f"{method}: internal error: {type(e).__name__}: {e}")
            reply(None, P.ShimError(P.FAILED, f"internal error: {type(e).__name__}: {e}"))
            return
        if outcome is None or isinstance(outcome, dict):
            reply(outcome, None)
            if method == "attach":
                self.attach_now(conn)
            elif method == "subscribe":
                conn.subscribed = True
                self.subscribers.add(conn)
        else:
            self.drive(outcome, reply)

    def drive(self, gen, reply, value=None, exc=None) -> None:
        try:
            awaitable = gen.send(value) if exc is None else gen.throw(exc)
        except StopIteration as stop:
            reply(stop.value, None)
            return
        except P.ShimError as e:
            reply(None, e)
            return
        except Exception as e:
            self.diag(f"internal error: {type(e).__name__}: {e}")
            reply(None, P.ShimError(P.FAILED, f"internal error: {type(e).__name__}: {e}"))
            return
        awaitable(lambda v, x: self.drive(gen, reply, v, x))

    # -- awaitables ---------------------------------------------------------------------------

    def runtime(self, *args: str, stdio=None, stdin_data: bytes = b""):
        """Run `<runtime> [--root R] --log <memfd> --log-format json ARGS`; resumes with a
        RuntimeResult. stdio: the child's (stdin, stdout, stderr), else stdout is captured."""
        def start(done):
            log = os.memfd_create("runtime-log", os.MFD_CLOEXEC)
            out = err = inp = -1
            try:
                if stdio is None:
                    out = os.memfd_create("runtime-out", os.MFD_CLOEXEC)
                    err = os.memfd_create("runtime-err", os.MFD_CLOEXEC)
                    inp = os.memfd_create("runtime-in", os.MFD_CLOEXEC)
                    os.write(inp, stdin_data)
                    os.lseek(inp, 0, os.SEEK_SET)
                    fds = (inp, out, err)
                else:
                    fds = stdio
                argv = [self.cfg.runtime]
                if self.cfg.runtime_root:
                    argv += ["--root", self.cfg.runtime_root]
                argv += ["--log", f"/proc/{os.getpid()}/fd/{log}", "--log-format", "json", *args]
                if self.runtime_in_process:
                    pid = _fork_runtime(argv[1:], fds)
                else:
                    pid = os.posix_spawn(self.cfg.runtime, argv, os.environ,
                                         file_actions=[(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(fds)],
                                         setsigdef=IGNORED_SIGNALS)
            except OSError as e:
                for fd in (log, out, err, inp):
                    if fd >= 0:
                        os.close(fd)
                done(None, P.ShimError(P.FAILED, f"cannot run {self.cfg.runtime}: {e.strerror or e}"))
                return
            if inp >= 0:
                os.close(inp)

            def exited(code):
                stdout = _read_all(out) if out >= 0 else b""
                stderr = _read_all(err) if err >= 0 else b""
                logged = _read_all(log)
                for fd in (log, out, err):
                    if fd >= 0:
                        os.close(fd)
                done(RuntimeResult(code, stdout, _runtime_error(logged, stderr, code)), None)
            self.children[pid] = exited
        return start

    def exit_of(self, proc: Process):
        def start(done):
            if proc.status == STOPPED:
                done(None, None)
            else:
                proc.waiters.append(lambda: done(None, None))
        return start

    def check(self, result: RuntimeResult, what: str) -> RuntimeResult:
        if result.code != 0:
            raise P.ShimError(P.FAILED, f"{what}: {result.error}")
        return result

    # -- process life -------------------------------------------------------------------------

    def exited(self, proc: Process, code: int, ns: int) -> None:
        proc.drain()  # whatever it wrote before it died goes to the log before its exit does
        if proc.exec_id == "":
            self.stop_oom_watch()  # an OOM that killed it is counted, and sent, before its exit
        proc.status, proc.exit_status, proc.exited_at = STOPPED, code, rfc3339nano(ns)
        if proc.exec_id == "":
            try:
                atomicfile.write(os.path.join(self.cfg.dir, EXIT_FILE),
                             P.dumps({"status": code, "exited_at": proc.exited_at}).encode())
            except OSError as e:
                self.diag(f"writing the exit file: {e.strerror}")
        waiters, proc.waiters = proc.waiters, []
        for waiter in waiters:
            waiter()
        frame = P.encode_exit(code, proc.exited_at)
        for conn in list(proc.attached):
            conn.send(frame)
            conn.finish()

    def attach_now(self, conn: Conn) -> None:
        proc, stdin = conn.pending_attach
        del conn.pending_attach
        conn.attached, conn.stdin_ok = proc, stdin
        proc.attached.add(conn)
        if proc.backlog:
            for frame in proc.backlog:
                conn.send(frame)
        proc.backlog = None  # the first attach takes the output from before it
        if proc.status == STOPPED:
            conn.send(P.encode_exit(proc.exit_status, proc.exited_at))
            conn.finish()

    def spawn_process(self, proc: Process, args: list[str], pid_file: str):
        """Generator: run a runtime verb that leaves `proc` running (create, exec) with its
        stdio wired to us; register it by the pid the runtime writes."""
        console = None
        child = ()
        self.expecting += 1
        try:
            if proc.terminal:
                self.serial += 1
                console = ConsoleSocket(os.path.join(self.cfg.dir, f"console-{self.serial}.sock"))
                child = tuple(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC) for _ in range(3))
                args = args[:-1] + ["--console-socket", console.address.name, args[-1]]
            else:
                child = proc.setup_pipes()
            result = yield self.runtime(*args, stdio=child)
            for fd in set(child):
                os.close(fd)
            child = ()
            self.check(result, args[0])
            if console is not None:
                proc.set_master(console.receive())
            with open(pid_file) as f:
                pid = int(f.read().strip())
        except BaseException:
            for fd in set(child):
                os.close(fd)
            proc.close_all()
            raise
        finally:
            self.expecting -= 1
            if console is not None:
                console.close()
        proc.pid = pid
        proc.start_output()
        self.by_pid[pid] = proc
        if pid in self.early:
            del self.by_pid[pid]
            self.exited(proc, *self.early.pop(pid))

    # -- methods ------------------------------------------------------------------------------

    def lookup(self, params: dict) -> Process:
        exec_id = params.get("exec_id") or ""
        if not isinstance(exec_id, str):
            raise P.ShimError(P.INVALID, "exec_id must be a string")
        proc = self.procs.get(exec_id)
        if proc is None:
            what = f"exec {exec_id!r}" if exec_id else "task"
            raise P.ShimError(P.NOT_FOUND, f"{what} not found in container {self.cfg.id}")
        return proc

    def op_connect(self, conn, params):
        init = self.procs.get("")
        return {"shim_pid": os.getpid(), "task_pid": init.pid if init else 0, "version": P.VERSION}

    def op_create(self, conn, params):
        if self.busy or "" in self.procs or self.deleted:
            raise P.ShimError(P.CONFLICT, f"task {self.cfg.id} already created")
        proc = Process(self, "", self.cfg.tty, self.cfg.stdin)
        if self.cfg.log_path:
            try:
                proc.log = LogFile(self.cfg.log_path, self.cfg.log_max_size, self.cfg.log_max_file)
            except OSError as e:
                raise P.ShimError(P.FAILED, f"log file {self.cfg.log_path}: {e.strerror}") from None
        self.busy = True
        pid_file = os.path.join(self.cfg.dir, INIT_PID)
        try:
            yield from self.spawn_process(
                proc, ["create", "--bundle", self.cfg.bundle, "--pid-file", pid_file, self.cfg.id], pid_file)
        finally:
            self.busy = False
        self.procs[""] = proc
        if proc.status != STOPPED:
            self.start_oom_watch(proc.pid)
        return {"pid": proc.pid}

    def op_start(self, conn, params):
        proc = self.lookup(params)
        if proc.status != CREATED:
            raise P.ShimError(P.CONFLICT, f"cannot start a {proc.status} process")
        if proc.exec_id == "":
            result = yield self.runtime("start", self.cfg.id)
            # A quick init (`true`) can exit, and be reaped here, before the runtime has done
            # with its pid, and a runtime may then fail with ESRCH: it did start. A created
            # init that nobody started does not exit on its own.
            if proc.status != STOPPED:
                self.check(result, "start")
            if proc.status == CREATED:
                proc.status = RUNNING
            return {"pid": proc.pid}
        if proc.pid or proc.starting:
            raise P.ShimError(P.CONFLICT, f"exec {proc.exec_id!r} already started")
        init = self.procs.get("")
        if init is None or init.status != RUNNING:
            raise P.ShimError(P.CONFLICT, "cannot exec: the task is not running")
        proc.starting = True
        self.serial += 1
        pid_file = os.path.join(self.cfg.dir, f"exec-{self.serial}.pid")
        spec = os.memfd_create("process", os.MFD_CLOEXEC)
        try:
            os.write(spec, P.dumps(proc.spec).encode())
            yield from self.spawn_process(
                proc, ["exec", "--detach", "--process", f"/proc/{os.getpid()}/fd/{spec}",
                       "--pid-file", pid_file, self.cfg.id], pid_file)
        finally:
            os.close(spec)
            proc.starting = False
            try:
                os.unlink(pid_file)
            except FileNotFoundError:
                pass
        if proc.status == CREATED:
            proc.status = RUNNING
        return {"pid": proc.pid}

    def op_exec(self, conn, params):
        exec_id, spec = params.get("exec_id"), params.get("process")
        if not isinstance(exec_id, str) or not exec_id:
            raise P.ShimError(P.INVALID, "exec needs an exec_id")
        if not isinstance(spec, dict) or not isinstance(spec.get("args"), list) or not spec["args"]:
            raise P.ShimError(P.INVALID, "exec needs an OCI process with args")
        if exec_id in self.procs:
            raise P.ShimError(P.CONFLICT, f"exec {exec_id!r} already exists")
        init = self.procs.get("")
        if init is None or init.status != RUNNING:
            raise P.ShimError(P.CONFLICT, "cannot exec: the task is not running")
        self.procs[exec_id] = Process(self, exec_id, bool(spec.get("terminal")), bool(params.get("stdin")), spec)
        return {}

    def op_state(self, conn, params):
        return self.lookup(params).state()

    def op_kill(self, conn, params):
        proc = self.lookup(params)
        sig, all_ = params.get("signal", 15), bool(params.get("all"))
        if not isinstance(sig, int) or isinstance(sig, bool) or not 0 < sig < 65:
            raise P.ShimError(P.INVALID, f"invalid signal {sig!r}")
        if proc.status == STOPPED and not (proc.exec_id == "" and all_):
            raise P.ShimError(P.NOT_FOUND, "process already finished")
        if proc.exec_id == "":
            args = ["kill", *(["--all"] if all_ else []), self.cfg.id, str(sig)]
            self.check((yield self.runtime(*args)), "kill")
            return {}
        if not proc.pid:
            raise P.ShimError(P.CONFLICT, f"exec {proc.exec_id!r} has not started")
        os.kill(proc.pid, sig)
        return {}

    def op_delete(self, conn, params):
        proc = self.lookup(params)
        if proc.status in (RUNNING, PAUSED):
            raise P.ShimError(P.CONFLICT, f"cannot delete a {proc.status} process: kill it first")
        if proc.exec_id == "":
            if proc.deleting:
                raise P.ShimError(P.CONFLICT, "delete already in progress")
            proc.deleting = True
            try:
                # --force: a created task's init is still waiting for `start`.
                self.check((yield self.runtime("delete", "--force", self.cfg.id)), "delete")
                yield self.exit_of(proc)
            finally:
                proc.deleting = False
            for other in list(self.procs.values()):
                other.close_all()
            self.procs.clear()
            self.deleted = True
        else:
            if proc.starting:
                raise P.ShimError(P.CONFLICT, f"exec {proc.exec_id!r} is starting")
            proc.close_all()
            del self.procs[proc.exec_id]
        return {"pid": proc.pid, "exit_status": proc.exit_status, "exited_at": proc.exited_at}

    def op_pause(self, conn, params):
        init = self.lookup({})
        if init.status != RUNNING:
            raise P.ShimError(P.CONFLICT, f"cannot pause a {init.status} task")
        self.check((yield self.runtime("pause", self.cfg.id)), "pause")
        if init.status == RUNNING:
            init.status = PAUSED
        return {}

    def op_resume(self, conn, params):
        init = self.lookup({})
        if init.status != PAUSED:
            raise P.ShimError(P.CONFLICT, f"cannot resume a {init.status} task")
        self.check((yield self.runtime("resume", self.cfg.id)), "resume")
        if init.status == PAUSED:
            init.status = RUNNING
        return {}

    def op_pids(self, conn, params):
        init = self.lookup({})
        if init.status in (CREATED, STOPPED):
            by_pid = [init.pid] if init.status == CREATED else []
        else:
            result = self.check((yield self.runtime("ps", "--format", "json", self.cfg.id)), "ps")
            try:
                by_pid = P.loads(result.stdout)
            except ValueError:
                raise P.ShimError(P.FAILED, "ps: the runtime printed no JSON list") from None
        execs = {p.pid: p.exec_id for p in self.procs.values() if p.pid}
        return {"pids": [{"pid": pid, "exec_id": execs.get(pid, "")} for pid in by_pid]}

    def op_stats(self, conn, params):
        init = self.lookup({})
        if init.status == STOPPED:
            raise P.ShimError(P.CONFLICT, "the task is stopped")
        result = self.check((yield self.runtime("events", "--stats", self.cfg.id)), "stats")
        try:
            event = P.loads(result.stdout.splitlines()[0])
        except (ValueError, IndexError):
            raise P.ShimError(P.FAILED, "stats: the runtime printed no JSON event") from None
        return {"stats": event.get("data", {}) if isinstance(event, dict) else {}}

    def op_update(self, conn, params):
        init = self.lookup({})
        resources = params.get("resources")
        if not isinstance(resources, dict):
            raise P.ShimError(P.INVALID, "update needs resources (a linux.resources object)")
        if init.status == STOPPED:
            raise P.ShimError(P.CONFLICT, "the task is stopped")
        self.check((yield self.runtime("update", "-r", "-", self.cfg.id,
                                       stdin_data=P.dumps(resources).encode())), "update")
        return {}

    def op_resize(self, conn, params):
        proc = self.lookup(params)
        width, height = params.get("width"), params.get("height")
        if not all(isinstance(v, int) and 0 <= v < 65536 for v in (width, height)):
            raise P.ShimError(P.INVALID, "resize needs width and height (0-65535)")
        if proc.master < 0:
            raise P.ShimError(P.INVALID if not proc.terminal else P.CONFLICT,
                              "the process has no terminal" if not proc.terminal else "the terminal is not set up yet")
        import fcntl  # C modules, loaded on the first resize only
        import termios
        size = b"".join(v.to_bytes(2, sys.byteorder) for v in (height, width, 0, 0))
        fcntl.ioctl(proc.master, termios.TIOCSWINSZ, size)
        return {}

    def op_close_stdin(self, conn, params):
        self.lookup(params).close_stdin()
        return {}

    def op_wait(self, conn, params):
        proc = self.lookup(params)
        yield self.exit_of(proc)
        return {"exit_status": proc.exit_status, "exited_at": proc.exited_at}

    def op_attach(self, conn, params):
        proc = self.lookup(params)
        stdin = bool(params.get("stdin"))
        if stdin and not proc.want_stdin:
            raise P.ShimError(P.INVALID, "the process was created without stdin")
        conn.pending_attach = (proc, stdin)
        return {}

    def op_subscribe(self, conn, params):
        return {"oom_kills": self.oom_kills}  # on_request then makes the connection a stream

    # -- OOM events ---------------------------------------------------------------------------

    def start_oom_watch(self, pid: int) -> None:
        try:
            self.oom_watch = OomWatch(self, pid)
        except OSError as e:
            self.diag(f"no OOM notifications: {e.strerror or e}")

    def stop_oom_watch(self) -> None:
        watch, self.oom_watch = self.oom_watch, None
        if watch is not None:
            watch.check()
            watch.close()

    def oom(self, count: int) -> None:
        self.oom_kills += count
        frame = P.encode_event(P.OOM, oom_kills=self.oom_kills)
        for conn in list(self.subscribers):
            conn.send(frame)

    def op_shutdown(self, conn, params):
        if self.procs.get("") is not None:
            raise P.ShimError(P.CONFLICT, f"task {self.cfg.id} still exists: delete it first")
        self.stopping = True
        return {}


def _noop(signum, frame):
    pass


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _runtime_error(logged: bytes, stderr: bytes, code: int) -> str:
    """The last error the runtime logged (runc's --log-format json), else its stderr."""
    for line in reversed(logged.splitlines()):
        try:
            entry = P.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal") and entry.get("msg"):
            return str(entry["msg"])
    text = stderr.decode(errors="replace").strip()
    return text.splitlines()[-1] if text else f"exit status {code}"


def main(argv: list[str]) -> int:
    try:
        cfg = Config(argv)
    except ValueError as e:
        print(f"dockyard-shim: {e}", file=sys.stderr)
        return 2
    ready = cfg.ready_fd
    try:
        for fd in (cfg.socket_fd, ready):
            if fd >= 0:
                os.set_inheritable(fd, False)  # not into the runtime, nor the container
        listener = _socket.socket(fileno=cfg.socket_fd)
        shim = Shim(cfg, listener)
        atomicfile.write(os.path.join(cfg.dir, PID_FILE), str(os.getpid()).encode())
    except Exception as e:  # reported to `start`, which cleans up
        if ready >= 0:
            os.write(ready, f"error: {e}\n".encode())
        return 1
    if ready >= 0:
        os.write(ready, b"ok\n")
        os.close(ready)
    shim.serve()
    return 0
