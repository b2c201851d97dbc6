"""Logs and attach through the real docker CLI and raw sockets against a real dockyardd
(reference engine-api.md §1.3–1.6): `run --rm` attaching before start (the CLI half-closes at
once), `run -i` with stdin, `run -it` driven through a pty, `attach`, `logs` with
--tail/--since/--until/-t, `logs -f` across rotation, and docker-py style raw API checks."""

import json
import os
import pty
import re
import select
import socket
import time


from dockyard.engine import streams

TIMEOUT = 60


def run(engine, *args, input=None, check=True):
    r = engine.docker(*args, input=input, timeout=TIMEOUT)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def wait_exited(engine, name):
    r = run(engine, "wait", name)
    return int(r.stdout.strip())


def test_run_rm_echo(engine):
    r = run(engine, "run", "--rm", "busybox", "echo", "hi")
    assert r.stdout == "hi\n"


def test_run_streams_and_exit_code(engine):
    r = run(engine, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")


def test_run_interactive_stdin(engine):
    r = run(engine, "run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done", input="abc\nxyz\n")
    assert r.stdout == "abc\nxyz\ndone\n"


def pty_session(engine, args, steps, timeout=TIMEOUT):
    """Runs the docker CLI on a pty; steps: (expect regex, bytes to send or None). Returns
    (exit status, everything read)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(engine.env)
        os.execvp("/usr/local/bin/docker", ["docker", *args])
    out = b""
    deadline = time.monotonic() + timeout
    try:
        for expect, send in steps:
            while not re.search(expect, out):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {expect!r}; got {out!r}"
                ready, _, _ = select.select([fd], [], [], left)
                if ready:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:
                        chunk = b""
                    assert chunk, f"EOF waiting for {expect!r}; got {out!r}"
                    out += chunk
            if send is not None:
                os.write(fd, send)
        while True:  # drain until the CLI exits
            ready, _, _ = select.select([fd], [], [], max(0.1, deadline - time.monotonic()))
            try:
                chunk = os.read(fd, 4096) if ready else b""
            except OSError:
                chunk = b""
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), out
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_run_it_through_a_pty(engine):
    status, out = pty_session(engine, ["run", "-it", "--rm", "busybox", "sh"], [
        (rb"/ # ", b"echo $((6*7)); tty\r"),
        (rb"42\r\n/dev/pts/\d+", b"exit 5\r"),
    ])
    assert status == 5, out


def test_attach_to_running_and_detach_keys(engine):
    run(engine, "run", "-dit", "--name", "att1", "busybox", "sh")
    status, out = pty_session(engine, ["attach", "att1"], [
        (rb"", b"\r"),
        (rb"/ # ", b"echo at$((1+1))ch\r"),
        (rb"at2ch", b"\x10\x11"),  # ctrl-p ctrl-q
    ])
    # The CLI sees the keys itself and ends `docker attach` with its EscapeError: status 1 and
    # "read escape sequence" (`docker run -it` turns the same into 0).
    assert status == 1 and b"read escape sequence" in out, out
    assert json.loads(run(engine, "inspect", "att1").stdout)[0]["State"]["Running"]
    run(engine, "rm", "-f", "att1")


def test_attach_sees_output_until_exit(engine):
    run(engine, "run", "-d", "--name", "att2", "busybox", "sh", "-c", "sleep 1; echo late; exit 4")
    r = run(engine, "attach", "att2", check=False)
    assert (r.returncode, r.stdout) == (4, "late\n")
    run(engine, "rm", "-f", "att2")


def test_logs_tail_timestamps_streams(engine):
    run(engine, "run", "--name", "logs1", "busybox", "sh", "-c",
        "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2")
    assert wait_exited(engine, "logs1") == 0
    r = run(engine, "logs", "logs1")
    assert r.stdout == "".join(f"line {i}\n" for i in range(1, 6)) and r.stderr == "oops\n"
    r = run(engine, "logs", "--tail", "2", "logs1")
    assert (r.stdout, r.stderr) == ("line 5\n", "oops\n")
    r = run(engine, "logs", "-t", "--tail", "1", "logs1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z oops\n", r.stderr), r.stderr
    run(engine, "rm", "logs1")


def test_logs_since_until(engine):
    run(engine, "run", "--name", "logs2", "busybox", "sh", "-c", "echo early; sleep 2; echo late")
    wait_exited(engine, "logs2")
    r = run(engine, "logs", "-t", "logs2")
    stamps = [line.split(" ", 1)[0] for line in r.stdout.splitlines()]
    assert len(stamps) == 2
    mid = stamps[0][:19] + "Z"  # the second the first line was written in, then + 1 s
    from dockyard.engine.timeutil import parse_timestamp
    cut = (parse_timestamp(mid) + 1_000_000_000) // 1_000_000_000
    assert run(engine, "logs", "--since", str(cut), "logs2").stdout == "late\n"
    assert run(engine, "logs", "--until", str(cut), "logs2").stdout == "early\n"
    run(engine, "rm", "logs2")


def test_logs_follow_across_rotation(engine):
    # Paced so that the follower sees every file before it is rotated away (max-file 3 keeps
    # three): a writer that outruns rotation loses lines for any follower, dockerd's included.
    n = 200
    run(engine, "run", "-d", "--name", "logs3", "--log-opt", "max-size=2k", "--log-opt", "max-file=3",
        "busybox", "sh", "-c",
        f"sleep 1; i=0; while [ $i -lt {n} ]; do echo line $i; i=$((i+1)); [ $((i%5)) = 0 ] && sleep 0.05; done")
    r = run(engine, "logs", "-f", "logs3")  # ends by itself when the container stops
    assert r.stdout.splitlines() == [f"line {i}" for i in range(n)]
    cid = json.loads(run(engine, "inspect", "logs3").stdout)[0]["Id"]
    log_path = json.loads(run(engine, "inspect", "logs3").stdout)[0]["LogPath"]
    assert log_path.endswith(f"/{cid}/{cid}-json.log")
    assert os.path.exists(log_path + ".1")
    run(engine, "rm", "logs3")


# -- raw API, as docker-py uses it -------------------------------------------------------------------

def raw_request(engine, method, path, body=b"", headers=()):
    s = socket.socket(socket.AF_UNIX)
    s.connect(engine.socket)
    s.settimeout(TIMEOUT)
    head = [f"{method} {path} HTTP/1.1", "Host: docker", f"Content-Length: {len(body)}", *headers]
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return s


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode(), rest


def read_all(s, rest=b""):
    data = rest
    while chunk := s.recv(65536):
        data += chunk
    return data


def create(engine, config):
    status, _, body = engine.http("POST", "/v1.45/containers/create", json.dumps(config).encode(),
                                  {"Content-Type": "application/json"})
    assert status == 201, body
    return json.loads(body)["Id"]


def test_raw_attach_half_close_then_output(engine):
    cid = create(engine, {"Image": "busybox", "Cmd": ["sh", "-c", "echo one; echo two >&2"]})
    s = raw_request(engine, "POST", f"/v1.45/containers/{cid}/attach?stream=1&stdout=1&stderr=1",
                    headers=["Connection: Upgrade", "Upgrade: tcp"])
    head, rest = read_head(s)
    assert head.startswith("HTTP/1.1 101 UPGRADED")
    assert f"Content-Type: {streams.MULTIPLEXED_STREAM}" in head
    s.shutdown(socket.SHUT_WR)  # as the CLI does before start: must not end the output
    status, _, _ = engine.http("POST", f"/v1.45/containers/{cid}/start")
    assert status == 204
    frames = streams.demux(read_all(s, rest))
    s.close()
    assert sorted(frames) == [(streams.STDOUT, b"one\n"), (streams.STDERR, b"two\n")]
    engine.http("DELETE", f"/v1.45/containers/{cid}?force=1")


def test_raw_attach_logs_replay_and_stdin_once(engine):
    cid = create(engine, {"Image": "busybox", "Cmd": ["sh", "-c", "cat; echo end"], "OpenStdin": True,
                          "StdinOnce": True, "AttachStdin": True})
    s = raw_request(engine, "POST", f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1",
                    headers=["Connection: Upgrade", "Upgrade: tcp"])
    head, rest = read_head(s)
    assert head.startswith("HTTP/1.1 101")
    assert engine.http("POST", f"/containers/{cid}/start")[0] == 204
    s.sendall(b"piped\n")
    s.shutdown(socket.SHUT_WR)  # StdinOnce: closes the process's stdin, cat ends
    assert streams.demux(read_all(s, rest)) == [(streams.STDOUT, b"piped\n"), (streams.STDOUT, b"end\n")]
    s.close()
    # logs=1 replays the log of the exited container; without stream it ends there.
    s = raw_request(engine, "POST", f"/containers/{cid}/attach?logs=1&stdout=1")
    head, rest = read_head(s)
    assert head.startswith("HTTP/1.1 200")
    assert streams.demux(read_all(s, rest)) == [(streams.STDOUT, b"piped\n"), (streams.STDOUT, b"end\n")]
    s.close()
    engine.http("DELETE", f"/containers/{cid}?force=1")


def test_logs_api_validation_and_tty_raw(engine):
    cid = create(engine, {"Image": "busybox", "Cmd": ["echo", "tty out"], "Tty": True})
    status, _, body = engine.http("GET", f"/v1.45/containers/{cid}/logs")
    assert status == 400
    assert json.loads(body)["message"] == "Bad parameters: you must choose at least one stream"
    status, _, body = engine.http("GET", "/v1.45/containers/nonexistent/logs?stdout=1")
    assert status == 404 and json.loads(body)["message"] == "No such container: nonexistent"
    assert engine.http("POST", f"/containers/{cid}/start")[0] == 204
    assert engine.http("POST", f"/containers/{cid}/wait")[0] == 200
    status, headers, body = engine.http("GET", f"/v1.45/containers/{cid}/logs?stdout=1&follow=1")
    assert status == 200
    assert headers["content-type"] == streams.RAW_STREAM
    assert body == b"tty out\r\n"
    engine.http("DELETE", f"/containers/{cid}?force=1")


def test_resize_needs_running_container(engine):
    cid = create(engine, {"Image": "busybox", "Cmd": ["true"], "Tty": True})
    status, _, body = engine.http("POST", f"/containers/{cid}/resize?h=20&w=80")
    assert status == 409 and "is not running" in json.loads(body)["message"]
    engine.http("DELETE", f"/containers/{cid}?force=1")


def test_log_driver_none_keeps_no_log_but_attach_works(engine):
    r = run(engine, "run", "--name", "nolog", "--log-driver", "none", "busybox", "echo", "hi")
    assert r.stdout == "hi\n"  # attached output does not go through the log
    info = json.loads(run(engine, "inspect", "nolog").stdout)[0]
    assert info["LogPath"] == "" and info["HostConfig"]["LogConfig"]["Type"] == "none"
    r = run(engine, "logs", "nolog", check=False)
    assert r.returncode != 0 and "configured logging driver does not support reading" in r.stderr
    # (the CLI refuses options for `none` itself; the daemon does too)
    status, _, body = engine.http("POST", "/v1.45/containers/create", {
        "Image": "busybox", "HostConfig": {"LogConfig": {"Type": "none", "Config": {"max-size": "1k"}}}})
    assert status == 400 and json.loads(body)["message"] == "unknown log opt 'max-size' for none log driver"
    run(engine, "rm", "nolog")
