"""A task's stdio at our terminal: its output copied from its attach stream (attach.py) to our
stdout and stderr, our stdin to it; for `-t` our terminal in raw mode and its size following
ours (SIGWINCH → ResizePty); without `-t`, the signals we get passed on to the process, as
ctr does."""

import contextlib
import os
import signal
import sys
import termios
import threading
import tty

from dockyard.errors import DockyardError

# What ctr forwards to a foreground task without a terminal (ForwardAllSignals, less the
# ones that make no sense to forward).
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGCONT, signal.SIGTSTP, signal.SIGALRM)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_stdin(stream) -> None:
    try:
        while True:
            data = os.read(sys.stdin.fileno(), 65536)
            if not data:
                break
            stream.write(data)
        stream.close_stdin()
    except (OSError, DockyardError):  # the process exited and the stream closed: nothing to do
        pass


def pump(stream, stdin: bool) -> dict | None:
    """Copies the process's output until it exits (and our stdin to it when `stdin`); returns
    the exit reported last ({exit_status, exited_at}), or None if the stream ended
    without one (the daemon or the shim went away)."""
    if stdin:
        threading.Thread(target=_copy_stdin, args=(stream,), name="stdin", daemon=True).start()
    while True:
        try:
            frame = stream.read()
        except InterruptedError:
            continue
        if frame is None:
            return None
        kind, data = frame
        if kind == "exit":
            return data
        try:
            _write_all(1 if kind == "stdout" else 2, data)
        except BrokenPipeError:
            pass  # nobody reads our output any more; the process still runs to its end


@contextlib.contextmanager
def raw_terminal():
    """Our stdin's terminal in raw mode, restored on the way out; nothing if it is no terminal."""
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _terminal_size() -> tuple[int, int] | None:
    for fd in (sys.stdin.fileno(), sys.stdout.fileno()):
        try:
            size = os.get_terminal_size(fd)
            return size.columns, size.lines
        except OSError:
            continue
    return None


@contextlib.contextmanager
def follow_size(resize):
    """Calls resize(width, height) now and on every SIGWINCH, while inside."""
    def update(*_):
        size = _terminal_size()
        if size:
            with contextlib.suppress(DockyardError):
                resize(*size)
    update()
    previous = signal.signal(signal.SIGWINCH, update)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


@contextlib.contextmanager
def forward_signals(kill):
    """Calls kill(signum) for each signal of FORWARDED we receive, while inside."""
    def forward(signum, _frame):
        with contextlib.suppress(DockyardError):
            kill(signum)
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
