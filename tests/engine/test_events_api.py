"""GET /events and GET /system/df against a real dockyardd, through the docker CLI
(`docker events --since … --until …`, `docker system df`) and raw HTTP (reference engine-api.md
§1.9, §3.1: the legacy status/id/from fields compose v1 reads)."""

import json
import socket
import time
import urllib.parse

import pytest

from tests.engine.conftest import docker, wait_for


def events_cli(engine, since, until, *filters):
    args = ["events", "--since", f"{since:.9f}", "--until", f"{until:.9f}", "--format", "{{json .}}"]
    for f in filters:
        args += ["--filter", f]
    r = docker(engine, *args)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


class EventStream:
    """GET /events over a raw unix socket: the status line and headers, then one JSON object
    per chunked line, as the docker CLI and docker-py read it."""

    def __init__(self, engine, query: dict):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(engine.socket)
        path = "/v1.45/events?" + urllib.parse.urlencode(query)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        self.body = b""
        self.ended = False

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def _chunk(self) -> bool:
        """Moves one chunk into self.body; False at the last chunk."""
        while b"\r\n" not in self.buf:
            self._fill()
        size_line, self.buf = self.buf.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(self.buf) < size + 2:
            self._fill()
        self.body += self.buf[:size]
        self.buf = self.buf[size + 2:]
        if size == 0:
            self.ended = True
        return size != 0

    def next(self) -> dict | None:
        while b"\n" not in self.body:
            if self.ended or not self._chunk():
                return None
        line, self.body = self.body.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


def test_cli_events_since_until_replays_a_run(engine):
    t0 = time.time()
    cid = docker(engine, "create", "--name", "ev-run", "busybox", "sh", "-c", "exit 3").stdout.strip()
    docker(engine, "start", "ev-run")
    assert docker(engine, "wait", "ev-run").stdout.strip() == "3"
    docker(engine, "rm", "ev-run")
    t1 = time.time()
    mine = [e for e in events_cli(engine, t0, t1) if e.get("Actor", {}).get("ID") == cid]
    actions = [e["Action"] for e in mine]
    for a in ("create", "start", "die", "destroy"):
        assert a in actions, actions
    assert actions.index("create") < actions.index("start") < actions.index("die") < actions.index("destroy")
    die = mine[actions.index("die")]
    assert die["Actor"]["Attributes"]["exitCode"] == "3"
    assert die["Actor"]["Attributes"]["name"] == "ev-run"
    assert die["Actor"]["Attributes"]["image"] == "busybox"
    assert die["Type"] == "container" and die["scope"] == "local"
    # the legacy fields docker-compose v1 reads
    assert (die["status"], die["id"], die["from"]) == ("die", cid, "busybox")
    assert die["time"] == die["timeNano"] // 10**9 and t0 - 1 <= die["time"] <= t1 + 1


def test_cli_events_filters(engine):
    t0 = time.time()
    docker(engine, "run", "-d", "--name", "ev-f1", "--label", "team=blue", "busybox", "true")
    docker(engine, "run", "-d", "--name", "ev-f2", "busybox", "true")
    docker(engine, "wait", "ev-f1", "ev-f2")
    t1 = time.time()
    try:
        got = events_cli(engine, t0, t1, "container=ev-f1", "event=die")
        assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in got] == [("die", "ev-f1")]
        got = events_cli(engine, t0, t1, "label=team=blue", "type=container")
        assert got and {e["Actor"]["Attributes"]["name"] for e in got} == {"ev-f1"}
        assert not events_cli(engine, t0, t1, "type=image")
        names = {e["Actor"]["Attributes"].get("name") for e in events_cli(engine, t0, t1, "event=start")}
        assert names == {"ev-f1", "ev-f2"}
    finally:
        docker(engine, "rm", "-f", "ev-f1", "ev-f2")


def test_until_in_the_past_returns_at_once_and_bounds_the_replay(engine):
    t0 = time.time()
    docker(engine, "create", "--name", "ev-past", "busybox", "true")
    t1 = time.time()
    docker(engine, "rm", "ev-past")
    actions = [e["Action"] for e in events_cli(engine, t0, t1, "container=ev-past")]
    assert actions == ["create"]


