"""The HTTP layer every router stands on, through raw sockets: the hijack of attach and exec
(101 UPGRADED, raw bytes both ways, the client's half-close ending the input only), JSON bodies
refused with 400 and {"message"} whatever is sent, JSON streams flushing their headers at once,
the version check and the error mapping of the middleware.

The app is the engine's own (build_app and its middleware) with no routers but test routes,
served on a unix socket by a loop in a thread; the daemon behind it is only its Config, which is
all this layer reads."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import threading
import types

import pytest
from aiohttp import web

from dockyard.engine.api import build_app
from dockyard.engine.api import httputil
from dockyard.engine.config import Config
from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable


GATE = web.AppKey("gate", asyncio.Event)


# -- test routes -----------------------------------------------------------------------------------

async def echo_after_eof(request):
    """Reads the client's input to its EOF, then writes after it: output must survive the
    client's half-close."""
    h = await httputil.hijack(request, content_type="application/vnd.docker.raw-stream")
    received = b""
    while chunk := await h.read():
        received += chunk
    await asyncio.sleep(0.1)
    await h.write(b"got:" + received)
    await asyncio.sleep(0.1)
    await h.write(b":end")
    return web.Response()  # whatever the handler returns, nothing more reaches the client


async def exec_start(request):
    body = await httputil.read_json(request)
    h = await httputil.hijack(request, content_type="application/vnd.docker.multiplexed-stream")
    await h.write(json.dumps(body).encode())


async def body(request):
    return httputil.json_response(await httputil.read_json(request, max_bytes=4096))


async def optional_body(request):
    return httputil.json_response(await httputil.read_json(request, required=False))


async def query(request):
    return httputil.json_response({"flag": httputil.query_bool(request, "flag", True),
                                   "n": httputil.query_int(request, "n", 7, minimum=0)})


async def stream(request):
    s = await httputil.json_stream(request)
    await request.app[GATE].wait()
    await s.send({"status": "one"})
    await s.send({"status": "two"})
    return s


async def raising(request):
    raise {"notfound": NotFound("No such container: x"), "conflict": Conflict("in use"),
           "invalid": InvalidArgument("bad"), "unavailable": Unavailable("gone"),
           "bug": RuntimeError("secret detail")}[request.match_info["kind"]]


def _routes():
    return [web.post("/hijack", echo_after_eof), web.post("/exec", exec_start), web.post("/body", body),
            web.post("/optional", optional_body), web.get("/query", query), web.get("/stream", stream),
            web.get("/raise/{kind}", raising)]


# -- the server ------------------------------------------------------------------------------------

class Served:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dyh-", dir="/tmp")
        self.path = os.path.join(self.dir, "s.sock")
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self):
        app = build_app(types.SimpleNamespace(config=Config()), routers=())
        for route in _routes():
            for path in (route.path, "/v{version:[0-9]+\\.[0-9]+}" + route.path):
                web.RouteDef(route.method, path, route.handler, route.kwargs).register(app.router)
        app[GATE] = asyncio.Event()
        self.app = app
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.UnixSite(self.runner, self.path).start()

    def open_gate(self):
        self.loop.call_soon_threadsafe(self.app[GATE].set)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        os.unlink(self.path) if os.path.exists(self.path) else None
        os.rmdir(self.dir)

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.path)
        return s


@pytest.fixture(scope="module")
def served():
    s = Served()
    yield s
    s.close()


def read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def split_head(data: bytes) -> tuple[str, dict, bytes]:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], headers, rest


def request(served, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """(status, headers, body) of one plain HTTP/1.1 request on a raw socket."""
    s = served.connect()
    hdrs = {"Host": "docker", "Connection": "close", **(headers or {})}
    if body and "Transfer-Encoding" not in hdrs:
        hdrs["Content-Length"] = str(len(body))
    s.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()).encode()
              + b"\r\n" + body)
    data = read_all(s)
    s.close()
    status_line, headers_, rest = split_head(data)
    if headers_.get("transfer-encoding") == "chunked":
        rest = _dechunk(rest)
    return int(status_line.split()[1]), headers_, rest


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp"}


# -- the hijack ------------------------------------------------------------------------------------

