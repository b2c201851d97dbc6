"""What every router uses to read requests and write responses the way dockerd does
(moby api/server/httputils): query values, JSON bodies, JSON replies, JSON streams, and the
connection hijack of attach and exec start.

The hijack (engine-api.md §1.4): the docker CLI and docker-py POST with `Connection: Upgrade`,
`Upgrade: tcp`, and require `HTTP/1.1 101 UPGRADED`; from then on the socket carries raw bytes
both ways — no chunked framing. The CLI half-closes its side (CloseWrite) when its stdin ends,
before the container has written anything for a non-interactive run: that EOF must end the
*input* only. aiohttp cannot do either on its own (a protocol's eof_received returning None makes
asyncio close the transport), so `hijack` takes the connection over: it writes the status line
and headers itself, moves the transport to an asyncio.StreamReaderProtocol (whose eof_received
keeps the transport open for writing) with `transport.set_protocol`, and hands bytes aiohttp had
already buffered behind the request to the new reader. aiohttp's own protocol still hears of the
connection's end (connection_lost is passed on), so its server forgets the connection and a
graceful shutdown still closes it. The middleware (middleware.py) answers aiohttp for a hijacked
request with a response that writes nothing, and closes the connection when the handler returns:
a hijacked connection lives exactly as long as its handler.

Clients must read the answer before they write (the docker CLI and docker-py do): bytes sent in
the same packet as the request are lost with aiohttp's C parser, which only keeps the tail of a
websocket upgrade (the pure-Python parser keeps it, and `hijack` passes it on).

Over TLS a half-close cannot be kept (a TLS close_notify ends the session in asyncio's ssl
transport); the output then ends with the input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import web

from dockyard.errors import InvalidArgument

log = logging.getLogger("dockyard.engine.api")

MAX_JSON_BODY = 16 << 20  # create bodies are small; 16 MiB leaves room and stops a flood
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"", "0", "false", "f", "no", "n", "off", "none"})

# request keys (aiohttp's request mapping) shared with the middleware
HIJACKED = web.RequestKey("hijacked", object)
STREAM = web.RequestKey("stream", object)


# -- query values ---------------------------------------------------------------------------------

def query_bool(request: web.BaseRequest, name: str, default: bool = False) -> bool:
    """A boolean query value as dockerd reads it: absent → default; "", 0, false, no, none →
    False; 1, true, yes → True (any case); anything else is a bad parameter."""
    if name not in request.query:
        return default
    value = request.query[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f"invalid value for {name}: {request.query[name]!r} is not a boolean")


def query_int(request: web.BaseRequest, name: str, default: int | None = None, *,
              minimum: int | None = None) -> int | None:
    """An integer query value; absent or empty → default; junk or below `minimum` → 400."""
    text = request.query.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text, 10)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {text!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise InvalidArgument(f"invalid value for {name}: {value} is less than {minimum}")
    return value


def query_filters(request: web.BaseRequest):
    """The `filters` query value (either JSON form), as engine.filters.Filters (a dict of
    name → list of values); empty when absent."""
    from dockyard.engine import filters
    return filters.parse(request.query.get("filters"))


# -- JSON bodies and replies ----------------------------------------------------------------------

def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


async def read_body(request: web.BaseRequest, *, max_bytes: int = MAX_JSON_BODY) -> bytes:
    """The whole request body (Content-Length or chunked), refused past `max_bytes` without
    reading it all."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise InvalidArgument(f"request body too large: {request.content_length} bytes, at most {max_bytes}")
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise InvalidArgument(f"request body too large: more than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.BaseRequest, *, required: bool = True,
                    max_bytes: int = MAX_JSON_BODY) -> dict:
    """The body as a JSON object. Empty → {} unless `required`; anything but one JSON object
    (bad syntax, an array, NaN, trailing garbage, bad UTF-8) → 400 "invalid JSON: …"."""
    raw = await read_body(request, max_bytes=max_bytes)
    if not raw.strip():
        if required:
            raise InvalidArgument("invalid JSON: the request body is empty")
        return {}
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"invalid JSON: not UTF-8 ({e.reason} at byte {e.start})") from None
    except (json.JSONDecodeError, ValueError, RecursionError) as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid JSON: want an object, not {_json_type(value)}")
    return value


def _json_type(value) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def dumps(obj) -> bytes:
    # Go's json.Encoder: compact, a newline after each value, non-ASCII kept as is.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def json_response(obj, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=dumps(obj), headers=headers,
                        content_type="application/json")


# -- JSON streams ---------------------------------------------------------------------------------

class JSONStream(web.StreamResponse):
    """A chunked application/json response, one JSON object per line, flushed as it is sent
    (pull and push progress, events, stats). Return it from the handler when done (returning
    anything else, or nothing, after `json_stream` is forgiven by the middleware)."""

    async def send(self, obj) -> None:
        """Raises ConnectionResetError once the client is gone."""
        await self.write(dumps(obj))

    async def close(self) -> None:
        await self.write_eof()


