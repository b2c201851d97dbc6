"""Real containerd drives dockyard-runc exactly as it drives runc.

A private containerd 1.6 (Debian's, with its containerd-shim-runc-v2) is started for the module
(see containerd_peer.py); the busybox fixture image is imported with `ctr images import`, and
every case runs `ctr run --runtime io.containerd.runc.v2 --runc-binary B`, parameterized over
dockyard-runc and Debian's runc: the runc case is the reference, so a behaviour difference
shows up as a failing dockyard-runc case. The shim calls the runtime as runc's dialect has it:
`--root <runc-root>/<ns> --log <bundle>/log.json --log-format json create --bundle B --pid-file
P [--console-socket S] ID`, `start`, `state`, `ps --format json`, `exec --process F --detach
--pid-file P [--console-socket S]`, `pause`, `resume`, `kill ID SIG [--all]`, `delete [--force]`."""

import errno
import fcntl
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time

import pytest

from containerd_peer import RUNTIME, Containerd, missing_tools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.fixtures import busybox  # noqa: E402

pytestmark = pytest.mark.root

_why_not = missing_tools()
if _why_not:
    pytest.skip(_why_not, allow_module_level=True)

OURS = os.path.join(os.path.dirname(sys.executable), "dockyard-runc")
BINARIES = {"dockyard-runc": OURS, "runc": "/usr/sbin/runc"}
IMAGE = "docker.io/library/busybox:latest"


@pytest.fixture(scope="module")
def ctd(tmp_path_factory):
    c = Containerd()
    try:
        c.start()
        archive = tmp_path_factory.mktemp("containerd-image") / "busybox.docker.tar"
        busybox.build_docker_archive(archive)
        c.ok("images", "import", str(archive), timeout=60)
        assert IMAGE in c.ok("images", "ls", "-q").split()
        yield c
    finally:
        c.cleanup()


