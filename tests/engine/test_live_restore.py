"""Live restore (issue 5): kill -9 dockyardd with running containers, start it again on the same
data-root — nothing lost. `docker ps` agrees with before, running containers keep their
processes, a container started before the crash still exits and its exit is reported (wait,
events, inspect), `docker logs -f` follows it to the end, and a container that died while the
daemon was down is recorded with its exit status."""

import json
import os
import signal
import subprocess
import time

from tests.engine.conftest import docker, inspect, wait_for
from tests.engine.test_events_api import EventStream

LOOP = "i=0; while [ ! -e /tmp/stop ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo bye; exit 7"


def ps(engine, *args):
    out = docker(engine, "ps", *args, "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}").stdout
    return sorted(out.splitlines())


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_kill_9_and_restart_loses_nothing(engine):
    docker(engine, "run", "-d", "--name", "lr-loop", "busybox", "sh", "-c", LOOP)
    docker(engine, "run", "-d", "--name", "lr-sleep", "busybox", "sleep", "600")
    docker(engine, "run", "-d", "--name", "lr-doomed", "busybox", "sleep", "600")
    docker(engine, "create", "--name", "lr-created", "busybox", "true")
    docker(engine, "run", "-d", "--name", "lr-done", "busybox", "sh", "-c", "exit 2")
    assert docker(engine, "wait", "lr-done").stdout.strip() == "2"
    wait_for(lambda: "tick 3" in docker(engine, "logs", "lr-loop").stdout)
    pids = {n: inspect(engine, n)["State"]["Pid"] for n in ("lr-loop", "lr-sleep", "lr-doomed")}
    before_all, before_running = ps(engine, "-a"), ps(engine)
    assert len(before_all) == 5 and len(before_running) == 3

    assert engine.kill() == -signal.SIGKILL
    for pid in pids.values():
        assert not gone(pid)  # the daemon's death leaves the containers running
    os.kill(pids["lr-doomed"], signal.SIGKILL)  # dies while nobody watches
    wait_for(lambda: gone(pids["lr-doomed"]))
    restarted = time.time()
    engine.start()

    after_all = ps(engine, "-a")
    assert [line.rsplit(" ", 1)[0] for line in after_all] == [line.rsplit(" ", 1)[0] for line in before_all]
    assert ps(engine) == sorted(line for line in before_running if " lr-doomed " not in line)
    for name in ("lr-loop", "lr-sleep"):
        d = inspect(engine, name)["State"]
        assert d["Status"] == "running" and d["Pid"] == pids[name]
    doomed = inspect(engine, "lr-doomed")["State"]
    assert doomed["Status"] == "exited" and doomed["ExitCode"] == 137
    assert inspect(engine, "lr-done")["State"]["ExitCode"] == 2
    assert inspect(engine, "lr-created")["State"]["Status"] == "created"
    # the exit found at restore was reported as an event
    r = docker(engine, "events", "--since", f"{restarted:.9f}", "--until", f"{time.time():.9f}",
               "--filter", "container=lr-doomed", "--filter", "event=die", "--format", "{{json .}}")
    die = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["Actor"]["Attributes"]["exitCode"] for e in die] == ["137"]

    # The container started before the crash: follow its logs, wait for it, watch its events.
    stream = EventStream(engine, {"filters": json.dumps({"container": ["lr-loop"], "event": ["die"]})})
    logs = subprocess.Popen(["/usr/local/bin/docker", "logs", "-f", "lr-loop"], env=engine.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiter = subprocess.Popen(["/usr/local/bin/docker", "wait", "lr-loop"], env=engine.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # both are following
        docker(engine, "exec", "lr-loop", "touch", "/tmp/stop")
        out, err = waiter.communicate(timeout=60)
        assert (waiter.returncode, out.strip()) == (0, "7"), err
        out, err = logs.communicate(timeout=60)
        assert logs.returncode == 0, err
        lines = out.splitlines()
        assert lines[0] == "tick 0" and lines[-1] == "bye"
        assert len(lines) == len(set(lines))  # nothing twice across the restart
        ev = stream.next()
        assert ev["Action"] == "die" and ev["Actor"]["Attributes"]["exitCode"] == "7"
    finally:
        stream.close()
        for p in (logs, waiter):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert inspect(engine, "lr-loop")["State"]["ExitCode"] == 7

    # the restored running container is fully managed again: stop works and is reported
    docker(engine, "stop", "-t", "1", "lr-sleep")
    d = inspect(engine, "lr-sleep")["State"]
    assert d["Status"] == "exited" and gone(pids["lr-sleep"])


def test_graceful_stop_keeps_containers_too(engine):
    docker(engine, "run", "-d", "--name", "lr-term", "busybox", "sleep", "600")
    pid = inspect(engine, "lr-term")["State"]["Pid"]
    assert engine.stop() == 0
    assert not gone(pid)
    engine.start()
    d = inspect(engine, "lr-term")["State"]
    assert d["Status"] == "running" and d["Pid"] == pid
    docker(engine, "rm", "-f", "lr-term")
    assert gone(pid)
