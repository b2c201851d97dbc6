"""Reading a container's json-file log back, as `docker logs` shows it (GET /containers/{id}/logs,
and the `logs=1` replay of attach).

The log is written by the container's shim (shim/jsonlog.py, shim/logfile.py) at the engine's
<data-root>/containers/<id>/<id>-json.log, rotated to `.1`, `.2`, … (oldest has the highest
number). Reading follows moby's json-file reader (daemon/logger/loggerutils/logfile.go and
daemon/logs.go, reference engine-api.md §1.6):

* `tail` keeps the last N entries of all the files, counted before any other filter;
* then `since`/`until` (ns since the epoch; 0 = unset) drop entries outside the range: entries
  older than `since` are skipped, the first entry after `until` ends the read;
* then the stream filter (`stdout`/`stderr`);
* `timestamps` prefixes each entry with its time in RFC3339Nano with nine digits (Go's
  jsonmessage.RFC3339NanoFixed) and a space; `details` with the entry's attrs, if it has any;
* a partial entry (a piece of a long line, or the last bytes before the stream ended: no "\\n")
  is passed on as it is, so the pieces join up again at the client.

`follow` keeps reading as the shim appends, until `running()` says the container has stopped
(then what is left in the file is read and the iteration ends). Rotation is followed: the open
file is read to its end after it was renamed away, then the new file is opened; a file truncated
in place (max-file 1) is read again from its start.
"""

from __future__ import annotations

import asyncio
import calendar
import collections
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

STDOUT, STDERR = 1, 2  # stdcopy stream numbers (engine/streams.py)
_STREAMS = {"stdout": STDOUT, "stderr": STDERR}
READ_SIZE = 64 * 1024
FOLLOW_POLL = 0.05  # seconds between looks at a followed file that has not grown


@dataclass
class Entry:
    stream: int      # STDOUT or STDERR
    log: bytes       # the bytes as logged (with "\n" for a whole line)
    time: str        # as written: RFC 3339, UTC, trailing zeros of the fraction dropped
    attrs: dict = field(default_factory=dict)

    @property
    def time_ns(self) -> int:
        return parse_time(self.time)


def parse_time(text: str) -> int:
    """ns since the epoch of the RFC 3339 UTC time the shim writes ("…T…[.fraction]Z")."""
    seconds = calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]),
                               int(text[11:13]), int(text[14:16]), int(text[17:19]), 0, 0, 0))
    frac = text[19:].rstrip("Z")
    nanos = int((frac[1:] + "000000000")[:9]) if frac.startswith(".") else 0
    return seconds * 1_000_000_000 + nanos


def format_time(ns: int) -> str:
    """Go's RFC3339NanoFixed in UTC: always nine digits, as `docker logs -t` prints."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%09dZ" % nanos


def parse_entry(line: bytes) -> Entry | None:
    """One line of the file; None for a line that is not an entry (a torn write after a crash)."""
    try:
        obj = json.loads(line)
        stream = _STREAMS[obj["stream"]]
        text = obj["log"]
        when = obj["time"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(text, str) or not isinstance(when, str) or len(when) < 20:
        return None
    attrs = obj.get("attrs")
    # surrogateescape: bytes that were not UTF-8 came back as U+FFFD; the rest round-trips.
    return Entry(stream, text.encode("utf-8", "surrogatepass"), when,
                 attrs if isinstance(attrs, dict) else {})


def log_files(path: str) -> list[str]:
    """The log's files, oldest first: path.N … path.1, path (those that exist)."""
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return rotated[::-1] + ([path] if os.path.exists(path) else [])


def _parse_lines(lines) -> list[Entry]:
    entries = []
    for line in lines:
        if line.endswith(b"\n"):
            entry = parse_entry(line)
            if entry is not None:
                entries.append(entry)
    return entries


def _file_entries(path: str, skip_inode: tuple[int, int] | None = None) -> list[Entry]:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if skip_inode == (st.st_ino, st.st_dev):  # the current file, renamed meanwhile
                return []
            return _parse_lines(f)
    except FileNotFoundError:  # rotated away meanwhile
        return []


def _history(path: str, current, size: int, tail: int) -> list[Entry]:
    """The entries of the rotated files and of the open current file up to `size`, or the last
    `tail` of them (tail < 0: all)."""
    if tail == 0:
        return []
    inode = None
    newest: list[Entry] = []
    if current is not None:
        st = os.fstat(current.fileno())
        inode = (st.st_ino, st.st_dev)
        current.seek(0)
        newest = _parse_lines(current.read(size).splitlines(keepends=True))
    rotated = [f for f in log_files(path) if f != path]
    if tail < 0:
        return [e for f in rotated for e in _file_entries(f, inode)] + newest
    kept: collections.deque = collections.deque(newest[-tail:] if newest else ())
    for f in reversed(rotated):  # the newest first: stop once `tail` entries are in hand
        if len(kept) >= tail:
            break
        entries = _file_entries(f, inode)
        kept.extendleft(reversed(entries[-(tail - len(kept)):]))
    return list(kept)


