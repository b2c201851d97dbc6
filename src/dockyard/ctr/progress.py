"""Showing an operation's progress events as Docker's CLI shows a pull or a push (docker/cli
`jsonmessage.DisplayJSONMessagesStream`). Pure: it writes text to the file it is given.

On a terminal every id (a layer's short digest, a tag) owns one line, drawn where it first
appeared and redrawn in place as its status changes: the cursor rests on the line below the
last id line, goes up to the id's line (ESC[nA), clears it (ESC[2K), writes it and comes back
down (ESC[nB). A byte count shows as a bar `[=====>     ]` when the terminal is wider than 110
columns, then `current/total` in go-units' decimal sizes. A message without an id is a plain
line, after which the next ids start a new block (as Docker forgets its lines then, so the
events of one operation never redraw those of an earlier one).

Anywhere else (a pipe, a file) there is no redrawing: each event is one line, except those
carrying a byte count, which Docker's CLI leaves out there (a log would fill with them)."""

from typing import Protocol, TextIO

from .output import human_size

BAR_WIDTH = 50
WIDE_TERMINAL = 110  # columns above which the bar is drawn (jsonmessage's width check)

_CLEAR_LINE = "\x1b[2K"


class Event(Protocol):
    """What is shown of an event: the Transfer service's Progress message has these fields."""
    id: str
    status: str
    current: int
    total: int


def progress_text(current: int, total: int, width: int) -> str:
    """The bar and the byte counts of one event, as jsonmessage.JSONProgress.String words them:
    "" without any count; the current size alone when the total is unknown (or exceeded)."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    bar = ""
    if width > WIDE_TERMINAL:
        done = min(int(current / total * 100) // 2, BAR_WIDTH)
        bar = f"[{'=' * done}>{' ' * (BAR_WIDTH - done)}] "
    if current > total:
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


class ProgressDisplay:
    """Feeds `update()` with events; `out` gets the text. `terminal` chooses the redrawing
    layout; `width` is the terminal's width in columns (it decides whether a bar fits)."""

    def __init__(self, out: TextIO, terminal: bool, width: int = 80):
        self.out, self.terminal, self.width = out, terminal, width
        self._lines: dict[str, int] = {}  # id → its line in the current block, from 0

    def update(self, event: Event) -> None:
        progress = progress_text(event.current, event.total, self.width)
        if not self.terminal:
            if not progress:  # counts are for a terminal only
                self.out.write(f"{event.id}: {event.status}\n" if event.id else f"{event.status}\n")
            return
        if not event.id:
            self._lines.clear()
            self.out.write(f"{event.status}\n")
            self.out.flush()
            return
        line = self._lines.get(event.id)
        if line is None:
            line = self._lines[event.id] = len(self._lines)
            self.out.write("\n")  # the new id's line; the cursor stays below it
        up = len(self._lines) - line
        text = f"{event.id}: {event.status}" + (f" {progress}" if progress else " ")
        self.out.write(f"\x1b[{up}A{_CLEAR_LINE}\r{text}\r\x1b[{up}B")
        self.out.flush()