class Runtime:
    """One OCI runtime binary as containerd's runc shim is told to use it."""

    def __init__(self, name: str, binary: str, ctd: Containerd):
        self.name, self.binary, self.ctd = name, binary, ctd

    @property
    def options(self) -> list[str]:
        return ["--runtime", RUNTIME, "--runc-binary", self.binary, "--runc-root", self.ctd.runc_root,
                "--fifo-dir", self.ctd.fifo_dir]

    def run_argv(self, cid: str, *args: str, flags: tuple[str, ...] = ()) -> list[str]:
        return self.ctd.ctr_argv("run", *self.options, *flags, IMAGE, cid, *args)

    def run(self, cid: str, *args: str, flags: tuple[str, ...] = ("--rm",), input: bytes | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(self.run_argv(cid, *args, flags=flags), input=input, capture_output=True,
                              stdin=None if input is not None else subprocess.DEVNULL, timeout=timeout)

    def detached(self, *args: str, prefix: str = "d") -> str:
        """A running task (`ctr run -d`) executing args; returns its id."""
        cid = self.ctd.new_id(prefix)
        r = self.run(cid, *args, flags=("-d",))
        assert r.returncode == 0, f"{self.name}: ctr run -d: rc={r.returncode} {r.stderr.decode(errors='replace')}"
        self.ctd.wait_status(cid, "RUNNING")
        return cid

    def exec(self, cid: str, exec_id: str, *args: str, flags: tuple[str, ...] = (),
             timeout: float = 30) -> subprocess.CompletedProcess:
        return self.ctd.ctr("tasks", "exec", "--fifo-dir", self.ctd.fifo_dir, "--exec-id", exec_id, *flags,
                            cid, *args, timeout=timeout)


@pytest.fixture(params=list(BINARIES))
def rt(request, ctd):
    binary = BINARIES[request.param]
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is not installed")
    yield Runtime(request.param, binary, ctd)
    ctd.reset()


def err(r: subprocess.CompletedProcess) -> str:
    return r.stderr.decode(errors="replace")


def assert_gone(ctd: Containerd, cid: str) -> None:
    """After delete: no task, no container, no runtime state, no cgroup, no shim socket."""
    assert cid not in ctd.tasks()
    assert cid not in ctd.containers()
    assert not os.path.exists(ctd.runtime_state_dir(cid)), os.listdir(ctd.runtime_state_dir(cid))
    assert ctd.cgroup_dirs(cid) == []
    deadline = time.monotonic() + 5  # the shim removes its socket as it exits
    while os.path.exists(ctd.shim_socket(cid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(ctd.shim_socket(cid))


# -- ctr run, foreground -------------------------------------------------------------------------


def test_run_echo(rt):
    cid = rt.ctd.new_id("echo")
    r = rt.run(cid, "echo", "hi")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), err(r)
    assert_gone(rt.ctd, cid)


def test_run_exit_code_propagates(rt):
    cid = rt.ctd.new_id("exit")
    r = rt.run(cid, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout) == (3, b"out\n"), err(r)
    assert b"err\n" in r.stderr
    assert_gone(rt.ctd, cid)


def test_run_stdin_is_piped(rt):
    # ctr copies its stdin into the task's stdin fifo (ctr 1.6 never closes it: no EOF test).
    cid = rt.ctd.new_id("stdin")
    r = rt.run(cid, "sh", "-c", 'read line; echo "got $line"', input=b"piped line\n")
    assert (r.returncode, r.stdout) == (0, b"got piped line\n"), err(r)


def test_run_sees_the_image_config(rt):
    # ctr's spec: the image's env, cwd /, root, its own pid namespace, and a new uts namespace
    # with no hostname set (so the runtime leaves the host's name copied into it).
    cid = rt.ctd.new_id("cfg")
    r = rt.run(cid, "sh", "-c", 'echo "$PATH"; pwd; echo $$; id -u; hostname; '
               'for n in uts pid mnt; do readlink /proc/self/ns/$n; done')
    assert r.returncode == 0, err(r)
    lines = r.stdout.decode().split("\n")
    assert lines[:5] == [busybox.DEFAULT_PATH_ENV.partition("=")[2], "/", "1", "0", socket.gethostname()]
    host_ns = [os.readlink(f"/proc/self/ns/{n}") for n in ("uts", "pid", "mnt")]
    assert all(a != b for a, b in zip(lines[5:8], host_ns)), (lines, host_ns)


def test_run_missing_executable_fails_cleanly(rt):
    cid = rt.ctd.new_id("noexec")
    r = rt.run(cid, "no-such-program")
    assert r.returncode != 0
    # The shim quotes the runtime's last log.json error: runc's wording is what callers match.
    assert "executable file not found in $PATH" in err(r), err(r)
    assert_gone(rt.ctd, cid)


def test_sigterm_from_ctr_kill_reaches_the_init(rt):
    cid = rt.ctd.new_id("term")
    proc = subprocess.Popen(
        rt.run_argv(cid, "sh", "-c", 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.1; done',
                    flags=("--rm",)),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        rt.ctd.ok("tasks", "kill", cid)  # SIGTERM by default
        out, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (7, b"got-term\n"), stderr.decode(errors="replace")
    assert_gone(rt.ctd, cid)


# -- a detached task -----------------------------------------------------------------------------


def test_detached_task_lists_running_with_its_pid(rt):
    cid = rt.detached("sleep", "600")
    pid, status = rt.ctd.tasks()[cid]
    assert status == "RUNNING"
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"600"]
    with open(os.path.join(rt.ctd.bundle(cid), "init.pid")) as f:  # the runtime's --pid-file
        assert int(f.read()) == pid
    # ctr's spec puts the container at cgroupsPath /<namespace>/<id>; the shim's metrics and
    # OOM watch find it from the init's pid.
    memory = [d for d in rt.ctd.cgroup_dirs(cid) if "/memory/" in d]
    assert memory, rt.ctd.cgroup_dirs(cid)
    with open(os.path.join(memory[0], "cgroup.procs")) as f:
        assert pid in [int(x) for x in f.read().split()]
    metrics = rt.ctd.ok("tasks", "metrics", cid)
    assert "memory.usage_in_bytes" in metrics, metrics


def test_ps_lists_the_init(rt):
    cid = rt.detached("sleep", "600")
    pid = rt.ctd.tasks()[cid][0]
    out = rt.ctd.ok("tasks", "ps", cid)  # the shim runs `<runtime> ps --format json ID`
    assert out.splitlines()[0].split() == ["PID", "INFO"]
    assert [int(line.split()[0]) for line in out.splitlines()[1:]] == [pid]


def test_exec_output_and_exit_code(rt):
    cid = rt.detached("sleep", "600")
    r = rt.exec(cid, "e1", "echo", "from-exec")
    assert (r.returncode, r.stdout) == (0, b"from-exec\n"), err(r)
    r = rt.exec(cid, "e2", "sh", "-c", "echo to-err >&2; exit 5")
    assert r.returncode == 5, err(r)
    assert b"to-err\n" in r.stderr
    # The exec shares the container's namespaces: it sees the init as pid 1.
    r = rt.exec(cid, "e3", "cat", "/proc/1/cmdline")
    assert (r.returncode, r.stdout) == (0, b"sleep\x00600\x00"), err(r)
    assert rt.ctd.tasks()[cid][1] == "RUNNING"


def test_exec_detached_shows_in_ps(rt):
    cid = rt.detached("sleep", "600")
    init = rt.ctd.tasks()[cid][0]
    r = rt.exec(cid, "bg", "sleep", "300", flags=("--detach",))
    assert r.returncode == 0, err(r)
    deadline = time.monotonic() + 10
    while True:
        pids = [int(line.split()[0]) for line in rt.ctd.ok("tasks", "ps", cid).splitlines()[1:]]
        if len(pids) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert init in pids and len(pids) == 2, pids
    with open(f"/proc/{[p for p in pids if p != init][0]}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"300"]


def test_exec_missing_executable_fails(rt):
    cid = rt.detached("sleep", "600")
    r = rt.exec(cid, "bad", "no-such-program")
    assert r.returncode != 0
    assert "executable file not found in $PATH" in err(r), err(r)
    assert rt.ctd.tasks()[cid][1] == "RUNNING"


def test_pause_and_resume(rt):
    cid = rt.detached("sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/tick; sleep 0.05; done")
    rt.ctd.ok("tasks", "pause", cid)
    assert rt.ctd.tasks()[cid][1] == "PAUSED"  # the shim asks `<runtime> state`
    freezer = [d for d in rt.ctd.cgroup_dirs(cid) if "/freezer/" in d]
    if freezer:
        with open(os.path.join(freezer[0], "freezer.state")) as f:
            assert f.read().strip() == "FROZEN"
    tick = os.path.join(rt.ctd.bundle(cid), "rootfs", "tmp", "tick")
    with open(tick) as f:
        before = f.read()
    time.sleep(0.3)
    with open(tick) as f:
        assert f.read() == before, "the task kept running while paused"
    rt.ctd.ok("tasks", "resume", cid)
    assert rt.ctd.tasks()[cid][1] == "RUNNING"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(tick) as f:
            if f.read() != before:
                break
        time.sleep(0.05)
    else:
        pytest.fail("the task did not run again after resume")


def test_kill_then_delete(rt):
    cid = rt.detached("sleep", "600")
    pid = rt.ctd.tasks()[cid][0]
    rt.ctd.ok("tasks", "kill", "-s", "SIGKILL", cid)
    rt.ctd.wait_status(cid, "STOPPED")
    assert not os.path.exists(f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/cmdline", "rb").read() == b""
    r = rt.ctd.ctr("tasks", "delete", cid)  # ctr reports the exit status it got from the shim
    assert r.returncode == 0, err(r)
    assert "137" in err(r), err(r)
    rt.ctd.ok("containers", "rm", cid)
    assert_gone(rt.ctd, cid)


def test_kill_all_and_force_delete(rt):
    cid = rt.detached("sh", "-c", "sleep 600 & sleep 600 & wait")
    rt.ctd.ok("tasks", "kill", "--all", "-s", "SIGKILL", cid)  # `<runtime> kill --all ID 9`
    rt.ctd.wait_status(cid, "STOPPED")
    rt.ctd.ok("tasks", "delete", cid)
    rt.ctd.ok("containers", "rm", cid)
    assert_gone(rt.ctd, cid)


def test_delete_running_task_with_force(rt):
    cid = rt.detached("sleep", "600")
    r = rt.ctd.ctr("tasks", "delete", cid)
    assert r.returncode != 0 and "must be stopped" in err(r), err(r)
    rt.ctd.ok("tasks", "delete", "--force", cid)
    rt.ctd.ok("containers", "rm", cid)
    assert_gone(rt.ctd, cid)


# -- terminals -----------------------------------------------------------------------------------


# ctr sends the window size (ResizePty) only after the process has started, so the pty starts
# at 0x0: poll until the size arrives, then print it.
WAIT_FOR_SIZE = ('i=0; while [ "$(stty size 2>/dev/null)" = "" ] || [ "$(stty size 2>/dev/null)" = "0 0" ]; '
                 'do [ $i -ge 100 ] && break; i=$((i+1)); sleep 0.05; done; stty size')


def run_on_pty(argv: list[str], rows: int = 30, cols: int = 100, timeout: float = 30) -> tuple[int, str]:
    """Run argv with a pty of the given size as its stdio and controlling terminal (ctr -t
    wants its stdin to be a console); returns (exit status, everything written to the pty)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_tty)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:  # EIO: every slave fd is closed
                    if e.errno != errno.EIO:
                        raise
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        else:
            proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=10), out.decode(errors="replace").replace("\r", "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_tty_run(rt):
    # The shim passes --console-socket; the runtime sends back the pty master; ctr copies it to
    # its own terminal and forwards the window size.
    cid = rt.ctd.new_id("tty")
    status, out = run_on_pty(rt.run_argv(
        cid, "sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; tty; " + WAIT_FOR_SIZE + "; exit 4",
        flags=("--rm", "-t")))
    lines = [line for line in out.split("\n") if line]
    assert status == 4, out
    assert lines[:3] == ["is-a-tty", "/dev/pts/0", "30 100"], out
    assert_gone(rt.ctd, cid)


def test_tty_exec(rt):
    cid = rt.detached("sleep", "600")
    status, out = run_on_pty(rt.ctd.ctr_argv(
        "tasks", "exec", "--fifo-dir", rt.ctd.fifo_dir, "--exec-id", "t1", "-t", cid,
        "sh", "-c", "test -t 0 && echo exec-tty; " + WAIT_FOR_SIZE + "; exit 6"), rows=40, cols=120)
    lines = [line for line in out.split("\n") if line]
    assert status == 6, out
    assert lines[:2] == ["exec-tty", "40 120"], out
    assert rt.ctd.tasks()[cid][1] == "RUNNING"
