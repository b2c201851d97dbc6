"""Restart policies and HEALTHCHECK against a real dockyardd through the docker CLI: on-failure:N
counts, always with back-off until a user stop, the policies at daemon start, health status
moving starting → unhealthy → healthy with its events, probe timeouts, and the stopped state."""

import json
import os
import signal
import time

import pytest

from tests.engine.conftest import docker, inspect, wait_for


def events(engine, since, *filters):
    args = ["events", "--since", f"{since:.9f}", "--until", f"{time.time():.9f}", "--format", "{{json .}}"]
    for f in filters:
        args += ["--filter", f]
    return [json.loads(line) for line in docker(engine, *args).stdout.splitlines() if line.strip()]


def test_on_failure_retries_n_times(engine):
    t0 = time.time()
    docker(engine, "run", "-d", "--name", "rp-onfail", "--restart", "on-failure:2",
           "busybox", "sh", "-c", "exit 3")
    try:
        d = wait_for(lambda: (lambda d: d if d["RestartCount"] == 2 and d["State"]["Status"] == "exited"
                              else None)(inspect(engine, "rp-onfail")))
        assert d["State"]["ExitCode"] == 3 and d["HostConfig"]["RestartPolicy"] == {
            "Name": "on-failure", "MaximumRetryCount": 2}
        # the initial run and two restarts: three starts, three dies, no more
        actions = [e["Action"] for e in events(engine, t0, "container=rp-onfail")]
        assert actions.count("start") == 3 and actions.count("die") == 3, actions
    finally:
        docker(engine, "rm", "-f", "rp-onfail")


def test_on_failure_leaves_a_clean_exit_alone(engine):
    docker(engine, "run", "--name", "rp-clean", "--restart", "on-failure", "busybox", "true")
    try:
        d = inspect(engine, "rp-clean")
        assert d["State"]["Status"] == "exited" and d["RestartCount"] == 0
    finally:
        docker(engine, "rm", "-f", "rp-clean")


def test_always_restarts_with_backoff_until_stopped(engine):
    t0 = time.time()
    docker(engine, "run", "-d", "--name", "rp-always", "--restart", "always", "busybox", "true")
    try:
        wait_for(lambda: inspect(engine, "rp-always")["RestartCount"] >= 4)
        starts = [e["timeNano"] for e in events(engine, t0, "container=rp-always", "event=start")]
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        # the delay doubles from 100 ms: each gap at least the delay before it
        for i, gap in enumerate(gaps[:4]):
            assert gap >= 0.1 * 2**i * 1e9 * 0.9, gaps
        docker(engine, "stop", "rp-always")
        d = wait_for(lambda: (lambda d: d if d["State"]["Status"] == "exited" else None)(
            inspect(engine, "rp-always")))
        count = d["RestartCount"]
        time.sleep(1.0)  # longer than the pending delay was: nothing comes back
        d = inspect(engine, "rp-always")
        assert d["State"]["Status"] == "exited" and d["RestartCount"] == count
        # a user start resets the count, as dockerd does
        docker(engine, "start", "rp-always")
        assert inspect(engine, "rp-always")["RestartCount"] == 0
    finally:
        docker(engine, "rm", "-f", "rp-always")


def test_restarting_state_shows_in_ps(engine):
    docker(engine, "run", "-d", "--name", "rp-loop", "--restart", "always", "busybox", "sh", "-c", "exit 1")
    try:
        seen = wait_for(lambda: [line for line in docker(engine, "ps", "--format", "{{.Names}} {{.Status}}",
                                                          "--filter", "status=restarting").stdout.splitlines()
                                 if line.startswith("rp-loop ")], timeout=120, interval=0.01)
        assert seen[0].startswith("rp-loop Restarting (1)")
    finally:
        docker(engine, "rm", "-f", "rp-loop")


