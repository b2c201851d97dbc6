"""engine/events.py without a daemon: message shape, history, since/until, filters as dockerd
applies them; plus the pure parts of restarts.py and health.py."""

import asyncio
import time
from types import SimpleNamespace

import pytest

from dockyard.engine import events as ev
from dockyard.engine import health, restarts
from dockyard.engine.state import State
from dockyard.errors import InvalidArgument

ID = "a" * 64


def run(coro):
    return asyncio.run(coro)


async def collect(sub, n=None, timeout=5.0):
    out = []
    async def go():
        async for m in sub:
            out.append(m)
            if n is not None and len(out) == n:
                break
    await asyncio.wait_for(go(), timeout)
    return out


def test_container_message_has_legacy_fields():
    log = ev.Events()
    m = log.publish("container", "die", ID, {"image": "busybox", "name": "x", "exitCode": 3})
    assert m["status"] == "die" and m["id"] == ID and m["from"] == "busybox"
    assert m["Type"] == "container" and m["Action"] == "die" and m["scope"] == "local"
    assert m["Actor"] == {"ID": ID, "Attributes": {"image": "busybox", "name": "x", "exitCode": "3"}}
    assert m["time"] == m["timeNano"] // 1_000_000_000
    assert abs(m["timeNano"] - time.time_ns()) < 60 * 1_000_000_000


def test_image_message_has_status_and_id_but_no_from():
    m = ev.Events().publish("image", "pull", "busybox:latest", {"name": "busybox:latest"})
    assert m["status"] == "pull" and m["id"] == "busybox:latest" and "from" not in m
    n = ev.Events().publish("network", "create", "n1", {})
    assert "status" not in n and "id" not in n


def test_container_attributes_from_record():
    c = SimpleNamespace(name="web", image="busybox", config={"Labels": {"a": "1"}})
    assert ev.container_attributes(c, exitCode=0) == {"a": "1", "image": "busybox", "name": "web",
                                                      "exitCode": "0"}


def test_history_is_bounded_and_replayed_with_since():
    async def main():
        log = ev.Events(history_limit=4)
        for i in range(6):
            log.publish("container", f"a{i}", ID, {})
        sub = log.subscribe(since=0, until=time.time_ns())
        return [m["Action"] for m in await collect(sub)]
    assert run(main()) == ["a2", "a3", "a4", "a5"]


def test_no_since_means_live_only():
    async def main():
        log = ev.Events()
        log.publish("container", "old", ID, {})
        sub = log.subscribe()
        log.publish("container", "new", ID, {})
        return [m["Action"] for m in await collect(sub, 1)]
    assert run(main()) == ["new"]


def test_since_between_events():
    async def main():
        log = ev.Events()
        first = log.publish("container", "one", ID, {})
        second = log.publish("container", "two", ID, {})
        assert second["timeNano"] > first["timeNano"]
        sub = log.subscribe(since=second["timeNano"], until=second["timeNano"])
        return [m["Action"] for m in await collect(sub)]
    assert run(main()) == ["two"]


def test_until_in_future_ends_then_and_keeps_live_events_before():
    async def main():
        log = ev.Events()
        t0 = time.monotonic()
        sub = log.subscribe(until=time.time() + 0.3)
        log.publish("container", "live", ID, {})
        got = [m["Action"] for m in await collect(sub)]
        return got, time.monotonic() - t0
    got, took = run(main())
    assert got == ["live"] and took >= 0.25


def test_until_in_past_ends_after_replay_and_skips_later_events():
    async def main():
        log = ev.Events()
        log.publish("container", "before", ID, {})
        cut = time.time_ns()
        log.publish("container", "after", ID, {})
        return [m["Action"] for m in await collect(log.subscribe(until=cut))]
    assert run(main()) == ["before"]


def test_close_ends_subscribers():
    async def main():
        log = ev.Events()
        sub = log.subscribe()
        waiter = asyncio.ensure_future(collect(sub))
        await asyncio.sleep(0)
        await log.close()
        return await waiter
    assert run(main()) == []


def test_slow_subscriber_is_cut_off_not_unbounded(monkeypatch):
    monkeypatch.setattr(ev, "QUEUE_LIMIT", 3)
    async def main():
        log = ev.Events()
        sub = log.subscribe()
        for i in range(10):
            log.publish("container", f"a{i}", ID, {})
        return await collect(sub)
    got = run(main())
    assert 0 < len(got) < 10


def _msg(type_, action, actor, **attrs):
    return ev.Events().publish(type_, action, actor, attrs)


