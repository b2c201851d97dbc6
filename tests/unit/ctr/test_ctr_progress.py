"""The progress display of dockyard-ctr's pull/push/load (ctr/progress.py), as Docker's CLI
draws it: in place on a terminal, one line per event elsewhere."""

import io
from dataclasses import dataclass

import pytest

from dockyard.ctr.progress import ProgressDisplay, progress_text


@dataclass
class Ev:
    id: str
    status: str
    current: int = 0
    total: int = 0


def test_progress_text_words_counts_as_docker():
    assert progress_text(0, 0, 200) == ""
    assert progress_text(1234, 0, 80) == " 1.234kB"
    assert progress_text(500, 1000, 80) == "    500B/1kB"
    # a bar on a wide terminal only, 50 cells, half done
    assert progress_text(500, 1000, 120) == "[" + "=" * 25 + ">" + " " * 25 + "]     500B/1kB"
    assert progress_text(1000, 1000, 120).startswith("[" + "=" * 50 + ">]")
    # a current beyond the total drops the total, as jsonmessage does
    assert progress_text(2000, 1000, 80) == "     2kB"


def test_plain_output_is_one_line_per_event_without_counts():
    out = io.StringIO()
    d = ProgressDisplay(out, terminal=False)
    for e in [Ev("latest", "Pulling from library/busybox"), Ev("abc", "Pulling fs layer"),
              Ev("abc", "Downloading", 10, 100), Ev("abc", "Download complete"),
              Ev("abc", "Extracting", 50, 100), Ev("abc", "Pull complete"),
              Ev("", "Digest: sha256:00"), Ev("", "Status: Downloaded newer image for busybox:latest")]:
        d.update(e)
    assert out.getvalue() == (
        "latest: Pulling from library/busybox\nabc: Pulling fs layer\nabc: Download complete\n"
        "abc: Pull complete\nDigest: sha256:00\nStatus: Downloaded newer image for busybox:latest\n")


def test_terminal_redraws_each_id_on_its_own_line():
    out = io.StringIO()
    d = ProgressDisplay(out, terminal=True, width=80)
    d.update(Ev("a", "Pulling fs layer"))
    d.update(Ev("b", "Pulling fs layer"))
    d.update(Ev("a", "Downloading", 1, 2))
    d.update(Ev("", "Digest: x"))
    d.update(Ev("c", "Waiting"))
    assert out.getvalue() == (
        "\n\x1b[1A\x1b[2K\ra: Pulling fs layer \r\x1b[1B"
        "\n\x1b[1A\x1b[2K\rb: Pulling fs layer \r\x1b[1B"
        "\x1b[2A\x1b[2K\ra: Downloading       1B/2B\r\x1b[2B"
        "Digest: x\n"
        # a new block after a line without an id: c is line 0 of it
        "\n\x1b[1A\x1b[2K\rc: Waiting \r\x1b[1B")


@pytest.mark.parametrize("terminal", [True, False])
def test_rendered_screen_holds_the_latest_status_per_id(terminal):
    """Replays the escape codes on a tiny screen model: what a user sees at the end."""
    out = io.StringIO()
    d = ProgressDisplay(out, terminal=terminal, width=200)
    for i in range(3):
        d.update(Ev(f"l{i}", "Pulling fs layer"))
    for i in (2, 0, 1):
        d.update(Ev(f"l{i}", "Downloading", 5, 10))
        d.update(Ev(f"l{i}", "Pull complete"))
    d.update(Ev("", "Status: done"))
    screen = _replay(out.getvalue())
    if terminal:
        assert screen == ["l0: Pull complete", "l1: Pull complete", "l2: Pull complete", "Status: done"]
    else:
        assert screen[-4:] == ["l2: Pull complete", "l0: Pull complete", "l1: Pull complete", "Status: done"]


def _replay(text: str) -> list[str]:
    rows: list[str] = [""]
    row = col = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            j = text.index("[", i) + 1
            k = j
            while not text[k].isalpha():
                k += 1
            n, cmd = text[j:k], text[k]
            if cmd == "A":
                row -= int(n)
            elif cmd == "B":
                row += int(n)
            elif cmd == "K":
                rows[row] = ""
            while len(rows) <= row:
                rows.append("")
            i = k + 1
            continue
        if ch == "\n":
            row += 1
            col = 0
            while len(rows) <= row:
                rows.append("")
        elif ch == "\r":
            col = 0
        else:
            line = rows[row].ljust(col)
            rows[row] = line[:col] + ch + line[col + 1:]
            col += 1
        i += 1
    return [r.rstrip() for r in rows if r.strip()]
