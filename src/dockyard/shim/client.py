"""ShimClient: the protocol of `protocol.py` from the caller's side (dockyard-containerd, tests).
One connection per client, one request at a time on it; blocking calls (`wait`) want a client
of their own, which is cheap: a shim serves any number of connections concurrently. Error
answers become dockyard.errors: not_found → NotFound, conflict → Conflict, invalid →
InvalidArgument, failed → SystemFailure; a dead or closed shim is a SystemFailure too."""

import socket

from dockyard.errors import Conflict, InvalidArgument, NotFound, SystemFailure
from dockyard.linux import unixsock

from . import protocol as P

ERRORS = {P.NOT_FOUND: NotFound, P.CONFLICT: Conflict, P.INVALID: InvalidArgument, P.FAILED: SystemFailure}


def _error(err: P.ShimError) -> Exception:
    return ERRORS.get(err.code, SystemFailure)(str(err))


class _Connection:
    def __init__(self, path: str, timeout: float | None):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            unixsock.connect(self.sock, path)
        except OSError as e:
            self.sock.close()
            raise SystemFailure(f"cannot connect to shim {path}: {e.strerror or e}") from None
        self.decoder = P.FrameDecoder()
        self.frames: list[tuple[int, bytes]] = []

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise SystemFailure(f"shim {self.path}: {e.strerror or e}") from None

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next frame, or None at end of stream."""
        while not self.frames:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise
            except OSError as e:
                raise SystemFailure(f"shim {self.path}: {e.strerror or e}") from None
            if not data:
                return None
            try:
                self.frames.extend(self.decoder.feed(data))
            except P.ProtocolError as e:
                raise SystemFailure(f"shim {self.path}: {e}") from None
        return self.frames.pop(0)

    def close(self) -> None:
        self.sock.close()


class _OnConnection:
    """Owns one shim connection: close() and `with` release it."""

    _conn: _Connection

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ShimClient(_OnConnection):
    def __init__(self, socket_path: str, timeout: float | None = None):
        self.socket_path = socket_path
        self.timeout = timeout
        self._conn = _Connection(socket_path, timeout)
        self._next_id = 0


    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        req_id = self._next_id
        self._conn.send(P.encode_request(req_id, method, params))
        return self._response(self._conn, req_id)

    @staticmethod
    def _response(conn: _Connection, req_id: int) -> dict:
        while True:
            frame = conn.next_frame()
            if frame is None:
                raise SystemFailure(f"shim {conn.path} closed the connection")
            kind, body = frame
            if kind != P.RESPONSE:
                continue
            try:
                rid, result, err = P.decode_response(body)
            except (ValueError, P.ProtocolError) as e:
                raise SystemFailure(f"shim {conn.path}: bad response: {e}") from None
            if err is not None and rid in (req_id, None):
                raise _error(err)
            if rid == req_id:
                return result

    # -- the methods -----------------------------------------------------------------------------

    def connect(self) -> dict:
        return self.call("connect")

    def create(self) -> int:
        return self.call("create")["pid"]

    def start(self, exec_id: str = "") -> int:
        return self.call("start", exec_id=exec_id)["pid"]

    def state(self, exec_id: str = "") -> dict:
        return self.call("state", exec_id=exec_id)

    def kill(self, signal: int = 15, all: bool = False, exec_id: str = "") -> None:  # noqa: A002
        self.call("kill", signal=int(signal), all=all, exec_id=exec_id)

    def delete(self, exec_id: str = "") -> dict:
        return self.call("delete", exec_id=exec_id)

    def pause(self) -> None:
        self.call("pause")

    def resume(self) -> None:
        self.call("resume")

    def pids(self) -> list[dict]:
        return self.call("pids")["pids"]

    def stats(self) -> dict:
        return self.call("stats")["stats"]

    def update(self, resources: dict) -> None:
        self.call("update", resources=resources)

    def exec(self, exec_id: str, process: dict, stdin: bool = False) -> None:
        self.call("exec", exec_id=exec_id, process=process, stdin=stdin)

    def resize(self, width: int, height: int, exec_id: str = "") -> None:
        self.call("resize", exec_id=exec_id, width=width, height=height)

    def close_stdin(self, exec_id: str = "") -> None:
        self.call("close_stdin", exec_id=exec_id)

    def wait(self, exec_id: str = "") -> dict:
        return self.call("wait", exec_id=exec_id)

    def shutdown(self) -> None:
        self.call("shutdown")

    def attach(self, exec_id: str = "", stdin: bool = False) -> "AttachStream":
        """A new connection switched to a stream of this process's output."""
        conn = _Connection(self.socket_path, self.timeout)
        try:
            conn.send(P.encode_request(1, "attach", {"exec_id": exec_id, "stdin": stdin}))
            self._response(conn, 1)
        except BaseException:
            conn.close()
            raise
        return AttachStream(conn)

    def subscribe(self) -> "EventStream":
        """A new connection switched to the shim's event stream; `.oom_kills` is the count of
        OOMs the shim had seen when it answered."""
        conn = _Connection(self.socket_path, self.timeout)
        try:
            conn.send(P.encode_request(1, "subscribe", {}))
            result = self._response(conn, 1)
        except BaseException:
            conn.close()
            raise
        return EventStream(conn, int(result.get("oom_kills") or 0))


class AttachStream(_OnConnection):
    """Output frames of one process: read() gives ("stdout"|"stderr", bytes), then ("exit",
    {exit_status, exited_at}) last, then None. write()/close_stdin() when attached with stdin."""

    def __init__(self, conn: _Connection):
        self._conn = conn

    def settimeout(self, timeout: float | None) -> None:
        self._conn.sock.settimeout(timeout)

    def read(self):
        while True:
            frame = self._conn.next_frame()
            if frame is None:
                return None
            kind, body = frame
            if kind == P.STDOUT:
                return "stdout", body
            if kind == P.STDERR:
                return "stderr", body
            if kind == P.EXIT:
                return "exit", P.loads(body)
            if kind == P.RESPONSE:
                _, _, err = P.decode_response(body)
                if err is not None:
                    raise _error(err)

    def write(self, data: bytes) -> None:
        for i in range(0, len(data), P.MAX_BODY):
            self._conn.send(P.encode_frame(P.STDIN, data[i:i + P.MAX_BODY]))

    def close_stdin(self) -> None:
        self._conn.send(P.encode_frame(P.STDIN_CLOSE))

    def shutdown(self) -> None:
        """Ends the stream from any thread: a read() blocked in another returns None (close()
        alone does not wake it). The process goes on; close() still releases the socket."""
        try:
            self._conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # not connected any more, or closed already
            pass


class EventStream(_OnConnection):
    """The shim's events: read() gives one event, a dict such as {"event": "oom", "oom_kills":
    3}, or None once the shim has closed the stream (it exited)."""

    def __init__(self, conn: _Connection, oom_kills: int):
        self._conn = conn
        self.oom_kills = oom_kills

    def settimeout(self, timeout: float | None) -> None:
        self._conn.sock.settimeout(timeout)

    def read(self) -> dict | None:
        while True:
            frame = self._conn.next_frame()
            if frame is None:
                return None
            kind, body = frame
            if kind == P.EVENT:
                try:
                    return P.decode_event(body)
                except P.ProtocolError as e:
                    raise SystemFailure(f"shim {self._conn.path}: {e}") from None
            if kind == P.RESPONSE:
                _, _, err = P.decode_response(body)
                if err is not None:
                    raise _error(err)