@pytest.mark.parametrize("filters,message,expected", [
    ({"type": ["container"]}, ("container", "start", ID), True),
    ({"type": ["image"]}, ("container", "start", ID), False),
    ({"event": ["start", "die"]}, ("container", "die", ID), True),
    ({"event": ["start"]}, ("container", "die", ID), False),
    # health_status / exec_* match by prefix, as dockerd (#25798)
    ({"event": ["health_status"]}, ("container", "health_status: healthy", ID), True),
    ({"event": ["exec_start"]}, ("container", "exec_start: sh -c true", ID), True),
    ({"event": ["health_status: healthy"]}, ("container", "health_status: unhealthy", ID), False),
    ({"container": ["aaaa"]}, ("container", "start", ID), True),       # id prefix
    ({"container": ["web"]}, ("container", "start", ID), True),        # name
    ({"container": ["other"]}, ("container", "start", ID), False),
    ({"image": ["busybox"]}, ("container", "start", ID), True),        # the container's image
    ({"image": ["busybox"]}, ("image", "tag", "sha256:" + "b" * 64), True),   # name attribute
    ({"image": ["alpine"]}, ("container", "start", ID), False),
    ({"label": ["tier=web"]}, ("container", "start", ID), True),
    ({"label": ["tier"]}, ("container", "start", ID), True),
    ({"label": ["tier=db"]}, ("container", "start", ID), False),
    ({"label": ["tier=web", "missing"]}, ("container", "start", ID), False),
    ({"type": ["container"], "event": ["die"]}, ("container", "start", ID), False),
    ({"scope": ["local"]}, ("container", "start", ID), True),
    ({"scope": ["swarm"]}, ("container", "start", ID), False),
])
def test_filters(filters, message, expected):
    type_, action, actor = message
    attrs = {"name": "web", "image": "busybox:latest", "tier": "web"}
    if type_ == "image":
        attrs = {"name": "docker.io/library/busybox:latest"}
    assert ev.EventFilter(filters).matches(_msg(type_, action, actor, **attrs)) is expected


def test_unknown_filter_key_is_invalid():
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        ev.EventFilter({"colour": ["red"]})


def test_filtered_subscription_skips_others():
    async def main():
        log = ev.Events()
        sub = log.subscribe(filters={"event": ["die"]})
        log.publish("container", "start", ID, {})
        log.publish("container", "die", ID, {})
        return [m["Action"] for m in await collect(sub, 1)]
    assert run(main()) == ["die"]


# --- restart policy and back-off (restarts.py) ----------------------------------------------