def test_hijack_answers_101_and_output_outlives_the_clients_half_close(served):
    s = served.connect()
    s.sendall(b"POST /v1.45/hijack HTTP/1.1\r\nHost: docker\r\nContent-Type: text/plain\r\n"
              b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    status, headers, _ = split_head(head)
    assert status == "HTTP/1.1 101 UPGRADED"
    assert headers["content-type"] == "application/vnd.docker.raw-stream"
    assert headers["connection"] == "Upgrade" and headers["upgrade"] == "tcp"
    assert headers["api-version"] == "1.45" and headers["ostype"] == "linux"
    s.sendall(b"hello ")
    s.sendall(b"world")
    s.shutdown(socket.SHUT_WR)  # the docker CLI's CloseWrite: stdin ended
    assert read_all(s) == b"got:hello world:end"  # raw bytes: no chunked framing
    s.close()


def test_hijack_without_upgrade_answers_200_then_raw_bytes(served):
    s = served.connect()
    s.sendall(b"POST /hijack HTTP/1.1\r\nHost: docker\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    status, headers, _ = split_head(head)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/vnd.docker.raw-stream"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    s.sendall(b"x")
    s.shutdown(socket.SHUT_WR)
    assert read_all(s) == b"got:x:end"
    s.close()


def test_exec_start_reads_its_json_body_then_hijacks(served):
    body = json.dumps({"Detach": False, "Tty": False}).encode()
    s = served.connect()
    s.sendall(b"POST /exec HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
              b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    status, headers, rest = split_head(read_all(s))
    assert status == "HTTP/1.1 101 UPGRADED"
    assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert json.loads(rest) == {"Detach": False, "Tty": False}
    s.close()


def test_server_still_serves_after_hijacks(served):
    for _ in range(3):
        s = served.connect()
        s.sendall(b"POST /hijack HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        s.close()  # gone at once: the handler's write fails quietly
    assert request(served, "GET", "/query")[0] == 200


# -- bodies ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, word", [
    (b"{", "invalid JSON"),
    (b"{\"a\": 1} trailing", "invalid JSON"),
    (b"[1, 2]", "want an object, not an array"),
    (b"\"text\"", "want an object, not a string"),
    (b"{\"a\": NaN}", "invalid JSON"),
    (b"{\"a\": \"\xff\"}", "not UTF-8"),
    (b"", "empty"),
    (b"[" * 3000, "invalid JSON"),
])
def test_bad_json_is_a_400_with_a_message(served, raw, word):
    status, headers, data = request(served, "POST", "/body", raw, {"Content-Type": "application/json"})
    assert status == 400, data
    assert headers["content-type"] == "application/json"
    assert word in json.loads(data)["message"]


def test_huge_bodies_are_refused_by_length_and_while_chunked(served):
    status, _, data = request(served, "POST", "/body", b"{" + b" " * 5000 + b"}")
    assert (status, json.loads(data)["message"].split(":")[0]) == (400, "request body too large")
    chunk = b" " * 1500
    chunked = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 3 + b"0\r\n\r\n"
    status, _, data = request(served, "POST", "/body", chunked, {"Transfer-Encoding": "chunked"})
    assert status == 400 and "too large" in json.loads(data)["message"]


def test_chunked_json_body_is_read(served):
    parts = [b'{"Image":', b'"busybox"}']
    chunked = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in parts) + b"0\r\n\r\n"
    status, _, data = request(served, "POST", "/body", chunked,
                              {"Transfer-Encoding": "chunked", "Content-Type": "application/json"})
    assert (status, json.loads(data)) == (200, {"Image": "busybox"})


def test_optional_body_may_be_empty(served):
    assert request(served, "POST", "/optional")[0:3:2] == (200, b"{}\n")


# -- query values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("qs, expect", [
    ("", {"flag": True, "n": 7}), ("?flag=0&n=3", {"flag": False, "n": 3}),
    ("?flag=True", {"flag": True, "n": 7}), ("?flag=false", {"flag": False, "n": 7}),
    ("?flag=&n=", {"flag": False, "n": 7}), ("?flag=1", {"flag": True, "n": 7}),
])
def test_query_values(served, qs, expect):
    status, _, data = request(served, "GET", "/query" + qs)
    assert (status, json.loads(data)) == (200, expect)


@pytest.mark.parametrize("qs, word", [("?flag=maybe", "flag"), ("?n=x", "n"), ("?n=-1", "less than")])
def test_bad_query_values_are_400(served, qs, word):
    status, _, data = request(served, "GET", "/query" + qs)
    assert status == 400 and word in json.loads(data)["message"]


# -- streams, versions, errors ---------------------------------------------------------------------

def test_json_stream_sends_its_headers_before_any_object(served):
    s = served.connect()
    s.sendall(b"GET /stream HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:  # arrives while the handler still waits at the gate
        head += s.recv(1)
    status, headers, _ = split_head(head)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/json"
    assert headers["transfer-encoding"] == "chunked"
    served.open_gate()
    body = _dechunk(read_all(s))
    assert [json.loads(line) for line in body.splitlines()] == [{"status": "one"}, {"status": "two"}]
    s.close()


def test_version_bounds(served):
    status, headers, data = request(served, "GET", "/v1.46/query")
    assert status == 400
    assert json.loads(data) == {"message": "client version 1.46 is too new. Maximum supported API version is 1.45"}
    status, _, data = request(served, "GET", "/v1.23/query")
    assert status == 400
    assert json.loads(data)["message"] == ("client version 1.23 is too old. Minimum supported API version is "
                                           "1.24, please upgrade your client to a newer version")
    assert request(served, "GET", "/v1.24/query")[0] == 200


@pytest.mark.parametrize("kind, status, message", [
    ("notfound", 404, "No such container: x"), ("conflict", 409, "in use"), ("invalid", 400, "bad"),
    ("unavailable", 503, "gone"), ("bug", 500, "internal error: RuntimeError"),
])
def test_errors_map_to_statuses_with_json_messages(served, kind, status, message):
    got, headers, data = request(served, "GET", f"/v1.45/raise/{kind}")
    assert got == status
    assert headers["content-type"] == "application/json"
    assert json.loads(data) == {"message": message}
    assert headers["api-version"] == "1.45" and headers["docker-experimental"] == "false"


def test_unknown_route_is_page_not_found(served):
    status, headers, data = request(served, "GET", "/v1.45/no/such/thing")
    assert (status, headers["content-type"], json.loads(data)) == (404, "application/json", {"message": "page not found"})
