"""docker exec through the real CLI and the raw API against a real dockyardd (reference
engine-api.md §1.3 `docker exec -it`, §1.6): output, exit codes read back from exec inspect,
stdin, a TTY through a pty, user/env/workdir, errors, detached execs and inspect."""

import json
import time

import pytest

from tests.engine.test_logs_attach import pty_session, raw_request, read_all, read_head, run
from dockyard.engine import streams


@pytest.fixture(scope="module")
def box(engine):
    run(engine, "run", "-d", "--name", "execbox", "busybox", "sleep", "3600")
    yield "execbox"
    run(engine, "rm", "-f", "execbox")


def test_exec_output_and_exit_codes(engine, box):
    assert run(engine, "exec", box, "echo", "hi").stdout == "hi\n"
    r = run(engine, "exec", box, "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")


def test_exec_stdin(engine, box):
    assert run(engine, "exec", "-i", box, "sh", "-c", "tr a-z A-Z", input="abc\n").stdout == "ABC\n"


def test_exec_user_env_workdir(engine, box):
    r = run(engine, "exec", "-u", "1000:1001", "-e", "FOO=bar", "-w", "/tmp", box,
            "sh", "-c", "id -u; id -g; echo $FOO; pwd")
    assert r.stdout.split() == ["1000", "1001", "bar", "/tmp"]
    assert run(engine, "exec", "-u", "nobody", box, "id", "-un").stdout == "nobody\n"


def test_exec_it_through_a_pty(engine, box):
    status, out = pty_session(engine, ["exec", "-it", box, "sh"], [
        (rb"/ # ", b"tty; echo $((3*4))\r"),
        (rb"/dev/pts/\d+\r\n12", b"exit 3\r"),
    ])
    assert status == 3, out


def test_exec_missing_command(engine, box):
    r = run(engine, "exec", box, "no-such-command", check=False)
    assert r.returncode in (126, 127), (r.returncode, r.stdout, r.stderr)


def test_exec_on_stopped_container_conflicts(engine):
    run(engine, "create", "--name", "execstopped", "busybox", "true")
    r = run(engine, "exec", "execstopped", "true", check=False)
    assert r.returncode != 0 and "is not running" in r.stderr
    run(engine, "rm", "-f", "execstopped")


def test_exec_api_detached_and_inspect(engine, box):
    status, _, body = engine.http("POST", f"/v1.45/containers/{box}/exec",
                                  json.dumps({"Cmd": ["sh", "-c", "sleep 0.5; exit 9"]}).encode(),
                                  {"Content-Type": "application/json"})
    assert status == 201
    exec_id = json.loads(body)["Id"]
    info = json.loads(engine.http("GET", f"/v1.45/exec/{exec_id}/json")[2])
    assert (info["Running"], info["ExitCode"], info["ProcessConfig"]["entrypoint"]) == (False, None, "sh")
    status, _, _ = engine.http("POST", f"/v1.45/exec/{exec_id}/start", json.dumps({"Detach": True}).encode(),
                               {"Content-Type": "application/json"})
    assert status == 200
    for _ in range(100):
        info = json.loads(engine.http("GET", f"/v1.45/exec/{exec_id}/json")[2])
        if not info["Running"] and info["ExitCode"] is not None:
            break
        time.sleep(0.1)
    assert info["ExitCode"] == 9 and info["Pid"] > 0
    # A second start is a conflict; an unknown exec a 404.
    status, _, body = engine.http("POST", f"/v1.45/exec/{exec_id}/start", b'{"Detach":true}',
                                  {"Content-Type": "application/json"})
    assert status == 409
    status, _, body = engine.http("GET", "/v1.45/exec/nope/json")
    assert status == 404 and json.loads(body)["message"] == "No such exec instance: nope"


def test_exec_api_hijacked_framed_stream(engine, box):
    status, _, body = engine.http("POST", f"/v1.45/containers/{box}/exec", json.dumps(
        {"Cmd": ["sh", "-c", "cat; echo e >&2"], "AttachStdin": True, "AttachStdout": True,
         "AttachStderr": True}).encode(), {"Content-Type": "application/json"})
    exec_id = json.loads(body)["Id"]
    s = raw_request(engine, "POST", f"/v1.45/exec/{exec_id}/start", b'{"Detach":false,"Tty":false}',
                    ["Content-Type: application/json", "Connection: Upgrade", "Upgrade: tcp"])
    head, rest = read_head(s)
    assert head.startswith("HTTP/1.1 101 UPGRADED") and streams.MULTIPLEXED_STREAM in head
    s.sendall(b"in\n")
    s.shutdown(1)
    frames = streams.demux(read_all(s, rest))
    s.close()
    assert frames == [(streams.STDOUT, b"in\n"), (streams.STDERR, b"e\n")]
    info = json.loads(engine.http("GET", f"/v1.45/exec/{exec_id}/json")[2])
    assert info["ExitCode"] == 0 and not info["Running"]


def test_exec_create_validation(engine, box):
    status, _, body = engine.http("POST", f"/v1.45/containers/{box}/exec", b'{"Cmd":[]}',
                                  {"Content-Type": "application/json"})
    assert status == 400
    status, _, body = engine.http("POST", "/v1.45/containers/nonexistent/exec", b'{"Cmd":["true"]}',
                                  {"Content-Type": "application/json"})
    assert status == 404