def test_bad_restart_policies_are_400(engine):
    r = docker(engine, "create", "--restart", "sometimes", "busybox", check=False)
    assert r.returncode != 0 and "unknown policy 'sometimes'" in r.stderr
    body = {"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}}
    status, _, out = engine.http("POST", "/v1.45/containers/create", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 400 and "on-failure" in json.loads(out)["message"]
    body = {"Image": "busybox", "HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}}
    status, _, out = engine.http("POST", "/v1.45/containers/create", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 400 and "AutoRemove" in json.loads(out)["message"]


def _health(engine, name):
    return inspect(engine, name)["State"].get("Health")


def test_health_unhealthy_then_healthy_with_events(engine):
    t0 = time.time()
    docker(engine, "run", "-d", "--name", "hc-file", "--health-cmd", "test -e /tmp/ok || { echo missing; exit 1; }",
           "--health-interval", "200ms", "--health-retries", "2", "busybox", "sleep", "600")
    try:
        h = _health(engine, "hc-file")
        assert h is not None and h["Status"] in ("starting", "unhealthy")
        h = wait_for(lambda: (lambda h: h if h["Status"] == "unhealthy" else None)(_health(engine, "hc-file")))
        assert h["FailingStreak"] >= 2
        assert h["Log"][-1]["ExitCode"] == 1 and h["Log"][-1]["Output"] == "missing\n"
        assert "(unhealthy)" in docker(engine, "ps", "--filter", "name=hc-file", "--format", "{{.Status}}").stdout
        docker(engine, "exec", "hc-file", "touch", "/tmp/ok")
        h = wait_for(lambda: (lambda h: h if h["Status"] == "healthy" else None)(_health(engine, "hc-file")))
        assert h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 0
        wait_for(lambda: len(_health(engine, "hc-file")["Log"]) == 5)
        time.sleep(0.5)
        assert len(_health(engine, "hc-file")["Log"]) == 5  # the last five only
        listed = docker(engine, "ps", "--filter", "health=healthy", "--format", "{{.Names}} {{.Status}}").stdout
        assert "hc-file" in listed and "(healthy)" in listed
        actions = [e["Action"] for e in events(engine, t0, "container=hc-file", "event=health_status")]
        assert actions[:2] == ["health_status: unhealthy", "health_status: healthy"], actions
        docker(engine, "stop", "-t", "0", "hc-file")
        assert _health(engine, "hc-file")["Status"] == "unhealthy"  # dockerd's word for stopped
    finally:
        docker(engine, "rm", "-f", "hc-file")


def test_health_probe_timeout(engine):
    docker(engine, "run", "-d", "--name", "hc-slow", "--health-cmd", "sleep 5",
           "--health-interval", "200ms", "--health-timeout", "300ms", "--health-retries", "1",
           "busybox", "sleep", "600")
    try:
        h = wait_for(lambda: (lambda h: h if h["Log"] else None)(_health(engine, "hc-slow")))
        entry = h["Log"][0]
        assert entry["ExitCode"] == -1 and "Health check exceeded timeout" in entry["Output"]
        wait_for(lambda: _health(engine, "hc-slow")["Status"] == "unhealthy")
    finally:
        docker(engine, "rm", "-f", "hc-slow")


def test_health_from_create_body_and_none(engine):
    body = {"Image": "busybox", "Cmd": ["sleep", "600"],
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 100_000_000, "StartPeriod": 0}}
    status, _, out = engine.http("POST", "/v1.45/containers/create?name=hc-cmd", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 201, out
    body = {"Image": "busybox", "Cmd": ["sleep", "600"], "Healthcheck": {"Test": ["NONE"]}}
    status, _, out = engine.http("POST", "/v1.45/containers/create?name=hc-none", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 201, out
    try:
        docker(engine, "start", "hc-cmd", "hc-none")
        wait_for(lambda: _health(engine, "hc-cmd")["Status"] == "healthy")
        assert _health(engine, "hc-none") is None
        assert "(" not in docker(engine, "ps", "--filter", "name=hc-none", "--format", "{{.Status}}").stdout
    finally:
        docker(engine, "rm", "-f", "hc-cmd", "hc-none")


def test_bad_healthcheck_is_400(engine):
    body = {"Image": "busybox", "Healthcheck": {"Test": ["CMD", "true"], "Interval": 10}}
    status, _, out = engine.http("POST", "/v1.45/containers/create", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 400 and "less than 1ms" in json.loads(out)["message"]


@pytest.mark.slow
def test_policies_at_daemon_restart(fresh_engine):
    """At daemon start: always comes back even after a user stop; unless-stopped only when the
    user did not stop it; a container that died while the daemon was down comes back under
    on-failure; running ones are live-restored whatever their policy."""
    engine = fresh_engine
    for name, policy in (("dr-always", "always"), ("dr-unless", "unless-stopped"),
                         ("dr-unless-run", "unless-stopped"), ("dr-no", "no"), ("dr-crash", "on-failure")):
        docker(engine, "run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "600")
    docker(engine, "stop", "-t", "0", "dr-always", "dr-unless")
    crash_pid = inspect(engine, "dr-crash")["State"]["Pid"]
    running_pids = {n: inspect(engine, n)["State"]["Pid"] for n in ("dr-unless-run", "dr-no")}
    engine.stop()
    os.kill(crash_pid, signal.SIGKILL)  # dies while nobody watches: exit 137
    wait_for(lambda: not os.path.exists(f"/proc/{crash_pid}") or _zombie(crash_pid))
    engine.start()
    d = inspect(engine, "dr-unless")
    assert d["State"]["Status"] == "exited" and d["State"]["ExitCode"] == 137
    for name, pid in running_pids.items():
        d = inspect(engine, name)
        assert d["State"]["Status"] == "running" and d["State"]["Pid"] == pid  # live restored
    wait_for(lambda: inspect(engine, "dr-always")["State"]["Status"] == "running")
    d = wait_for(lambda: (lambda d: d if d["State"]["Status"] == "running" else None)(
        inspect(engine, "dr-crash")))
    assert d["State"]["Pid"] != crash_pid
    ps = set(docker(engine, "ps", "--format", "{{.Names}}").stdout.split())
    assert ps == {"dr-always", "dr-unless-run", "dr-no", "dr-crash"}


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
