"""The shim protocol: how dockyard-containerd (or any client) talks to one dockyard-shim over
its unix socket `shim.sock`. Pure and I/O-free: framing, message encoding and decoding only,
so every edge case is a unit test. JSON goes through the interpreter's `_json` accelerator
directly, because the `json` package imports `re` (about 1 MB of RSS per shim).

Frames
------
Every frame, in both directions, is a 6-byte header and a body::

    u32 big-endian  body length (at most MAX_BODY, 4 MiB)
    u8              protocol version (VERSION, 1)
    u8              frame type
    body            type-specific, below

A frame with a bad length or another version cannot be resynchronised: the shim answers with
one error response (id null) and closes the connection. An unknown type or a body that is not
the JSON object it should be is answered with an error, and the connection goes on.

Frame types
-----------
REQUEST  (1, client → shim)  JSON ``{"id": <int>, "method": <str>, "params": {...}}``
RESPONSE (2, shim → client)  JSON ``{"id": <int>, "result": {...}}`` or
                             ``{"id": <int|null>, "error": {"code": <str>, "message": <str>}}``
STDOUT   (3, shim → client)  raw bytes the process wrote on stdout (or its pty)
STDERR   (4, shim → client)  raw bytes the process wrote on stderr
STDIN    (5, client → shim)  raw bytes for the process's stdin
STDIN_CLOSE (6, client → shim)  empty: close the process's stdin
EXIT     (7, shim → client)  JSON ``{"exit_status": <int>, "exited_at": <str>}``, the last frame
                             of an attach stream; the shim closes the connection after it
EVENT    (8, shim → client)  JSON ``{"event": <str>, ...}``, one event of a `subscribe` stream:
                             ``{"event": "oom", "oom_kills": <int>}`` when the container's
                             memory cgroup reported an OOM (oom_kills: the shim's running count)

Requests carry a client-chosen id, echoed in the response. Requests on one connection are
served concurrently: a `wait` that blocks does not hold up the requests after it, and responses
may come out of order. Error codes: ``not_found``, ``conflict``, ``invalid``, ``failed``
(mapped to dockyard.errors NotFound, Conflict, InvalidArgument, SystemFailure by the client).

Methods (params → result); `exec_id` is "" or absent for the container's init
-----------------------------------------------------------------------------
connect      {}                                  → {shim_pid, task_pid, version}
create       {}  (the bundle is --bundle)        → {pid}
start        {exec_id}                           → {pid}
state        {exec_id}                           → {id, exec_id, bundle, pid, status, terminal,
                                                    stdin, exit_status, exited_at, oom_kills}
             status is one of created, running, paused, stopped
kill         {exec_id, signal (int, default 15), all (bool)}  → {}
delete       {exec_id}                           → {pid, exit_status, exited_at}
pause, resume {}                                 → {}
pids         {}                                  → {pids: [{pid, exec_id}]}
stats        {}                                  → {stats: <the runtime's `events --stats` data>}
update       {resources: <linux.resources>}      → {}
exec         {exec_id, process: <OCI process>, stdin (bool)}  → {}  (registered; `start` runs it)
resize       {exec_id, width, height}            → {}
close_stdin  {exec_id}                           → {}
wait         {exec_id}                           → {exit_status, exited_at, oom_kills}  (blocks
                                                    until exit; OOMs are counted before the exit)
attach       {exec_id, stdin (bool)}             → {}  then the connection is a stream: STDOUT,
             STDERR frames of output from now on (an exec's output from before the first attach
             is kept for it), STDIN/STDIN_CLOSE frames accepted if stdin was asked for, EXIT last
shutdown     {}                                  → {}  (refused while a task exists; the shim
                                                    then removes its files and exits)
subscribe    {}                                  → {oom_kills}  then the connection is a stream
             of EVENT frames until the shim exits (it takes no more requests). oom_kills counts
             the OOMs seen so far, so a client that subscribes again (a restarted daemon) can
             tell which it has not heard of; `state` and `wait` of the init carry it too.

OOM detection needs the container's memory cgroup (v1: an eventfd on memory.oom_control, each
notification one OOM; v2: memory.events watched for EPOLLPRI, an OOM each time `oom_kill`
grows). Without a memory controller there are simply no oom events. A new frame type or
method is a compatible change: clients skip frames they do not know.

exited_at is RFC 3339 with nanoseconds in UTC ("2006-01-02T15:04:05.999999999Z"); it is "" and
exit_status 0 while the process has not exited.
"""

import _json

VERSION = 1
HEADER_SIZE = 6
MAX_BODY = 4 << 20

REQUEST, RESPONSE, STDOUT, STDERR, STDIN, STDIN_CLOSE, EXIT, EVENT = 1, 2, 3, 4, 5, 6, 7, 8
FRAME_TYPES = (REQUEST, RESPONSE, STDOUT, STDERR, STDIN, STDIN_CLOSE, EXIT, EVENT)

NOT_FOUND, CONFLICT, INVALID, FAILED = "not_found", "conflict", "invalid", "failed"
ERROR_CODES = (NOT_FOUND, CONFLICT, INVALID, FAILED)

METHODS = ("connect", "create", "start", "state", "kill", "delete", "pause", "resume", "pids",
           "stats", "update", "exec", "resize", "close_stdin", "wait", "attach", "shutdown", "subscribe")


