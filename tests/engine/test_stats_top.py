"""`docker top` and `docker stats` against a real dockyardd (engine/stats.py, engine/api/fs.py):
the CLI's tables, and the API's ContainerTopResponse / ContainerStatsResponse shapes."""

from __future__ import annotations

import json
import uuid

import pytest

from dockyard.engine import stats
from tests.engine.conftest import _UnixConnection

pytestmark = pytest.mark.usefixtures("subreaper")


@pytest.fixture
def running(engine):
    name = "st-" + uuid.uuid4().hex[:8]
    cid = engine.docker("run", "-d", "--name", name, "busybox", "sleep", "1000", check=True).stdout.strip()
    yield name, cid
    engine.docker("rm", "-f", name)


def _init_pid(cid: str, top: dict) -> int:
    """The container's process, checked on the host: its cgroup names the container."""
    pid = int(top["Processes"][0][top["Titles"].index("PID")])
    with open(f"/proc/{pid}/cgroup") as f:
        assert cid in f.read()
    return pid


def test_top_shows_ps_ef_columns(engine, running):
    running, cid = running
    r = engine.docker("top", running, check=True)
    header, *rows = [line.split() for line in r.stdout.splitlines() if line.strip()]
    assert header == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [row[-2:] for row in rows] == [["sleep", "1000"]]
    top = engine.json("GET", f"/containers/{running}/top", expect=200)
    pid = _init_pid(cid, top)
    assert top["Titles"] == header
    [proc] = top["Processes"]
    assert proc[0] == "root" and proc[1] == str(pid) and proc[5] == "?" and proc[7] == "sleep 1000"


def test_top_with_ps_args_keeps_only_the_containers_processes(engine, running):
    running, cid = running
    pid = _init_pid(cid, engine.json("GET", f"/containers/{running}/top", expect=200))
    top = engine.json("GET", f"/containers/{running}/top?ps_args=-o%20pid,args", expect=200)
    assert top["Titles"] == ["PID", "COMMAND"]
    assert top["Processes"] == [[str(pid), "sleep 1000"]]


def test_top_of_a_container_that_is_not_running_is_409(engine):
    name = "st-" + uuid.uuid4().hex[:8]
    engine.docker("create", "--name", name, "busybox", "true", check=True)
    try:
        status, _, body = engine.http("GET", f"/containers/{name}/top")
        assert status == 409 and b"is not running" in body
        assert engine.http("GET", "/containers/nosuch-e7/top")[0] == 404
    finally:
        engine.docker("rm", "-f", name)


def test_stats_no_stream_prints_a_row(engine, running):
    running, _ = running
    r = engine.docker("stats", "--no-stream", running, check=True)
    header, row = r.stdout.splitlines()[:2]
    assert header.split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert running in row.split()
    assert row.split()[-1] == "1"   # PIDS


def test_interface_stats_from_net_dev():
    text = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
            "    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n"
            "  eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n"
            "  bad: x\n")
    assert stats.interface_stats(text) == {"eth0": {
        "rx_bytes": 5000, "rx_packets": 40, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 3000, "tx_packets": 30, "tx_errors": 3, "tx_dropped": 4}}
    assert stats.interface_stats("") == {}


def test_stats_shape_and_precpu(engine, running):
    running, _ = running
    s = engine.json("GET", f"/containers/{running}/stats?stream=0", expect=200)
    assert s["name"] == "/" + running and len(s["id"]) == 64
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert s["cpu_stats"]["system_cpu_usage"] > s["precpu_stats"]["system_cpu_usage"] > 0
    assert s["cpu_stats"]["online_cpus"] >= 1
    assert s["memory_stats"]["usage"] > 0 and s["memory_stats"]["limit"] > 0
    assert isinstance(s["memory_stats"]["stats"], dict)
    assert s["pids_stats"]["current"] == 1
    assert s["read"] != s["preread"]
    # On the default bridge: eth0's counters (lo is left out, as dockerd does).
    assert set(s["networks"]) == {"eth0"}
    assert set(s["networks"]["eth0"]) == {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
                                          "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"}
    one = engine.json("GET", f"/containers/{running}/stats?stream=0&one-shot=1", expect=200)
    assert one["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert one["preread"] == "0001-01-01T00:00:00Z"
    status, _, body = engine.http("GET", f"/containers/{running}/stats?stream=1&one-shot=1")
    assert status == 400


def test_stats_stream_sends_a_sample_per_line(engine, running):
    running, _ = running
    conn = _UnixConnection(engine.socket, 30)
    try:
        conn.request("GET", f"/containers/{running}/stats")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
        first, second = json.loads(resp.readline()), json.loads(resp.readline())
    finally:
        conn.close()
    assert first["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert second["precpu_stats"] == first["cpu_stats"] and second["preread"] == first["read"]


def test_stats_of_a_stopped_container_are_zero(engine):
    name = "st-" + uuid.uuid4().hex[:8]
    engine.docker("create", "--name", name, "busybox", "true", check=True)
    try:
        s = engine.json("GET", f"/containers/{name}/stats?stream=false", expect=200)
        assert s["name"] == "/" + name and s["memory_stats"] == {} and s["pids_stats"] == {}
        assert s["cpu_stats"]["cpu_usage"]["total_usage"] == 0
        r = engine.docker("stats", "--no-stream", name, check=True)
        assert "0.00%" in r.stdout
    finally:
        engine.docker("rm", "-f", name)
