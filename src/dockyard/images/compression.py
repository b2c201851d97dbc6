"""Layer compression: recognise, decompress and compress the blobs a layer travels as.

Layers are tar streams, plain or compressed with gzip or zstd (image-spec layer.md, media types
`…tar`, `…tar+gzip`, `…tar+zstd`). Media types are sometimes wrong (a gzip blob labelled
`…tar`), so, like containerd's `compression.DecompressStream`, we trust the magic bytes over
the media type.

gzip is decoded over zlib directly rather than `gzip.GzipFile` so that every failure — bad
header, bad CRC, truncated stream, trailing junk — becomes one clear `InvalidArgument`, so that
multi-member streams (RFC 1952 §2.2: what `pigz` and concatenation produce) read to the end, and
so that output per read is bounded (a small blob may inflate to gigabytes). zstd goes through
zstandard's stream reader across frames (RFC 8878 §3)."""

from __future__ import annotations

import gzip
import zlib
from typing import BinaryIO, Protocol

import zstandard

from dockyard.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


class Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


def detect(head: bytes) -> str:
    """"gzip", "zstd" or "none" from the first bytes of a blob."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def decompressed(fileobj: Readable, hint: str = "", *, what: str = "layer") -> Readable:
    """A reader of the uncompressed bytes of `fileobj`.

    `hint` is what the media type says ("gzip", "zstd", "none" or ""); the magic bytes win when
    they disagree. `what` names the blob in error messages ("layer sha256:…")."""
    head = _read_full(fileobj, 4)
    kind = detect(head)
    if kind == "gzip":
        return _GzipReader(fileobj, head, what)
    if kind == "zstd":
        return _ZstdReader(fileobj, head, what)
    return _Prefixed(fileobj, head)


def compressor(out: BinaryIO, kind: str, *, level: int | None = None) -> BinaryIO:
    """A writable that compresses into `out`; `close()` finishes the stream and leaves `out`
    open. gzip headers carry no name and mtime 0 so the same tar gives the same blob."""
    if kind == "gzip":
        return gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0,
                             compresslevel=6 if level is None else level)
    if kind == "zstd":
        cctx = zstandard.ZstdCompressor(level=3 if level is None else level)
        return cctx.stream_writer(out, closefd=False)
    if kind == "none":
        return _Uncompressed(out)
    raise InvalidArgument(f"unsupported compression {kind!r} (want gzip, zstd or none)")


def _read_full(fileobj: Readable, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = fileobj.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _read_all(reader: Readable) -> bytes:
    return b"".join(iter(lambda: reader.read(_CHUNK), b""))


class _Prefixed:
    """The stream with bytes already read from it put back in front."""

    def __init__(self, fileobj: Readable, head: bytes):
        self._fileobj = fileobj
        self._head = head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._fileobj.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._fileobj.read(n)


class _GzipReader:
    """Multi-member gzip over zlib; output per call is bounded (`max_length`) so a small blob
    that inflates to gigabytes never sits in memory at once."""

    def __init__(self, fileobj: Readable, head: bytes, what: str):
        self._fileobj = fileobj
        self._what = what
        self._pending = head          # compressed bytes not yet given to zlib
        self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._fed = False             # the current member has been given bytes
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return _read_all(self)
        while not self._eof:
            if not self._pending:
                self._pending = self._member.unconsumed_tail or self._fileobj.read(_CHUNK)
                if not self._pending:
                    if self._fed:
                        self._fail("unexpected end of data")
                    self._eof = True
                    break
            data, self._pending = self._pending, b""
            try:
                out = self._member.decompress(data, max(n, 1))
            except zlib.error as e:
                self._fail(str(e))
            self._fed = True
            self._pending = self._member.unconsumed_tail
            if self._member.eof:
                self._pending = self._next_member(self._member.unused_data)
            if out:
                return out
        return b""

    def _next_member(self, rest: bytes) -> bytes:
        self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._fed = False
        # gzip(1) accepts zero padding after the last member (tape blocking); skip it. Anything
        # else must be another member, which zlib checks when it is fed.
        stripped = rest.lstrip(b"\0")
        while not stripped and rest:
            rest = self._fileobj.read(_CHUNK)
            stripped = rest.lstrip(b"\0")
        return stripped

    def _fail(self, why: str):
        raise InvalidArgument(f"{self._what}: corrupt gzip data: {why}")


class _ZstdReader:
    """Multi-frame zstd through zstandard's stream reader (bounded output per read). It cannot
    tell a stream cut at a frame boundary from a complete one; a cut layer is still caught by
    the blob digest and, for a tar, by the missing end-of-archive blocks."""

    def __init__(self, fileobj: Readable, head: bytes, what: str):
        self._what = what
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            _Prefixed(fileobj, head), read_size=_CHUNK, read_across_frames=True, closefd=False)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return _read_all(self)
        try:
            return self._reader.read(n)
        except zstandard.ZstdError as e:
            raise InvalidArgument(f"{self._what}: corrupt zstd data: {e}") from None


class _Uncompressed:
    def __init__(self, out: BinaryIO):
        self._out = out

    def write(self, data) -> int:
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
