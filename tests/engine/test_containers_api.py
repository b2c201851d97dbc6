"""The container lifecycle through the real docker CLI and raw Engine API calls against a real
dockyardd (engine/containers.py, engine/api/containers.py; reference engine-api.md §1.3–1.4):
create/start/run -d, ps with filters, inspect --format, stop/kill/restart, pause/unpause, wait
(incl. the 200 headers before the exit), rm, rename, update, prune, the CLI's exit codes
(125/126/127 and the container's own), bad input answered with 4xx, and live restore."""

import json
import os
import socket

import pytest

TIMEOUT = 60


def docker(engine, *args, check=True, input=None):
    r = engine.docker(*args, input=input, timeout=TIMEOUT)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def inspect(engine, name, fmt):
    return docker(engine, "inspect", "--format", fmt, name).stdout.strip()


def message(body: bytes) -> str:
    return json.loads(body)["message"]


# A shell that ends with status 0 on SIGTERM (as PID 1 it would otherwise ignore it).
TRAP_TERM = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


def test_create_inspect_start_wait(engine):
    cid = docker(engine, "create", "--name", "c-basic", "-e", "A=1", "-l", "k=v", "busybox",
                 "sh", "-c", "exit 2").stdout.strip()
    assert len(cid) == 64
    assert inspect(engine, "c-basic", "{{.State.Status}} {{.Name}} {{.Path}} {{json .Args}}") == \
        'created /c-basic sh ["-c","exit 2"]'
    assert inspect(engine, "c-basic", "{{.Config.Hostname}}") == cid[:12]
    env = json.loads(inspect(engine, "c-basic", "{{json .Config.Env}}"))
    assert "A=1" in env and any(e.startswith("PATH=") for e in env)
    assert inspect(engine, "c-basic", "{{json .Config.Labels}} {{.HostConfig.NetworkMode}} {{.Image}}") \
        .startswith('{"k":"v"} bridge sha256:')
    assert inspect(engine, "c-basic", "{{.LogPath}}").endswith(f"/containers/{cid}/{cid}-json.log")
    # The CLI's inspect falls through on a real 404.
    r = docker(engine, "inspect", "c-nothing-here", check=False)
    assert r.returncode == 1 and "No such object: c-nothing-here" in r.stderr
    docker(engine, "start", "c-basic")
    assert docker(engine, "wait", "c-basic").stdout.strip() == "2"
    assert inspect(engine, "c-basic", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}") == \
        "exited 2 false"
    # Lookups by id prefix and by "/name".
    assert inspect(engine, cid[:8], "{{.Id}}") == cid
    status, _, body = engine.http("GET", "/containers/c-basic/json")
    assert status == 200 and json.loads(body)["Id"] == cid
    docker(engine, "rm", "c-basic")