def read_entries(path: str, tail: int = -1) -> list[Entry]:
    """Every entry of the log (all its files), or the last `tail` of them (tail < 0: all)."""
    try:
        current = open(path, "rb")
    except FileNotFoundError:
        return _history(path, None, 0, tail)
    with current:
        return _history(path, current, os.fstat(current.fileno()).st_size, tail)


@dataclass
class LogOptions:
    stdout: bool = True
    stderr: bool = True
    since: int = 0       # ns since the epoch; 0: from the start
    until: int = 0       # ns since the epoch; 0: no end
    tail: int = -1       # the last N entries; -1: all
    timestamps: bool = False
    details: bool = False
    follow: bool = False


class _Filter:
    """since/until/streams/timestamps/details applied to entries, in moby's order. `done` once an
    entry after `until` was seen."""

    def __init__(self, opts: LogOptions):
        self.opts = opts
        self.done = False

    def __call__(self, entry: Entry) -> tuple[int, bytes] | None:
        o = self.opts
        if o.since or o.until:
            t = entry.time_ns
            if o.since and t < o.since:
                return None
            if o.until and t > o.until:
                self.done = True
                return None
        if (entry.stream == STDOUT and not o.stdout) or (entry.stream == STDERR and not o.stderr):
            return None
        data = entry.log
        if o.details and entry.attrs:
            data = ",".join(f"{k}={v}" for k, v in sorted(entry.attrs.items())).encode() + b" " + data
        if o.timestamps:
            data = format_time(entry.time_ns).encode() + b" " + data
        return entry.stream, data


class _Follower:
    """The current file of a followed log, read from a given offset, across rotations."""

    def __init__(self, path: str, f, offset: int):
        self.path = path
        self.pending = b""  # a line whose end is not written yet
        self.f = f
        if f is not None:
            f.seek(offset)

    def read(self) -> list[bytes]:
        """Whole lines appended since the last read, across a rotation or truncation."""
        lines = self._read_open()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return lines  # rotated, the new file not there yet
        if self.f is None:
            self._reopen()
            return lines + self._read_open()
        own = os.fstat(self.f.fileno())
        if (st.st_ino, st.st_dev) != (own.st_ino, own.st_dev):
            lines += self._read_open()  # what was written before the rename
            self.pending = b""
            # Several rotations between two looks: the files rotated after ours, whole.
            for rotated in self._rotated_after((own.st_ino, own.st_dev)):
                try:
                    with open(rotated, "rb") as f:
                        lines += [line for line in f.read().split(b"\n") if line]
                except FileNotFoundError:
                    pass
            self._reopen()
            lines += self._read_open()
        elif st.st_size < self.f.tell():  # truncated in place (max-file 1)
            self.pending = b""
            self.f.seek(0)
            lines += self._read_open()
        return lines

    def _rotated_after(self, ours: tuple[int, int]) -> list[str]:
        """The rotated files newer than the one we had open, oldest first (all of them when
        ours has been rotated away entirely)."""
        rotated = [f for f in log_files(self.path) if f != self.path]
        for i, f in enumerate(rotated):
            try:
                st = os.stat(f)
            except FileNotFoundError:
                continue
            if (st.st_ino, st.st_dev) == ours:
                return rotated[i + 1:]
        return rotated

    def _reopen(self) -> None:
        if self.f is not None:
            self.f.close()
        try:
            self.f = open(self.path, "rb")
        except FileNotFoundError:
            self.f = None

    def _read_open(self) -> list[bytes]:
        if self.f is None:
            return []
        data = self.f.read()
        if not data:
            return []
        data = self.pending + data
        lines = data.split(b"\n")
        self.pending = lines.pop()
        return lines

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


async def read_logs(path: str, opts: LogOptions, running: Callable[[], bool] = lambda: False,
                    gone: Callable[[], bool] = lambda: False,
                    poll: float = FOLLOW_POLL) -> AsyncIterator[tuple[int, bytes]]:
    """(stream, bytes) of the log at `path` as `opts` ask. With `opts.follow` the iteration goes
    on while `running()` is true; `gone()` true (the client left) ends it at once."""
    # The current file is opened once: read up to its size now for the history, then followed
    # from there, so nothing is shown twice or missed while the history is read.
    try:
        current = open(path, "rb")
        size = os.fstat(current.fileno()).st_size
    except FileNotFoundError:
        current, size = None, 0
    follower = _Follower(path, current, size) if opts.follow else None
    keep = _Filter(opts)
    try:
        entries = await asyncio.get_running_loop().run_in_executor(None, _history, path, current, size, opts.tail)
        for entry in entries:
            out = keep(entry)
            if keep.done:
                return
            if out is not None:
                yield out
        if follower is None:
            return
        while not gone():
            stopped = not running()
            lines = follower.read()
            for line in lines:
                entry = parse_entry(line)
                if entry is None:
                    continue
                out = keep(entry)
                if keep.done:
                    return
                if out is not None:
                    yield out
            if stopped and not lines:
                return  # stopped before this read: the file is drained
            if not lines:
                await asyncio.sleep(poll)
    finally:
        if follower is not None:
            follower.close()
        elif current is not None:
            current.close()