async def json_stream(request: web.BaseRequest, status: int = 200) -> JSONStream:
    """Starts the stream: the status and headers go out at once (the CLI waits for them)."""
    stream = JSONStream(status=status)
    stream.content_type = "application/json"
    stream.enable_chunked_encoding()
    request[STREAM] = stream
    from .middleware import add_headers
    add_headers(request, stream.headers)
    await stream.prepare(request)
    return stream


async def disconnected(request: web.BaseRequest, poll: float = 0.25) -> None:
    """Returns when the client's connection is gone: for handlers that wait on something else
    (events, wait, logs -f) to stop waiting for a client that left. aiohttp does not cancel
    handlers on disconnect (handler_cancellation is off: a create or start the client gave up on
    must still finish), so streams use this, or `until_disconnected`."""
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(poll)


async def until_disconnected(request: web.BaseRequest, coro):
    """Runs `coro`; cancels it and raises ConnectionResetError when the client leaves first."""
    work = asyncio.ensure_future(coro)
    watch = asyncio.ensure_future(disconnected(request))
    try:
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        raise ConnectionResetError("the client went away")
    finally:
        for t in (work, watch):
            if not t.done():
                t.cancel()


# -- the hijack -----------------------------------------------------------------------------------

class _HijackProtocol(asyncio.StreamReaderProtocol):
    """Reads into a StreamReader; EOF from the client ends the input only. The end of the
    connection is passed on to aiohttp's protocol so its server forgets the connection."""

    def __init__(self, reader: asyncio.StreamReader, previous: asyncio.BaseProtocol):
        super().__init__(reader)
        self._previous = previous
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc):
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)
        with contextlib.suppress(Exception):
            self._previous.connection_lost(exc)


class Hijacked:
    """The raw connection after the 101 (or 200): read stdin, write the stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: _HijackProtocol):
        self._reader = reader
        self._writer = writer
        self._protocol = protocol
        self.closed = False

    async def read(self, n: int = 65536) -> bytes:
        """Up to n bytes the client sent; b"" once it half-closed or left (output goes on)."""
        try:
            return await self._reader.read(n)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        """Raises ConnectionResetError once the client is gone."""
        if self.closed or self._writer.transport.is_closing():
            raise ConnectionResetError("the client went away")
        self._writer.write(data)
        await self._writer.drain()

    @property
    def client_gone(self) -> asyncio.Future:
        """Done when the connection ended (the client closed both ways, or reset it)."""
        return self._protocol.lost

    async def close(self) -> None:
        """Flushes what was written and closes the connection; idempotent."""
        if self.closed:
            return
        self.closed = True
        transport = self._writer.transport
        if not transport.is_closing():
            with contextlib.suppress(ConnectionError, OSError):
                await asyncio.wait_for(self._writer.drain(), 5)
            with contextlib.suppress(OSError, RuntimeError):
                if transport.can_write_eof():
                    transport.write_eof()
            transport.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._protocol.lost), 5)
        if not self._protocol.lost.done():
            transport.abort()


async def hijack(request: web.BaseRequest, *, content_type: str,
                 headers: dict[str, str] | None = None) -> Hijacked:
    """Answers the request with `101 UPGRADED` (when it asked for `Upgrade: tcp`) or `200 OK`
    and hands over the raw connection. Read the request body (if any) first; unread body bytes
    are discarded."""
    if request.get(HIJACKED) is not None:
        raise RuntimeError("request already hijacked")
    if request.body_exists and not request.content.at_eof():
        await read_body(request)  # an exec start's JSON the handler did not read
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp" and \
        "upgrade" in request.headers.get("Connection", "").lower()
    head = [("HTTP/1.1 101 UPGRADED" if upgrade else "HTTP/1.1 200 OK"), f"Content-Type: {content_type}"]
    if upgrade:
        head += ["Connection: Upgrade", "Upgrade: tcp"]
    from .middleware import add_headers
    extra: dict[str, str] = {}
    add_headers(request, extra)
    extra.update(headers or {})
    head += [f"{k}: {v}" for k, v in extra.items() if k.lower() not in ("content-type", "connection", "upgrade")]

    aio_protocol = request.protocol
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
    protocol = _HijackProtocol(reader, aio_protocol)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    # Bytes aiohttp read past the request (the client's first stdin, if it did not wait for our
    # answer): aiohttp keeps them as the tail of an upgraded request.
    tail = getattr(aio_protocol, "_message_tail", b"")
    if tail:
        reader.feed_data(tail)
        aio_protocol._message_tail = b""
    with contextlib.suppress(AttributeError, RuntimeError):
        if not transport.is_reading():
            transport.resume_reading()
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    hijacked = Hijacked(reader, writer, protocol)
    request[HIJACKED] = hijacked
    transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    return hijacked
