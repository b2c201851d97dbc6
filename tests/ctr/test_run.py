"""`run` and `tasks` through a real daemon, shims and dockyard-runc: output, exit statuses,
stdin, a terminal, the detached life cycle, and bad input as one-line errors."""

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time



def one_line_error(r, *words: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert r.stderr.startswith("dockyard-ctr: ") and r.stderr.count("\n") == 1, r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


def test_run_rm_prints_output_and_leaves_nothing(ctr):
    cid = ctr.new_id()
    r = ctr("run", "--rm", "--rootfs", ctr.rootfs, cid, "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    assert ctr.ok("containers", "ls", "-q") == "" and ctr.tasks() == {}
    ctr.env.assert_clean(cid)


def test_run_exit_status_and_stderr(ctr):
    r = ctr("run", "--rm", "--rootfs", ctr.rootfs, ctr.new_id(), "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")


def test_run_killed_by_a_signal(ctr):
    cid = ctr.new_id()
    proc = subprocess.Popen(ctr.argv("run", "--rm", "--rootfs", ctr.rootfs, cid, "sleep", "1000"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ctr.wait_status(cid, "RUNNING")
        ctr.ok("tasks", "kill", "-s", "SIGKILL", cid)
        assert proc.wait(30) == 128 + signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_run_forwards_signals(ctr):
    cid = ctr.new_id()
    proc = subprocess.Popen(ctr.argv("run", "--rm", "--rootfs", ctr.rootfs, cid, "sh", "-c",
                                     "trap 'echo term; exit 42' TERM; echo ready; while :; do sleep 0.05; done"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 42
        assert proc.stdout.read() == "term\n"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_run_passes_stdin(ctr):
    r = ctr("run", "--rm", "--rootfs", ctr.rootfs, ctr.new_id(), "sh", "-c", "cat; echo end", input="piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\nend\n")


def test_run_without_rm_keeps_a_stopped_task(ctr):
    cid = ctr.new_id()
    assert ctr("run", "--rootfs", ctr.rootfs, cid, "true").returncode == 0
    assert ctr.tasks()[cid][1] == "STOPPED"
    one_line_error(ctr("run", "--rootfs", ctr.rootfs, cid, "true"), cid)  # the id is taken
    ctr.ok("tasks", "rm", cid)
    ctr.ok("containers", "rm", cid)
    assert ctr.ok("containers", "ls", "-q") == ""


def test_detached_life_cycle(ctr):
    cid = ctr.new_id()
    assert ctr.ok("run", "-d", "--rootfs", ctr.rootfs, cid, "sleep", "1000") == ""
    pid, status = ctr.wait_status(cid, "RUNNING")
    assert pid > 0 and os.path.exists(f"/proc/{pid}")
    rows = ctr.table("tasks", "ps", cid)
    assert rows[0] == ["PID", "INFO"] and [str(pid), "-"] in rows[1:]

    # The shim shows in ps as dockyard-shim with its namespace and container id.
    ps = subprocess.run(["ps", "-ww", "-eo", "comm=,args="], capture_output=True, text=True, check=True).stdout
    shims = [line for line in ps.splitlines()
             if line.startswith("dockyard-shim ") and f"dockyard-shim start --namespace {ctr.namespace} --id {cid} " in line]
    assert len(shims) == 1, ps

    r = ctr("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo in; exit 3")
    assert (r.returncode, r.stdout) == (3, "in\n")
    assert ctr("tasks", "exec", cid, "cat", input="to-exec").stdout == "to-exec"

    ctr.ok("tasks", "pause", cid)
    assert ctr.tasks()[cid] == (pid, "PAUSED")
    ctr.ok("tasks", "resume", cid)
    assert ctr.tasks()[cid] == (pid, "RUNNING")

    one_line_error(ctr("tasks", "rm", cid), "must be stopped")
    one_line_error(ctr("containers", "rm", cid), "non stopped")
    ctr.ok("tasks", "kill", "-s", "KILL", cid)
    ctr.wait_status(cid, "STOPPED")
    ctr.ok("tasks", "rm", cid)
    assert ctr.tasks() == {}
    ctr.ok("containers", "rm", cid)
    ctr.env.assert_clean(cid)


def test_tasks_rm_force_kills(ctr):
    cid = ctr.new_id()
    ctr.ok("run", "-d", "--rootfs", ctr.rootfs, cid, "sleep", "1000")
    ctr.ok("tasks", "rm", "-f", cid)
    assert ctr.tasks() == {}


def test_bad_input_is_one_line(ctr):
    one_line_error(ctr("tasks", "kill", "nope"), "nope", "not found")
    one_line_error(ctr("tasks", "ps", "nope"), "nope")
    one_line_error(ctr("containers", "info", "nope"), "nope")
    one_line_error(ctr("run", "docker.io/library/busybox:latest", "c1", "true"), "busybox:latest", "not found")
    one_line_error(ctr("run", "--rootfs", "/no/such/dir", "c1", "true"), "/no/such/dir")
    one_line_error(ctr("tasks", "kill", "-s", "SIGNOPE", "x"), "SIGNOPE")
    one_line_error(ctr("run", "--rm", "--rootfs", ctr.rootfs, "bad/id", "true"), "bad/id")
    assert ctr.ok("containers", "ls", "-q") == ""


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    out, deadline = b"", time.monotonic() + timeout
    while needle not in out:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {needle!r} in {out!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    return out


def test_run_tty_follows_our_terminal_size(ctr):
    master, slave = os.openpty()
    _set_size(slave, 31, 101)
    proc = subprocess.Popen(ctr.argv("run", "--rm", "-t", "--rootfs", ctr.rootfs, ctr.new_id(), "sh", "-c",
                                     "tty; stty size; read line; stty size; echo \"got $line\""),
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        out = _read_until(master, b"31 101")
        assert b"/dev/pts/" in out or b"/dev/console" in out
        _set_size(master, 40, 120)
        proc.send_signal(signal.SIGWINCH)
        time.sleep(0.5)  # the resize is asynchronous: let it land before the second stty
        os.write(master, b"hello\r")
        out = _read_until(master, b"got hello")
        assert b"40 120" in out
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