class ProtocolError(Exception):
    """A frame or message that breaks the protocol. `fatal`: the stream cannot be resynchronised
    and the connection must be closed after the error is reported."""

    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


class ShimError(Exception):
    """An error answer: one of ERROR_CODES and a one-line message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# -- JSON without the `json` package -----------------------------------------------------------

class _DecodeContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name):
        raise ValueError(f"JSON constant {name} is not allowed")


_scan = _json.make_scanner(_DecodeContext())
_encode = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",",
                             False, False, False)
_WHITESPACE = " \t\n\r"


def dumps(obj) -> str:
    """Compact JSON (ASCII), the same text as json.dumps(obj, separators=(",", ":"))."""
    return "".join(_encode(obj, 0))


def loads(text: str | bytes):
    """json.loads for trusted and untrusted text alike; raises ValueError on anything else."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"not UTF-8: {e.reason}") from None
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        obj, end = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at offset {e.value}") from None
    except ValueError as e:  # JSONDecodeError, or our parse_constant
        raise ValueError(str(e).splitlines()[0] if str(e) else "invalid JSON") from None
    except SystemError:
        # _json reports some errors through json.decoder.JSONDecodeError, which it only finds
        # if json.decoder is already imported; otherwise it fails this way.
        raise ValueError("invalid JSON") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data after JSON at offset {end}")
    return obj


# -- framing -------------------------------------------------------------------------------------

def encode_frame(kind: int, body: bytes = b"") -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"frame body of {len(body)} bytes exceeds {MAX_BODY}")
    return len(body).to_bytes(4, "big") + bytes((VERSION, kind)) + body


class FrameDecoder:
    """Feed it bytes as they arrive; it yields whole (type, body) frames."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER_SIZE:
            length = int.from_bytes(self._buf[:4], "big")
            version, kind = self._buf[4], self._buf[5]
            if version != VERSION:
                raise ProtocolError(f"unsupported protocol version {version} (this shim speaks {VERSION})",
                                    fatal=True)
            if length > MAX_BODY:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of {MAX_BODY}", fatal=True)
            if len(self._buf) < HEADER_SIZE + length:
                break
            frames.append((kind, bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])))
            del self._buf[:HEADER_SIZE + length]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)


# -- messages ------------------------------------------------------------------------------------

def encode_request(req_id: int, method: str, params: dict | None = None) -> bytes:
    return encode_frame(REQUEST, dumps({"id": req_id, "method": method, "params": params or {}}).encode())


def decode_request(body: bytes) -> tuple[int, str, dict]:
    """(id, method, params) of a REQUEST body. An id that can be read is kept in the error
    (ShimError carries it as .req_id) so the answer can still name it."""
    try:
        msg = loads(body)
    except ValueError as e:
        raise _with_id(ShimError(INVALID, f"malformed request: {e}"), None) from None
    if not isinstance(msg, dict):
        raise _with_id(ShimError(INVALID, "malformed request: not a JSON object"), None)
    req_id = msg.get("id")
    if not isinstance(req_id, int) or isinstance(req_id, bool):
        raise _with_id(ShimError(INVALID, "malformed request: id must be an integer"), None)
    method, params = msg.get("method"), msg.get("params", {})
    if not isinstance(method, str):
        raise _with_id(ShimError(INVALID, "malformed request: method must be a string"), req_id)
    if method not in METHODS:
        raise _with_id(ShimError(INVALID, f"unknown method {method!r}"), req_id)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _with_id(ShimError(INVALID, "malformed request: params must be an object"), req_id)
    return req_id, method, params


def _with_id(err: ShimError, req_id) -> ShimError:
    err.req_id = req_id
    return err


def encode_result(req_id: int, result: dict | None) -> bytes:
    return encode_frame(RESPONSE, dumps({"id": req_id, "result": result or {}}).encode())


def encode_error(req_id: int | None, code: str, message: str) -> bytes:
    message = " ".join(str(message).split())  # one line
    return encode_frame(RESPONSE, dumps({"id": req_id, "error": {"code": code, "message": message}}).encode())


def decode_response(body: bytes) -> tuple[int | None, dict | None, ShimError | None]:
    """(id, result, error) of a RESPONSE body; exactly one of result and error is set."""
    msg = loads(body)
    if not isinstance(msg, dict) or "id" not in msg:
        raise ProtocolError("malformed response")
    if "error" in msg:
        err = msg["error"] if isinstance(msg["error"], dict) else {}
        code = err.get("code") if err.get("code") in ERROR_CODES else FAILED
        return msg["id"], None, ShimError(code, str(err.get("message", "unknown error")))
    result = msg.get("result")
    return msg["id"], result if isinstance(result, dict) else {}, None


def encode_exit(exit_status: int, exited_at: str) -> bytes:
    return encode_frame(EXIT, dumps({"exit_status": exit_status, "exited_at": exited_at}).encode())


OOM = "oom"


def encode_event(event: str, **fields) -> bytes:
    return encode_frame(EVENT, dumps({"event": event, **fields}).encode())


def decode_event(body: bytes) -> dict:
    """The JSON object of an EVENT body, with a string "event"; ProtocolError otherwise."""
    try:
        msg = loads(body)
    except ValueError as e:
        raise ProtocolError(f"malformed event: {e}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
        raise ProtocolError("malformed event: not an object with an event name")
    return msg
