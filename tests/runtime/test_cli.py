"""runc's command-line contract beyond the lifecycle: --log/--log-format, foreground
terminals, streaming events, update from a resources file."""

import json
import os
import pty
import subprocess
import time

from conftest import new_id


def test_errors_go_to_the_json_log(runtime, tmp_path):
    log = tmp_path / "log.json"
    r = runtime("--log", str(log), "--log-format", "json", "state", "nope")
    assert r.returncode != 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["level"] == "error" and "does not exist" in e["msg"] for e in entries), entries


def test_run_with_terminal_in_the_foreground(runtime, bundle):
    """No console socket: the runtime holds the pty itself and copies it to our terminal."""
    b = bundle(["sh", "-c", "tty >/dev/null && echo is-a-tty; read line; echo got:$line"],
               lambda c: c["process"].update(terminal=True))
    master, slave = pty.openpty()
    proc = subprocess.Popen([runtime.path, "--root", runtime.root, "run", "--bundle", b, new_id()],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 20
    sent = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if b"is-a-tty" in out and not sent:
            os.write(master, b"hello\r")
            sent = True
        if b"got:hello" in out:
            break
    assert proc.wait(20) == 0
    os.close(master)
    assert b"is-a-tty" in out and b"got:hello" in out


def test_update_from_resources_file(runtime, bundle, tmp_path):
    cid = new_id()
    b = bundle(["sleep", "60"])
    runtime.ok("run", "-d", "--bundle", b, cid)
    (tmp_path / "r.json").write_text(json.dumps({"pids": {"limit": 77}}))
    runtime.ok("update", "--resources", str(tmp_path / "r.json"), cid)
    with open(os.path.join(b, "config.json")) as f:
        path = json.load(f)["linux"]["cgroupsPath"].lstrip("/")
    with open(f"/sys/fs/cgroup/pids/{path}/pids.max") as f:
        assert f.read().strip() == "77"


def test_events_stream_until_the_container_stops(ours, bundle):
    cid = new_id()
    ours.ok("run", "-d", "--bundle", bundle(["sleep", "1"]), cid)
    out = ours("events", "--interval", "200ms", cid, timeout=20).stdout
    events = [json.loads(line) for line in out.splitlines()]
    assert events and all(e["type"] == "stats" and e["id"] == cid for e in events)


def test_unknown_command(runtime):
    assert runtime("frobnicate").returncode != 0
