"""Docker's json-file log format, pure: how output bytes become log entries and how an entry is
written. Byte for byte what dockerd writes (moby `daemon/logger/copier.go`,
`daemon/logger/jsonfilelog/jsonlog/jsonlogbytes.go`, `time_marshalling.go`):

* a stream is cut into lines at "\\n"; a line is logged with its "\\n";
* when 16 KiB are buffered without a newline, they are logged as a partial entry (no "\\n"),
  and so is what is left when the stream ends; the entries of one long line share the time
  of its first piece;
* an entry is ``{"log":"...","stream":"stdout","time":"<RFC 3339, ns, UTC>"}`` and a newline,
  the string escaped as Go's encoding/json does with HTML escaping (``<``, ``>``, ``&`` as
  ``\\u003c``…, U+2028/2029 escaped, invalid UTF-8 as ``\\ufffd``), other non-ASCII kept as UTF-8;
* the time is Go's time.RFC3339Nano: trailing zeros of the fraction dropped.
"""

import time

BUF_SIZE = 16 * 1024  # moby's defaultBufSize for loggers without their own limit


def _escape_table() -> dict:
    table = {c: "\\u%04x" % c for c in range(0x20)}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord('"'): '\\"',
                  ord("\\"): "\\\\", ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                  0x2028: "\\u2028", 0x2029: "\\u2029"})
    # surrogateescape turns each byte of invalid UTF-8 into U+DC80..U+DCFF.
    table.update({c: "\\ufffd" for c in range(0xDC80, 0xDD00)})
    return table


_ESCAPES = _escape_table()


def rfc3339nano(ns: int) -> str:
    """Go's time.RFC3339Nano of a UTC time in ns since the epoch."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        text += "." + ("%09d" % frac).rstrip("0")
    return text + "Z"


def encode_entry(line: bytes, stream: str, ns: int) -> bytes:
    """One json-file entry (with its trailing newline) for `line` as it is to be logged."""
    text = line.decode("utf-8", "surrogateescape").translate(_ESCAPES)
    return ('{"log":"%s","stream":"%s","time":"%s"}\n' % (text, stream, rfc3339nano(ns))).encode(
        "utf-8", "surrogatepass")


class LineSplitter:
    """moby's copier for one stream: feed() output as it is read, get (line, time_ns) pairs back,
    each line to be logged as is (with "\\n" for a whole line, without for a partial one)."""

    def __init__(self, buf_size: int = BUF_SIZE):
        self.buf_size = buf_size
        self._buf = b""
        self._partial_ns = None  # time of the first piece of a line being logged in pieces

    def feed(self, data: bytes, ns: int) -> list[tuple[bytes, int]]:
        out = []
        buf = self._buf + data if self._buf else data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            # A newline within the buffer as moby fills it; beyond a full buffer, pieces first.
            while nl - start >= self.buf_size:
                out.append(self._piece(buf[start:start + self.buf_size], ns))
                start += self.buf_size
            out.append((buf[start:nl + 1], self._partial_ns or ns))
            self._partial_ns = None
            start = nl + 1
        while len(buf) - start >= self.buf_size:
            out.append(self._piece(buf[start:start + self.buf_size], ns))
            start += self.buf_size
        self._buf = buf[start:]
        return out

    def close(self, ns: int) -> list[tuple[bytes, int]]:
        """The end of the stream: what is left is logged as a partial entry."""
        if not self._buf:
            return []
        piece = self._piece(self._buf, ns)
        self._buf = b""
        self._partial_ns = None
        return [piece]

    def _piece(self, data: bytes, ns: int) -> tuple[bytes, int]:
        if self._partial_ns is None:
            self._partial_ns = ns
        return data, self._partial_ns

    @property
    def pending(self) -> int:
        return len(self._buf)