def test_backoff_doubles_caps_and_resets():
    b = restarts.Backoff()
    delays = [b.next(0.5) for _ in range(12)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == restarts.MAX_DELAY
    assert b.next(restarts.RESET_AFTER) == 0.1


@pytest.mark.parametrize("policy,exit_code,manual,count,expected", [
    ({"Name": "no"}, 1, False, 0, False),
    ({"Name": ""}, 1, False, 0, False),
    ({"Name": "always"}, 0, False, 5, True),
    ({"Name": "always"}, 0, True, 0, False),
    ({"Name": "unless-stopped"}, 0, False, 0, True),
    ({"Name": "unless-stopped"}, 1, True, 0, False),
    ({"Name": "on-failure"}, 0, False, 0, False),
    ({"Name": "on-failure"}, 2, False, 100, True),
    ({"Name": "on-failure", "MaximumRetryCount": 2}, 2, False, 1, True),
    ({"Name": "on-failure", "MaximumRetryCount": 2}, 2, False, 2, False),
])
def test_should_restart(policy, exit_code, manual, count, expected):
    p = restarts.RestartPolicy.of({"RestartPolicy": policy})
    assert p.should_restart(exit_code, manual, count) is expected


def test_daemon_start_restarts_always_even_after_user_stop():
    always = restarts.RestartPolicy.of({"RestartPolicy": {"Name": "always"}})
    unless = restarts.RestartPolicy.of({"RestartPolicy": {"Name": "unless-stopped"}})
    assert always.restart_at_daemon_start(0, True, 0)
    assert not unless.restart_at_daemon_start(0, True, 0)
    assert unless.restart_at_daemon_start(0, False, 0)


@pytest.mark.parametrize("hc,message", [
    ({"RestartPolicy": {"Name": "sometimes"}}, "unknown policy 'sometimes'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}, "only be used with 'on-failure'"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}, "cannot be negative"),
    ({"RestartPolicy": {"Name": "always"}, "AutoRemove": True}, "AutoRemove"),
    ({"RestartPolicy": {"Name": 3}}, "must be a string"),
])
def test_validate_restart_policy(hc, message):
    with pytest.raises(InvalidArgument, match=message):
        restarts.validate_restart_policy(hc)


def test_validate_restart_policy_accepts_docker_forms():
    for hc in ({}, {"RestartPolicy": {"Name": "", "MaximumRetryCount": 0}},
               {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5}},
               {"RestartPolicy": {"Name": "no"}, "AutoRemove": True}):
        restarts.validate_restart_policy(hc)


class _FakeStore:
    def __init__(self, *containers):
        self.by_id = {c.id: c for c in containers}
        self.saved = []

    def list(self):
        return list(self.by_id.values())

    def find(self, cid):
        return self.by_id.get(cid)

    def save(self, c):
        self.saved.append(c.state.status)


class _FakeContainers:
    """Records start calls; the real lifecycle is tested in tests/engine/test_restart_health.py."""

    def __init__(self, fail=False):
        self.started = []
        self.fail = fail

    async def start(self, cid, restart=False):
        if self.fail:
            raise InvalidArgument("no such file")
        self.started.append((cid, restart))


def _container(policy, exit_code=1, ran=0.0):
    state = State()
    state.set_running(1, 1_000_000_000)
    state.set_stopped(exit_code, 1_000_000_000 + int(ran * 1e9))
    return SimpleNamespace(id=ID, name="x", image="busybox", config={},
                           host_config={"RestartPolicy": policy}, state=state,
                           restart_count=0, manually_stopped=False)


def test_on_exit_marks_restarting_then_starts():
    async def main():
        c = _container({"Name": "on-failure"})
        daemon = SimpleNamespace(store=_FakeStore(c), containers=_FakeContainers())
        r = restarts.Restarts(daemon)
        assert await r.on_exit(c)
        assert c.state.status == "restarting" and c.restart_count == 1 and r.pending(c.id)
        await asyncio.sleep(0.3)
        return daemon.containers.started, r.pending(c.id)
    assert run(main()) == ([(ID, True)], False)


def test_on_exit_cancelled_by_user_and_failed_restart_stops():
    async def main():
        c = _container({"Name": "always"})
        daemon = SimpleNamespace(store=_FakeStore(c), containers=_FakeContainers(fail=True))
        r = restarts.Restarts(daemon)
        assert await r.on_exit(c)
        assert r.cancel(c.id) and not r.pending(c.id)
        await asyncio.sleep(0.3)
        assert daemon.containers.started == []
        c.state.set_stopped(1)
        assert await r.on_exit(c)
        await asyncio.sleep(0.5)  # second delay: 0.2 s
        return c.state.status, c.state.error
    status, error = run(main())
    assert status == "exited" and "no such file" in error


# --- healthcheck configuration (health.py) --------------------------------------------------

def test_merge_healthcheck_fills_from_image():
    image = {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}
    assert health.merge_healthcheck(None, image) == image
    assert health.merge_healthcheck({"Interval": 1_000_000_000}, image) == {
        "Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000, "Retries": 2}
    assert health.merge_healthcheck({"Test": ["NONE"]}, image)["Test"] == ["NONE"]


def test_probe_command():
    assert health.probe_command({"Test": ["CMD", "cat", "/x"]}) == ["cat", "/x"]
    assert health.probe_command({"Test": ["CMD-SHELL", "exit 1"]}) == ["/bin/sh", "-c", "exit 1"]
    assert health.probe_command({"Test": ["CMD-SHELL", "x"]}, ["/bin/ash", "-e", "-c"]) == [
        "/bin/ash", "-e", "-c", "x"]
    assert health.probe_command({"Test": ["NONE"]}) is None
    assert health.probe_command({}) is None
    assert health.probe_command(None) is None


@pytest.mark.parametrize("hc,message", [
    ({"Interval": 10}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Test": ["SOMETIMES"]}, "unknown test type"),
    ({"Test": "exit 0"}, "list of strings"),
    ({"Timeout": "1s"}, "integer"),
])
def test_validate_healthcheck(hc, message):
    with pytest.raises(InvalidArgument, match=message):
        health.validate_healthcheck(hc)


def test_format_duration_as_go():
    assert health.format_duration(30_000_000_000) == "30s"
    assert health.format_duration(1_500_000_000) == "1.5s"
    assert health.format_duration(500_000_000) == "500ms"
    assert health.format_duration(90_000_000_000) == "1m30s"
