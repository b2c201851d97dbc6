"""What ctr's output looks like, so ours reads the same: Go's text/tabwriter layout, and sizes
and ages as docker/go-units and containerd's progress package word them. Pure."""

import datetime
import json
import sys

from dockyard.units import human_duration


class Table:
    """Go's tabwriter with flags 0, as ctr builds it: `tabwriter.NewWriter(out, minwidth,
    8, padding, ' ', 0)`. A row is the text ctr hands to Fprintf: cells ended by "\\t" are
    aligned, each as wide as the widest cell of its column plus `padding` (at least
    `minwidth`); the text after the last tab is written as it is. ctr ends some rows with a
    tab and some not; the trailing padding that makes is part of its output, and so of ours."""

    def __init__(self, minwidth: int, padding: int):
        self.minwidth, self.padding = minwidth, padding
        self.rows: list[str] = []

    def row(self, text: str) -> None:
        self.rows.append(text)

    def render(self) -> str:
        split = [row.split("\t") for row in self.rows]
        widths: list[int] = []
        for cells in split:
            for i, cell in enumerate(cells[:-1]):
                need = max(self.minwidth, len(cell) + self.padding)
                if i == len(widths):
                    widths.append(need)
                else:
                    widths[i] = max(widths[i], need)
        lines = []
        for cells in split:
            lines.append("".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1])
        return "".join(line + "\n" for line in lines)

    def write(self, out=None) -> None:
        (out or sys.stdout).write(self.render())


def _custom_size(fmt: str, size: float, base: float, units: list[str]) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return fmt % (size, units[i])


def human_size(size: int) -> str:
    """go-units HumanSize: 4 significant digits, decimal units ("1.234kB", "12B")."""
    return _custom_size("%.4g%s", float(size), 1000.0, ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"])


def progress_bytes(size: int) -> str:
    """containerd progress.Bytes: one decimal, binary units ("2.1 MiB")."""
    return _custom_size("%02.1f %s", float(size), 1024.0,
                        ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"])


def labels(pairs, empty: str = "-") -> str:
    """k=v,… sorted, as ctr joins labels; `empty` when there are none."""
    joined = ",".join(sorted(f"{k}={v}" for k, v in pairs.items()))
    return joined or empty


def rfc3339(ts) -> str:
    """A protobuf Timestamp as Go marshals a time.Time in JSON (RFC 3339, nanoseconds, UTC)."""
    if not ts.seconds and not ts.nanos:
        return "0001-01-01T00:00:00Z"
    base = datetime.datetime.fromtimestamp(ts.seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{ts.nanos:09d}".rstrip("0") if ts.nanos else ""
    return f"{base}{frac}Z"


def age(ts, now: float) -> str:
    return human_duration(now - (ts.seconds + ts.nanos / 1e9))


def print_json(value) -> None:
    """ctr's PrintAsJSON: json.MarshalIndent with four spaces."""
    print(json.dumps(value, indent=4))
