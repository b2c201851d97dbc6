"""Engine bugs that docker-py's integration suite (tests/dockerpy/run.py) found, each pinned here
with the request docker-py sends, so they stay fixed without running the suite."""

import json
import time

from tests.engine.test_logs_attach import raw_request, read_all, read_head

V = "/v1.45"


def _create(engine, body: dict, expect: int = 201):
    status, _, data = engine.http("POST", f"{V}/containers/create", body)
    assert status == expect, data
    return json.loads(data)


def _running(engine, cmd=("sleep", "300")) -> str:
    cid = _create(engine, {"Image": "busybox", "Cmd": list(cmd), "OpenStdin": True})["Id"]
    engine.json("POST", f"{V}/containers/{cid}/start", expect=204)
    return cid


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        assert len(data) >= 8, data
        kind, size = data[0], int.from_bytes(data[4:8], "big")
        out.append((kind, data[8:8 + size]))
        data = data[8 + size:]
    return out


def _exec_start(engine, exec_id: str, body: dict) -> bytes:
    s = raw_request(engine, "POST", f"{V}/exec/{exec_id}/start", json.dumps(body).encode(),
                    ["Content-Type: application/json", "Connection: Upgrade", "Upgrade: tcp"])
    try:
        head, rest = read_head(s)
        assert head.startswith("HTTP/1.1 101"), head
        return head, read_all(s, rest)
    finally:
        s.close()


def test_exec_framing_follows_the_start_requests_tty(engine):
    """docker-py's exec_start(tty=False) of an exec created with tty=True: dockerd frames the
    output (all of it stdout, from the terminal), since the start request's Tty decides."""
    cid = _running(engine)
    ex = engine.json("POST", f"{V}/containers/{cid}/exec", {
        "Cmd": ["sh", "-c", "echo hello out; echo hello err >&2"], "Tty": True,
        "AttachStdout": True, "AttachStderr": True}, expect=201)["Id"]
    head, data = _exec_start(engine, ex, {"Detach": False, "Tty": False})
    assert "application/vnd.docker.multiplexed-stream" in head
    frames = _frames(data)
    assert {k for k, _ in frames} == {1}
    assert b"".join(d for _, d in frames) == b"hello out\r\nhello err\r\n"
    # … and a Tty start is raw.
    ex = engine.json("POST", f"{V}/containers/{cid}/exec", {
        "Cmd": ["printf", "yay"], "Tty": True, "AttachStdout": True}, expect=201)["Id"]
    head, data = _exec_start(engine, ex, {"Detach": False, "Tty": True})
    assert "application/vnd.docker.raw-stream" in head
    assert data == b"yay"


def test_exec_config_field_names_match_as_go_does(engine):
    """docker-py sends "detachKeys" in the exec config; Go's decoder matches field names
    regardless of case, so the keys must take effect (and a bad one be refused)."""
    cid = _running(engine)
    ex = engine.json("POST", f"{V}/containers/{cid}/exec", {
        "Cmd": ["cat"], "Tty": True, "AttachStdin": True, "AttachStdout": True,
        "detachKeys": "ctrl-p"}, expect=201)["Id"]
    assert engine.json("GET", f"{V}/exec/{ex}/json", expect=200)["DetachKeys"] == "ctrl-p"
    status, _, body = engine.http("POST", f"{V}/containers/{cid}/exec", {"Cmd": ["true"], "detachKeys": "ctrl-"})
    assert status == 400, body


def test_create_field_names_match_as_go_does(engine):
    """docker-py's HostConfig says "CPURealtimeRuntime"; a top-level "Runtime" (docker-py's
    create_container(runtime=…)) is ignored as dockerd ignores it."""
    cid = _create(engine, {"Image": "busybox", "Cmd": ["true"], "Runtime": "runc",
                           "HostConfig": {"CPURealtimeRuntime": 0, "cpushares": 512}})["Id"]
    hc = engine.json("GET", f"{V}/containers/{cid}/json", expect=200)["HostConfig"]
    assert hc["Runtime"] == "runc"
    assert hc["CpuShares"] == 512
    status, _, body = engine.http("POST", f"{V}/containers/create",
                                  {"Image": "busybox", "HostConfig": {"NoSuchField": 1}})
    assert status == 400 and b"NoSuchField" in body


def test_log_config_as_dockerd_takes_it(engine):
    """max-file without max-size is accepted (no rotation), an empty Type is json-file, and an
    unknown driver gets dockerd's message with a 400."""
    cid = _create(engine, {"Image": "busybox", "Cmd": ["echo", "hi"],
                           "HostConfig": {"LogConfig": {"Type": "", "Config": {"max-file": "100"}}}})["Id"]
    engine.json("POST", f"{V}/containers/{cid}/start", expect=204)
    assert engine.json("POST", f"{V}/containers/{cid}/wait", expect=200)["StatusCode"] == 0
    lc = engine.json("GET", f"{V}/containers/{cid}/json", expect=200)["HostConfig"]["LogConfig"]
    assert lc == {"Type": "json-file", "Config": {"max-file": "100"}}
    deadline = time.monotonic() + 10
    while b"hi" not in engine.http("GET", f"{V}/containers/{cid}/logs?stdout=1")[2]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status, _, body = engine.http("POST", f"{V}/containers/create", {
        "Image": "busybox", "HostConfig": {"LogConfig": {"Type": "asdf", "Config": {}}}})
    assert status == 400
    assert json.loads(body)["message"] == "logger: no log driver named 'asdf' is registered"


def test_a_restarting_container_is_not_removed_without_force(engine):
    """docker-py's test_create_with_restart_policy: after the first exit of an `always`
    container, remove without force is refused (it is restarting or running again)."""
    cid = _create(engine, {"Image": "busybox", "Cmd": ["sleep", "1"],
                           "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
                                          "NetworkMode": "none"}})["Id"]
    engine.json("POST", f"{V}/containers/{cid}/start", expect=204)
    engine.json("POST", f"{V}/containers/{cid}/wait", expect=200)
    status, _, body = engine.http("DELETE", f"{V}/containers/{cid}")
    assert status == 409, body
    message = json.loads(body)["message"]
    assert "container is restarting" in message or "container is running" in message, message
    assert engine.json("GET", f"{V}/containers/{cid}/json", expect=200)["HostConfig"]["RestartPolicy"]["Name"] == "always"
    status, _, body = engine.http("DELETE", f"{V}/containers/{cid}?force=1")
    assert status == 204, body
    assert engine.http("GET", f"{V}/containers/{cid}/json")[0] == 404
