"""dockyard-shim end to end: `dockyard-shim start`, the protocol through ShimClient, the
json-file log, exits, and clean-up after a dead shim; with dockyard-runc and busybox."""

import json
import os
import signal
import socket
import subprocess
import threading

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.shim import protocol as P
from tests.shim.conftest import NAMESPACE, SHIM, alive, reap, wait_for, zombie_children

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="shim tests run containers: they need root")

COUNTER = "i=0; while [ $i -lt {n} ]; do echo line $i; i=$((i+1)); sleep 0.01; done"


def read_until(stream, predicate, limit: int = 1000):
    """Frames from an attach stream until predicate(collected) holds: {'stdout': b, 'stderr': b, 'exit': …}."""
    got = {"stdout": b"", "stderr": b"", "exit": None}
    for _ in range(limit):
        frame = stream.read()
        if frame is None:
            break
        kind, data = frame
        if kind == "exit":
            got["exit"] = data
        else:
            got[kind] += data
        if predicate(got):
            return got
    raise AssertionError(f"stream ended before the condition held: {got}")


def test_start_daemonizes_and_names_itself(harness):
    shim = harness.start(["sleep", "100"])
    st = os.stat(shim.socket)
    assert st.st_mode & 0o777 == 0o600
    with open(f"/proc/{shim.pid}/cmdline", "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode()
    # The daemon runs in the process `start` forked (no second interpreter): its argv is that.
    assert f"dockyard-shim start --namespace {NAMESPACE} --id {shim.id}" in cmdline
    with open(f"/proc/{shim.pid}/comm") as f:
        assert f.read().strip() == "dockyard-shim"
    assert os.readlink(f"/proc/{shim.pid}/cwd") == "/"
    assert os.getsid(shim.pid) != os.getsid(0)
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{shim.pid}/fd/{fd}") == "/dev/null"
    fds = {fd: os.readlink(f"/proc/{shim.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{shim.pid}/fd")}
    kinds = sorted(target.split(":")[0] for fd, target in fds.items() if int(fd) > 2)
    assert kinds == ["anon_inode", "pipe", "pipe", "socket"], fds  # epoll, the wakeup pipe, the listener
    with shim.client() as c:
        info = c.connect()
        assert info == {"shim_pid": shim.pid, "task_pid": 0, "version": P.VERSION}
        with pytest.raises(NotFound):
            c.state()
    shim.stop()
    assert not os.path.exists(shim.dir)


def test_start_errors_leave_nothing(harness):
    missing = os.path.join(harness.base, "no-bundle")
    r = subprocess.run(harness.start_argv("bad", missing), capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "config.json" in r.stderr
    assert not os.path.exists(harness.state)
    # A second shim for the same container is refused; the first is untouched.
    shim = harness.start(["sleep", "100"])
    r = subprocess.run(harness.start_argv(shim.id, shim.bundle), capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "exists already" in r.stderr
    with shim.client() as c:
        assert c.connect()["shim_pid"] == shim.pid
    shim.stop()


def test_create_start_wait_logs_both_streams(harness):
    shim = harness.start(["sh", "-c", "echo out; echo err >&2; exit 3"])
    with shim.client() as c:
        pid = c.create()
        assert c.state()["status"] == "created" and c.state()["pid"] == pid
        assert c.start() == pid
        result = c.wait()
        assert result["exit_status"] == 3 and result["exited_at"].endswith("Z")
        state = c.state()
        assert (state["status"], state["exit_status"], state["exited_at"]) == ("stopped", 3, result["exited_at"])
    entries = shim.log_entries()
    assert [(e["log"], e["stream"]) for e in entries] == [("out\n", "stdout"), ("err\n", "stderr")]
    assert all(set(e) == {"log", "stream", "time"} and e["time"].endswith("Z") for e in entries)
    with open(os.path.join(shim.dir, "exit")) as f:
        assert json.load(f) == {"status": 3, "exited_at": result["exited_at"]}
    assert not alive(pid)
    shim.stop()


def test_every_line_logged_once_across_client_disconnects(harness):
    n = 200
    shim = harness.start(["sh", "-c", COUNTER.format(n=n)])
    with shim.client() as c:
        c.create()
        c.start()
    # No client at all now: the container keeps running and logging.
    before = wait_for(lambda: os.path.getsize(shim.log_path), what="first log lines")
    wait_for(lambda: os.path.getsize(shim.log_path) > before, what="the log to grow with no client")
    with shim.client() as c:  # a "restarted daemon"
        assert c.state()["status"] in ("running", "stopped")
    with shim.client() as c:
        assert c.wait()["exit_status"] == 0
    lines = [e["log"] for e in shim.log_entries()]
    assert lines == [f"line {i}\n" for i in range(n)]
    shim.stop()


def test_dropping_the_client_mid_wait_keeps_the_container(harness):
    shim = harness.start(["sleep", "100"])
    c = shim.client()
    pid = c.create()
    c.start()
    waiter = shim.client()
    waiter._conn.send(P.encode_request(1, "wait", {}))
    waiter.close()  # the daemon "dies" with a request in flight
    c.close()
    with shim.client() as c2:
        assert c2.state()["status"] == "running" and alive(pid)
        c2.kill(signal.SIGKILL)
        assert c2.wait()["exit_status"] == 128 + signal.SIGKILL
    shim.stop()


def test_tty_attach_input_echo_and_resize(harness):
    shim = harness.start(["sh"], tty=True, stdin=True)
    with shim.client() as c:
        c.create()
        assert c.state()["terminal"] is True
        stream = c.attach(stdin=True)
        c.start()
        c.resize(width=123, height=45)
        stream.write(b"stty size; echo hel''lo\n")
        got = read_until(stream, lambda g: b"45 123" in g["stdout"] and b"hello" in g["stdout"].replace(b"hel''lo", b""))
        assert got["stderr"] == b""  # a terminal has one stream
        stream.write(b"exit 7\n")
        got = read_until(stream, lambda g: g["exit"] is not None)
        assert got["exit"]["exit_status"] == 7
        stream.close()
        assert c.wait()["exit_status"] == 7
    assert any("hello" in e["log"] and e["stream"] == "stdout" for e in shim.log_entries())
    shim.stop()


def test_exec_output_and_exit_code(harness):
    shim = harness.start(["sleep", "100"])
    with shim.client() as c:
        c.create()
        c.start()
        process = {"args": ["sh", "-c", "echo exec-out; echo exec-err >&2; exit 5"], "cwd": "/",
                   "env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0}, "terminal": False}
        c.exec("e1", process)
        with pytest.raises(Conflict):
            c.exec("e1", process)
        assert c.state("e1")["status"] == "created"
        exec_pid = c.start("e1")
        assert exec_pid > 0
        with c.attach("e1") as stream:  # after start: the output from before is kept for it
            got = read_until(stream, lambda g: g["exit"] is not None)
        assert got["stdout"] == b"exec-out\n" and got["stderr"] == b"exec-err\n"
        assert got["exit"]["exit_status"] == 5
        assert c.wait("e1")["exit_status"] == 5
        assert c.delete("e1")["exit_status"] == 5
        with pytest.raises(NotFound):
            c.state("e1")
        assert c.state()["status"] == "running"  # the init is untouched
        c.kill(signal.SIGKILL)
        c.wait()
    assert not any("exec" in e["log"] for e in shim.log_entries())  # exec output is not logged
    shim.stop()


def test_pause_resume_state_pids_stats_update(harness):
    shim = harness.start(["sleep", "100"])
    with shim.client() as c:
        pid = c.create()
        with pytest.raises(Conflict):
            c.pause()
        c.start()
        c.pause()
        assert c.state()["status"] == "paused"
        with pytest.raises(Conflict):
            c.delete()
        c.resume()
        assert c.state()["status"] == "running"
        assert {"pid": pid, "exec_id": ""} in c.pids()
        assert "memory" in c.stats()
        c.update({"pids": {"limit": 100}})
        with pytest.raises(InvalidArgument):
            c.update("nope")
        c.kill(signal.SIGKILL)
        c.wait()
    shim.stop()


def test_kill_and_delete(harness):
    shim = harness.start(["sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.05; done"])
    with shim.client() as c:
        pid = c.create()
        c.start()
        with pytest.raises(Conflict):
            c.delete()
        with pytest.raises(Conflict):
            c.create()
        c.kill(signal.SIGTERM)
        assert c.wait()["exit_status"] == 42
        with pytest.raises(NotFound):
            c.kill(signal.SIGTERM)
        with pytest.raises(Conflict):
            c.shutdown()  # the task still exists
        deleted = c.delete()
        assert (deleted["pid"], deleted["exit_status"]) == (pid, 42)
        with pytest.raises(NotFound):
            c.state()
    assert not os.path.exists(os.path.join(harness.runtime_root, shim.id))
    shim.stop()


def test_delete_a_created_task(harness):
    shim = harness.start(["sleep", "100"])
    with shim.client() as c:
        pid = c.create()
        deleted = c.delete()
        assert deleted["pid"] == pid and deleted["exit_status"] == 128 + signal.SIGKILL
    assert not alive(pid)
    shim.stop()


def test_exit_file_written_when_init_exits_with_no_client(harness):
    shim = harness.start(["sh", "-c", "exit 4"])
    with shim.client() as c:
        c.create()
        c.start()
    exit_file = os.path.join(shim.dir, "exit")
    wait_for(lambda: os.path.exists(exit_file), what="the exit file")
    with open(exit_file) as f:
        recorded = json.load(f)
    assert recorded["status"] == 4
    with shim.client() as c:  # a later client gets the same exit
        assert c.wait() == {"exit_status": 4, "exited_at": recorded["exited_at"]}
        assert c.connect()["task_pid"] > 0
    shim.stop()


def test_concurrent_waiters_all_get_the_exit(harness):
    shim = harness.start(["sh", "-c", "read x; exit 9"], stdin=True)
    with shim.client() as c:
        c.create()
        c.start()
        results, errors = [], []

        def wait():
            try:
                with shim.client() as w:
                    results.append(w.wait())
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=wait) for _ in range(5)]
        for t in threads:
            t.start()
        # Several waits pipelined on one connection, too.
        with shim.client() as raw:
            for i in range(3):
                raw._conn.send(P.encode_request(100 + i, "wait", {}))
            raw._conn.send(P.encode_request(200, "state", {}))  # not held up by the waits
            kind, body = raw._conn.next_frame()
            rid, result, _ = P.decode_response(body)
            assert rid == 200 and result["status"] == "running"
            with c.attach(stdin=True) as stream:
                stream.write(b"go\n")
                stream.close_stdin()
                read_until(stream, lambda g: g["exit"] is not None)
            answers = {}
            for _ in range(3):
                kind, body = raw._conn.next_frame()
                rid, result, _ = P.decode_response(body)
                answers[rid] = result["exit_status"]
            assert answers == {100: 9, 101: 9, 102: 9}
        for t in threads:
            t.join(30)
        assert not errors and [r["exit_status"] for r in results] == [9] * 5
        assert len({r["exited_at"] for r in results}) == 1
    shim.stop()


def test_shim_killed_then_delete_cleans_up(harness):
    shim = harness.start(["sleep", "100"])
    with shim.client() as c:
        pid = c.create()
        c.start()
    os.kill(shim.pid, signal.SIGKILL)
    assert reap(shim.pid)
    assert alive(pid)  # the container outlives its shim
    r = subprocess.run([SHIM, "delete", "--namespace", NAMESPACE, "--id", shim.id, "--bundle", shim.bundle,
                        "--state-dir", harness.state, "--runtime-root", harness.runtime_root],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["exit_status"] == 255 and result["exited_at"].endswith("Z")
    # The init was re-parented to us (the nearest subreaper): reap it once it is killed.
    assert reap(pid)
    assert not os.path.exists(shim.dir)
    assert not os.path.exists(os.path.join(harness.runtime_root, shim.id))


def test_delete_after_shim_death_reports_the_recorded_exit(harness):
    shim = harness.start(["sh", "-c", "exit 6"])
    with shim.client() as c:
        c.create()
        c.start()
        c.wait()
    os.kill(shim.pid, signal.SIGKILL)
    assert reap(shim.pid)
    r = subprocess.run([SHIM, "delete", "--namespace", NAMESPACE, "--id", shim.id, "--bundle", shim.bundle,
                        "--state-dir", harness.state, "--runtime-root", harness.runtime_root],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["exit_status"] == 6
    assert not os.path.exists(shim.dir)


def test_log_rotation(harness):
    n = 60
    shim = harness.start(["sh", "-c", "i=0; while [ $i -lt 60 ]; do echo line $i; i=$((i+1)); done"],
                         max_size=400, max_file=3)
    with shim.client() as c:
        c.create()
        c.start()
        c.wait()
    files = sorted(f for f in os.listdir(harness.base) if f.startswith(shim.id + "-json.log"))
    base = shim.id + "-json.log"
    assert files == [base, base + ".1", base + ".2"]
    entries = shim.log_entries(".2") + shim.log_entries(".1") + shim.log_entries()
    lines = [e["log"] for e in entries]
    first = int(lines[0].split()[1])
    assert lines == [f"line {i}\n" for i in range(first, n)]
    for suffix in (".1", ".2"):
        size = os.path.getsize(shim.log_path + suffix)
        assert 400 <= size < 400 + 100  # rotated at the first entry that reached max-size
    shim.stop()


def test_malformed_frames_and_unknown_methods(harness):
    shim = harness.start(["sleep", "100"])

    def exchange(data: bytes):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(shim.socket)
        s.sendall(data)
        decoder, frames = P.FrameDecoder(), []
        while not frames:
            chunk = s.recv(65536)
            assert chunk, "the shim closed the connection without an answer"
            frames = decoder.feed(chunk)
        return s, P.decode_response(frames[0][1])

    s, (rid, _, err) = exchange(P.encode_frame(P.REQUEST, b"{not json"))
    assert rid is None and err.code == P.INVALID and "malformed" in str(err)
    s.sendall(P.encode_request(5, "connect"))  # the connection goes on
    kind, body = P.FrameDecoder().feed(s.recv(65536))[0]
    assert P.decode_response(body)[1]["shim_pid"] == shim.pid
    s.close()
    s, (rid, _, err) = exchange(P.encode_request(7, "frobnicate"))
    assert rid == 7 and err.code == P.INVALID and "unknown method" in str(err)
    s.close()
    s, (rid, _, err) = exchange(P.encode_frame(99, b""))
    assert err.code == P.INVALID and "frame type" in str(err)
    s.close()
    s, (rid, _, err) = exchange(P.encode_frame(P.STDIN, b"x"))
    assert err.code == P.INVALID and "stdin" in str(err)
    s.close()
    for bad in (b"\x00\x00\x00\x02\x09\x01{}", (P.MAX_BODY + 1).to_bytes(4, "big") + b"\x01\x01"):
        s, (rid, _, err) = exchange(bad)
        assert err.code == P.INVALID
        assert s.recv(65536) == b""  # cannot resynchronise: closed
        s.close()
    with shim.client() as c:
        with pytest.raises(InvalidArgument):
            c.call("exec", exec_id="", process={})
        with pytest.raises(NotFound):
            c.state("no-such-exec")
        assert c.connect()["shim_pid"] == shim.pid  # alive and well
    shim.stop()


def test_no_zombies_after_20_create_delete_cycles(harness):
    pids = []
    for _ in range(20):
        shim = harness.start(["true"], log=False)
        with shim.client() as c:
            pids.append(c.create())
            c.start()
            assert c.wait()["exit_status"] == 0
            c.delete()
            c.shutdown()
        assert reap(shim.pid)
        pids.append(shim.pid)
        assert not os.path.exists(shim.dir)
    assert not zombie_children()
    for pid in pids:  # every container init and shim is gone, not a zombie anywhere
        assert not os.path.exists(f"/proc/{pid}")
    assert not os.path.exists(os.path.join(harness.state, NAMESPACE))