def test_live_stream_headers_first_then_events(engine):
    stream = EventStream(engine, {"filters": json.dumps({"container": ["ev-live"]})})
    try:
        # The 200 and its headers come before any event exists (the CLI waits for them).
        assert stream.status == 200
        assert stream.headers["content-type"] == "application/json"
        docker(engine, "create", "--name", "ev-live", "busybox", "true")
        docker(engine, "start", "ev-live")
        seen = []
        while "die" not in seen:
            ev = stream.next()
            assert ev is not None
            assert ev["Actor"]["Attributes"]["name"] == "ev-live"
            seen.append(ev["Action"])
        assert seen[:2] == ["create", "start"]
    finally:
        stream.close()
        docker(engine, "rm", "-f", "ev-live")
    # the daemon noticed the client leaving and dropped its subscription
    wait_for(lambda: json.loads(engine.http("GET", "/info")[2])["NEventsListener"] == 0)


def test_until_in_the_future_ends_the_stream_then(engine):
    now = time.time()
    stream = EventStream(engine, {"since": f"{now:.9f}", "until": f"{now + 1:.9f}"})
    try:
        assert stream.status == 200
        while stream.next() is not None:
            pass
        assert stream.ended and time.time() >= now + 1
    finally:
        stream.close()


@pytest.mark.parametrize("query,message", [
    ({"filters": json.dumps({"colour": ["red"]})}, "invalid filter 'colour'"),
    ({"filters": "{not json"}, "invalid filter"),
    ({"since": "yesterday-ish"}, "timestamp"),
    ({"since": "200", "until": "100"}, "cannot be after"),
])
def test_bad_queries_are_400(engine, query, message):
    status, headers, body = engine.http("GET", "/v1.45/events?" + urllib.parse.urlencode(query))
    assert status == 400, body
    assert message in json.loads(body)["message"]


def test_system_df(engine):
    docker(engine, "create", "--name", "df-a", "busybox", "true")
    docker(engine, "run", "-d", "--name", "df-b", "busybox", "sh", "-c", "echo data > /written")
    assert docker(engine, "wait", "df-b").stdout.strip() == "0"
    try:
        status, _, body = engine.http("GET", "/v1.45/system/df")
        assert status == 200
        df = json.loads(body)
        assert df["Volumes"] == [] and df["BuildCache"] == []
        assert df["LayersSize"] > 0
        busybox = [i for i in df["Images"] if any(t.startswith("busybox:") for t in i["RepoTags"])]
        assert len(busybox) == 1
        image = busybox[0]
        using = [c for c in df["Containers"] if c["ImageID"] == image["Id"]]
        assert image["Containers"] == len(using) >= 2
        assert image["Size"] > 0 and 0 <= image["SharedSize"] <= image["Size"]
        assert df["LayersSize"] >= image["Size"] - image["SharedSize"]
        by_name = {c["Names"][0]: c for c in df["Containers"]}
        assert by_name["/df-b"]["SizeRw"] > 0 and by_name["/df-b"]["SizeRootFs"] >= image["Size"]
        assert by_name["/df-a"]["SizeRw"] >= 0

        status, _, body = engine.http("GET", "/v1.45/system/df?type=image")
        only = json.loads(body)
        assert status == 200 and only["Containers"] is None and only["Images"]
        status, _, body = engine.http("GET", "/v1.45/system/df?type=nonsense")
        assert status == 400 and "unknown object type" in json.loads(body)["message"]

        r = docker(engine, "system", "df")
        lines = r.stdout.splitlines()
        assert lines[0].split()[:2] == ["TYPE", "TOTAL"]
        assert any(line.startswith("Images") for line in lines)
        assert any(line.startswith("Containers") for line in lines)
        r = docker(engine, "system", "df", "-v")
        assert "df-b" in r.stdout
    finally:
        docker(engine, "rm", "-f", "df-a", "df-b")