def test_exit_codes_of_docker_run(engine):
    assert docker(engine, "run", "--rm", "busybox", "sh", "-c", "exit 42", check=False).returncode == 42
    r = docker(engine, "run", "--name", "c-notfound", "busybox", "no-such-command", check=False)
    assert r.returncode == 127 and "executable file not found" in r.stderr
    assert inspect(engine, "c-notfound", "{{.State.ExitCode}} {{.State.Status}}") == "127 created"
    assert "executable file not found" in inspect(engine, "c-notfound", "{{.State.Error}}")
    r = docker(engine, "run", "--rm", "busybox", "/etc/passwd", check=False)
    assert r.returncode == 126 and "permission denied" in r.stderr
    r = docker(engine, "run", "--rm", "--name", "bad name!", "busybox", "true", check=False)
    assert r.returncode == 125 and "Invalid container name (bad name!)" in r.stderr
    # --rm removes a container whose start failed too (the CLI waits for condition=removed).
    names = docker(engine, "ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "c-notfound" in names and len([n for n in names if n]) >= 1
    docker(engine, "rm", "c-notfound")


def test_run_detached_ps_filters(engine):
    engine.reset()
    a = docker(engine, "run", "-d", "--name", "f-a", "-l", "tier=web", "busybox", "sleep", "300").stdout.strip()
    b = docker(engine, "run", "-d", "--name", "f-b", "-l", "tier=db", "busybox", "sleep", "300").stdout.strip()
    docker(engine, "run", "--name", "f-c", "-l", "tier=web", "busybox", "sh", "-c", "exit 4", check=False)
    docker(engine, "create", "--name", "f-d", "busybox", "true")

    def ps(*args):
        return docker(engine, "ps", "--format", "{{.Names}}", *args).stdout.split()

    assert sorted(ps()) == ["f-a", "f-b"]
    assert ps("-a") == ["f-d", "f-c", "f-b", "f-a"]  # newest first
    assert sorted(ps("-a", "--filter", "label=tier=web")) == ["f-a", "f-c"]
    assert ps("-a", "--filter", "label=tier!=web", "--filter", "label=tier") == ["f-b"]
    assert ps("--filter", "status=exited") == ["f-c"]
    assert ps("--filter", "status=created") == ["f-d"]
    assert ps("-a", "--filter", "exited=4") == ["f-c"]
    assert ps("-a", "--filter", "name=f-b") == ["f-b"]
    assert ps("-a", "--filter", f"id={a[:10]}") == ["f-a"]
    assert sorted(ps("-a", "--filter", "ancestor=busybox")) == ["f-a", "f-b", "f-c", "f-d"]
    assert ps("-a", "--filter", "since=f-b") == ["f-d", "f-c"]
    assert ps("-a", "--filter", "before=f-b") == ["f-a"]
    assert ps("-n", "1") == ["f-d"]
    assert docker(engine, "ps", "-q", "--no-trunc", "--filter", "name=f-b").stdout.strip() == b
    items = engine.json("GET", "/containers/json?all=1&size=1", expect=200)
    item = next(i for i in items if i["Names"] == ["/f-a"])
    assert item["Image"] == "busybox" and item["ImageID"].startswith("sha256:")
    assert item["Command"] == "sleep 300" and item["State"] == "running" and item["Status"].startswith("Up ")
    assert item["HostConfig"] == {"NetworkMode": "bridge"} and "bridge" in item["NetworkSettings"]["Networks"]
    assert item["Labels"] == {"tier": "web"} and isinstance(item["SizeRw"], int)
    row = docker(engine, "ps", "-a", "--filter", "name=f-c", "--format", "{{.Status}}").stdout.strip()
    assert row.startswith("Exited (4) ")
    engine.reset()


def test_stop_kill_restart(engine):
    docker(engine, "run", "-d", "--name", "s-trap", "busybox", "sh", "-c", TRAP_TERM)
    docker(engine, "stop", "s-trap")
    assert inspect(engine, "s-trap", "{{.State.ExitCode}} {{.State.Status}}") == "0 exited"
    # Stop of a stopped container: 304.
    status, _, _ = engine.http("POST", "/containers/s-trap/stop")
    assert status == 304
    # Ignores SIGTERM (PID 1 without a handler): SIGKILL after the timeout.
    docker(engine, "run", "-d", "--name", "s-sleep", "busybox", "sleep", "300")
    docker(engine, "stop", "-t", "1", "s-sleep")
    assert inspect(engine, "s-sleep", "{{.State.ExitCode}}") == "137"
    # restart: a new process.
    docker(engine, "start", "s-sleep")
    pid1 = inspect(engine, "s-sleep", "{{.State.Pid}}")
    docker(engine, "restart", "-t", "0", "s-sleep")
    pid2 = inspect(engine, "s-sleep", "{{.State.Pid}} {{.State.Running}}")
    assert pid2.endswith("true") and pid2.split()[0] != pid1
    # Start of a running container: 304.
    status, _, _ = engine.http("POST", "/containers/s-sleep/start")
    assert status == 304
    # kill with a signal the process handles; then the default SIGKILL.
    docker(engine, "run", "-d", "--name", "s-usr1", "busybox", "sh", "-c",
           "trap 'echo got' USR1; while :; do sleep 0.1; done")
    docker(engine, "kill", "-s", "USR1", "s-usr1")
    assert inspect(engine, "s-usr1", "{{.State.Running}}") == "true"
    docker(engine, "kill", "s-usr1")
    assert inspect(engine, "s-usr1", "{{.State.Running}} {{.State.ExitCode}}") == "false 137"
    r = docker(engine, "kill", "s-usr1", check=False)
    assert r.returncode == 1 and "is not running" in r.stderr
    status, _, body = engine.http("POST", "/containers/s-sleep/kill?signal=NOPE")
    assert status == 400 and "Invalid signal: NOPE" in message(body)
    # A stop signal from the create request (StopSignal) is used by stop.
    docker(engine, "run", "-d", "--name", "s-sig", "--stop-signal", "USR2", "busybox", "sh", "-c",
           "trap 'exit 5' USR2; while :; do sleep 0.1; done")
    docker(engine, "stop", "s-sig")
    assert inspect(engine, "s-sig", "{{.State.ExitCode}} {{.Config.StopSignal}}") == "5 USR2"
    docker(engine, "rm", "-f", "s-trap", "s-sleep", "s-usr1", "s-sig")


def test_pause_unpause(engine):
    docker(engine, "run", "-d", "--name", "p-1", "busybox", "sleep", "300")
    docker(engine, "pause", "p-1")
    assert inspect(engine, "p-1", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}") == "paused true true"
    assert docker(engine, "ps", "--filter", "name=p-1", "--format", "{{.Status}}").stdout.strip().endswith("(Paused)")
    assert docker(engine, "ps", "--filter", "status=paused", "--format", "{{.Names}}").stdout.split() == ["p-1"]
    r = docker(engine, "pause", "p-1", check=False)
    assert r.returncode == 1 and "is already paused" in r.stderr
    r = docker(engine, "rm", "p-1", check=False)
    assert r.returncode == 1 and "container is paused and must be unpaused first" in r.stderr
    status, _, body = engine.http("POST", "/containers/p-1/start")
    assert status == 409 and "unpause" in message(body)
    docker(engine, "unpause", "p-1")
    assert inspect(engine, "p-1", "{{.State.Status}}") == "running"
    r = docker(engine, "unpause", "p-1", check=False)
    assert r.returncode == 1 and "is not paused" in r.stderr
    docker(engine, "rm", "-f", "p-1")
    docker(engine, "create", "--name", "p-2", "busybox", "true")
    r = docker(engine, "pause", "p-2", check=False)
    assert r.returncode == 1 and "is not running" in r.stderr
    docker(engine, "rm", "p-2")


def _raw_post(engine, path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(engine.socket)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    return s


def _read_until(s: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    while marker not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_wait_headers_come_before_the_exit(engine):
    docker(engine, "run", "-d", "--name", "w-1", "busybox", "sh", "-c", TRAP_TERM)
    s = _raw_post(engine, "/v1.45/containers/w-1/wait?condition=not-running")
    try:
        head = _read_until(s, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")  # while the container still runs
        assert inspect(engine, "w-1", "{{.State.Running}}") == "true"
        docker(engine, "kill", "-s", "TERM", "w-1")
        data = _read_until(s, b"}", head)
        assert b'"StatusCode":0' in data
    finally:
        s.close()
    # next-exit on a created container, then start it.
    docker(engine, "create", "--name", "w-2", "busybox", "sh", "-c", "exit 6")
    s = _raw_post(engine, "/containers/w-2/wait?condition=next-exit")
    try:
        assert _read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        docker(engine, "start", "w-2")
        assert b'"StatusCode":6' in _read_until(s, b"}")
    finally:
        s.close()
    # not-running on a stopped container answers at once; removed waits for the removal.
    assert engine.json("POST", "/containers/w-2/wait", expect=200)["StatusCode"] == 6
    s = _raw_post(engine, "/containers/w-2/wait?condition=removed")
    try:
        assert _read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        docker(engine, "rm", "w-2")
        assert b'"StatusCode":6' in _read_until(s, b"}")
    finally:
        s.close()
    status, _, body = engine.http("POST", "/containers/w-1/wait?condition=whenever")
    assert status == 400
    status, _, body = engine.http("POST", "/containers/w-nothing/wait")
    assert status == 404 and message(body) == "No such container: w-nothing"
    docker(engine, "rm", "w-1")


def test_remove(engine):
    cid = docker(engine, "run", "-d", "--name", "r-1", "busybox", "sleep", "300").stdout.strip()
    r = docker(engine, "rm", "r-1", check=False)
    assert r.returncode == 1 and 'cannot remove container "/r-1": container is running' in r.stderr
    docker(engine, "rm", "-f", "r-1")
    assert not os.path.exists(os.path.join(engine.data_root, "containers", cid))
    status, _, body = engine.http("DELETE", "/containers/r-1")
    assert status == 404 and message(body) == "No such container: r-1"
    assert docker(engine, "rm", "-f", "r-1", check=False).returncode == 0  # the CLI forgives a 404 with -f
    # --rm: gone once the CLI returns.
    docker(engine, "run", "--rm", "--name", "r-2", "busybox", "true")
    assert engine.http("GET", "/containers/r-2/json")[0] == 404


def test_rename(engine):
    docker(engine, "create", "--name", "n-old", "busybox", "true")
    docker(engine, "create", "--name", "n-other", "busybox", "true")
    docker(engine, "rename", "n-old", "n-new")
    assert inspect(engine, "n-new", "{{.Name}}") == "/n-new"
    r = docker(engine, "rename", "n-new", "n-other", check=False)
    assert r.returncode == 1 and 'The container name "/n-other" is already in use' in r.stderr
    status, _, body = engine.http("POST", "/containers/n-new/rename?name=n-new")
    assert status == 400
    status, _, body = engine.http("POST", "/containers/n-new/rename?name=bad%20name")
    assert status == 400 and "Invalid container name" in message(body)
    status, _, body = engine.http("POST", "/containers/n-new/rename")
    assert status == 400
    r = docker(engine, "create", "--name", "n-new", "busybox", "true", check=False)
    assert r.returncode == 1 and "is already in use" in r.stderr  # create: 1 (run: 125)
    docker(engine, "rm", "n-new", "n-other")


def _memory_limit(pid: str) -> int:
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            with open(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes") as f:
                return int(f.read())
    path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
    with open(f"/sys/fs/cgroup{path}/memory.max") as f:
        return int(f.read())


def test_update(engine):
    docker(engine, "run", "-d", "--name", "u-1", "-m", "32m", "busybox", "sleep", "300")
    pid = inspect(engine, "u-1", "{{.State.Pid}}")
    assert _memory_limit(pid) == 32 << 20
    docker(engine, "update", "-m", "48m", "--memory-swap", "96m", "--restart", "on-failure:3", "u-1")
    assert inspect(engine, "u-1", "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}} "
                   "{{.HostConfig.RestartPolicy.MaximumRetryCount}}") == f"{48 << 20} on-failure 3"
    assert _memory_limit(pid) == 48 << 20
    status, _, body = engine.http("POST", "/containers/u-1/update", {"Memory": 1024})
    assert status == 400 and "Minimum memory limit allowed is 6MB" in message(body)
    status, _, body = engine.http("POST", "/containers/u-1/update", {"Bogus": 1})
    assert status == 400
    status, _, body = engine.http("POST", "/containers/u-1/update", {"RestartPolicy": {"Name": "sometimes"}})
    assert status == 400
    docker(engine, "rm", "-f", "u-1")
    docker(engine, "create", "--rm", "--name", "u-2", "busybox", "true")
    r = docker(engine, "update", "--restart", "always", "u-2", check=False)
    assert r.returncode == 1 and "AutoRemove" in r.stderr
    docker(engine, "rm", "u-2")


def test_prune(engine):
    engine.reset()
    docker(engine, "run", "--name", "x-1", "-l", "gc=yes", "busybox", "true")
    docker(engine, "run", "--name", "x-2", "busybox", "true")
    docker(engine, "run", "-d", "--name", "x-3", "-l", "gc=yes", "busybox", "sleep", "300")
    out = engine.json("POST", '/containers/prune?filters={"label":["gc=yes"]}', expect=200)
    assert len(out["ContainersDeleted"]) == 1 and isinstance(out["SpaceReclaimed"], int)
    names = docker(engine, "ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert sorted(names) == ["x-2", "x-3"]
    docker(engine, "container", "prune", "-f")
    assert docker(engine, "ps", "-a", "--format", "{{.Names}}").stdout.split() == ["x-3"]
    status, _, body = engine.http("POST", '/containers/prune?filters={"bogus":["1"]}')
    assert status == 400 and "invalid filter 'bogus'" in message(body)
    engine.reset()


@pytest.mark.parametrize("body, status, text", [
    (b"{not json", 400, "invalid JSON"),
    (b"[1, 2]", 400, "invalid JSON"),
    ({"Image": "busybox", "Cmd": 5}, 400, "Cmd"),
    ({"Image": "busybox", "Env": "A=1"}, 400, "Env"),
    ({"Image": "busybox", "Tty": "yes"}, 400, "Tty"),
    ({"Image": "busybox", "HostConfig": []}, 400, "HostConfig"),
    ({"Image": "busybox", "HostConfig": {"Memory": "lots"}}, 400, "Memory"),
    ({"Image": "busybox", "Bogus": 1}, 400, "Bogus"),
    ({"Image": "busybox", "HostConfig": {"Bogus": 1}}, 400, "Bogus"),
    ({"Cmd": ["true"]}, 400, "image"),
    ({"Image": "no-such-image-here"}, 404, "No such image: no-such-image-here:latest"),
    ({"Image": "UPPER/Case"}, 400, ""),
    ({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, 400, "restart policy"),
    ({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "always"}, "AutoRemove": True}}, 400,
     "AutoRemove"),
    ({"Image": "busybox", "HostConfig": {"LogConfig": {"Type": "syslog"}}}, 501, "syslog"),
    ({"Image": "busybox", "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-size": "x"}}}},
     400, "size"),
])
def test_create_bad_input(engine, body, status, text):
    got, headers, data = engine.http("POST", "/containers/create", body,
                                     headers={"Content-Type": "application/json"})
    assert got == status, data
    assert headers["content-type"] == "application/json"
    assert text in message(data)


def test_bad_query_values(engine):
    for path, status in [("/containers/json?all=maybe", 400),
                         ("/containers/json?limit=x", 400),
                         ('/containers/json?filters={"status":["bogus"]}', 400),
                         ('/containers/json?filters={"foo":["x"]}', 400),
                         ("/containers/json?filters=%7Bnot", 400),
                         ('/containers/json?filters={"before":["nothing"]}', 404),
                         ("/containers/create?name=a%20b", 400)]:
        method = "POST" if "create" in path else "GET"
        got, _, data = engine.http(method, path, {"Image": "busybox"} if method == "POST" else None)
        assert got == status, (path, data)
    docker(engine, "create", "--name", "q-1", "busybox", "true")
    status, _, body = engine.http("POST", "/containers/q-1/start", {"Binds": ["/:/host"]})
    assert status == 400 and "non-empty request body" in message(body)
    docker(engine, "rm", "q-1")


def test_live_restore_keeps_and_reconciles(fresh_engine, tmp_path):
    engine = fresh_engine
    gate = tmp_path / "gate"
    gate.mkdir()
    docker(engine, "run", "-d", "--name", "l-keep", "busybox", "sleep", "300")
    docker(engine, "run", "-d", "--name", "l-exit", "-v", f"{gate}:/gate", "busybox", "sh", "-c",
           "while [ ! -e /gate/go ]; do sleep 0.05; done; exit 7")
    pid = inspect(engine, "l-keep", "{{.State.Pid}}")
    engine.kill()  # SIGKILL: no goodbye
    (gate / "go").touch()  # l-exit ends while dockyardd is down (or just after it is back)
    engine.restart()
    assert docker(engine, "wait", "l-exit").stdout.strip() == "7"
    assert inspect(engine, "l-exit", "{{.State.Status}} {{.State.ExitCode}}") == "exited 7"
    assert inspect(engine, "l-keep", "{{.State.Status}} {{.State.Pid}}") == f"running {pid}"
    assert docker(engine, "ps", "--format", "{{.Names}}").stdout.split() == ["l-keep"]
    # Its exit is still watched: a stop after the restart is recorded.
    docker(engine, "stop", "-t", "0", "l-keep")
    assert inspect(engine, "l-keep", "{{.State.ExitCode}}") == "137"
    docker(engine, "rm", "l-keep", "l-exit")


def test_no_descriptor_of_the_engine_reaches_a_container(engine):
    # The shim runs dockyard-runc in a fork of itself: nothing of the shim's (its socket, its
    # epoll, its log) may survive into the container's processes, run or exec'd.
    r = docker(engine, "run", "--rm", "busybox", "sh", "-c", "ls /proc/1/fd; echo -; ls /proc/self/fd")
    assert r.stdout == "0\n1\n2\n-\n0\n1\n2\n3\n", r.stdout  # 3: ls's own directory
    docker(engine, "run", "-d", "--name", "fds", "busybox", "sleep", "60")
    try:
        r = docker(engine, "exec", "fds", "ls", "/proc/1/fd", "/proc/self/fd")
        assert r.stdout == "/proc/1/fd:\n0\n1\n2\n\n/proc/self/fd:\n0\n1\n2\n3\n", r.stdout
    finally:
        docker(engine, "rm", "-f", "fds")
