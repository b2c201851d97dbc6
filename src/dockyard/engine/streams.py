"""The byte streams of attach, logs and exec: Docker's stdcopy framing and detach keys.

Without a TTY, stdout and stderr share one connection as frames: an 8-byte header
(stream id, three zero bytes, big-endian uint32 payload size) then the payload (moby
`pkg/stdcopy`; engine API "Attach to a container" → "Stream format"). With a TTY the bytes go
unframed. From API 1.42 the response's Content-Type says which (`RAW_STREAM` or
`MULTIPLEXED_STREAM`); older clients always get the raw-stream type, framed or not.

Detach keys are the `detachKeys` parameter (default "ctrl-p,ctrl-q"): a comma-separated sequence
of single characters and `ctrl-<key>` names (moby/term ToBytes). dockerd watches the stdin of a
TTY session for that sequence, swallows it, and ends the attach while the container runs on.
"""

from __future__ import annotations

import struct

from dockyard.errors import InvalidArgument

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

MAX_FRAME = 32 * 1024  # payload bytes per frame: a large write becomes several frames
_HEADER = struct.Struct(">B3xI")
HEADER_SIZE = _HEADER.size


def frame(stream: int, data: bytes) -> bytes:
    """`data` as frames of `stream`; b"" for no data (an empty frame tells the client nothing)."""
    if stream not in (STDIN, STDOUT, STDERR, SYSTEMERR):
        raise ValueError(f"unknown stream {stream}")
    data = bytes(data)
    return b"".join(_HEADER.pack(stream, len(data[i:i + MAX_FRAME])) + data[i:i + MAX_FRAME]
                    for i in range(0, len(data), MAX_FRAME))


class Demuxer:
    """Splits a framed byte stream, fed in arbitrary pieces, into (stream, payload) pairs."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        out: list[tuple[int, bytes]] = []
        while len(self._buffer) >= HEADER_SIZE:
            stream, size = _HEADER.unpack_from(self._buffer)
            if stream not in (STDIN, STDOUT, STDERR, SYSTEMERR) or any(self._buffer[1:4]):
                raise InvalidArgument(f"unrecognized stream header: {bytes(self._buffer[:8]).hex()}")
            if len(self._buffer) < HEADER_SIZE + size:
                break
            out.append((stream, bytes(self._buffer[HEADER_SIZE:HEADER_SIZE + size])))
            del self._buffer[:HEADER_SIZE + size]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back; non-zero at the end means a cut stream."""
        return len(self._buffer)


def demux(data: bytes) -> list[tuple[int, bytes]]:
    """The frames of a complete framed byte string; InvalidArgument if it ends mid-frame."""
    demuxer = Demuxer()
    frames = demuxer.feed(data)
    if demuxer.pending:
        raise InvalidArgument(f"stream ends inside a frame ({demuxer.pending} bytes left)")
    return frames


def stream_content_type(tty: bool, api_version: str) -> str:
    """The Content-Type of attach/logs/exec output: multiplexed only for non-TTY output to
    clients speaking API 1.42 or later."""
    if not tty and _version(api_version) >= (1, 42):
        return MULTIPLEXED_STREAM
    return RAW_STREAM


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        raise InvalidArgument(f"invalid API version {text!r}") from None


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
# ctrl-@ is NUL, ctrl-a..ctrl-z are 1..26, then ctrl-[ \ ] ^ _ are 27..31.
_CTRL = {f"ctrl-{c}": i for i, c in enumerate("@abcdefghijklmnopqrstuvwxyz[\\]^_")}


def parse_detach_keys(spec: str) -> bytes:
    """The byte sequence of a detach-keys spec ("ctrl-p,ctrl-q", "ctrl-a,x", "DEL")."""
    keys = bytearray()
    for key in spec.split(","):
        if len(key) == 1 and key.isascii():
            keys.append(ord(key))
        elif key in _CTRL:
            keys.append(_CTRL[key])
        elif key == "DEL":
            keys.append(127)
        else:
            raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(keys)


class DetachKeys:
    """A stdin filter watching for the detach sequence. `feed` returns the bytes to forward to
    the container and whether the sequence is complete; bytes that might start the sequence
    are held back until the next byte decides (given back if it does not continue it). Once
    detached, the rest of the input is dropped. Docker only applies this to TTY sessions.

    Unlike moby's escape proxy, which matches only single-byte reads (keystrokes), the
    sequence is recognised anywhere in the input, including inside one larger write."""

    def __init__(self, spec: str | None = DEFAULT_DETACH_KEYS):
        self.spec = spec or DEFAULT_DETACH_KEYS  # "" means the daemon's default, as dockerd
        self.keys = parse_detach_keys(self.spec)
        self._matched = 0
        self.detached = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if self.detached:
            return b"", True
        forward = bytearray()
        for byte in data:
            if byte == self.keys[self._matched]:
                self._matched += 1
                if self._matched == len(self.keys):
                    self.detached = True
                    return bytes(forward), True
                continue
            # Not the sequence after all: the held bytes and this one go through, and matching
            # starts again after it (as moby's escape proxy does).
            forward += self.keys[:self._matched]
            forward.append(byte)
            self._matched = 0
        return bytes(forward), False

    def flush(self) -> bytes:
        """At the end of stdin: the held-back bytes of an unfinished sequence."""
        held = self.keys[:self._matched]
        self._matched = 0
        return b"" if self.detached else held
