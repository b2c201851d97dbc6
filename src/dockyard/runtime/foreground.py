"""What `run` and `exec` do while a foreground process runs: forward signals to it and,
when we hold its pty, copy between our stdio and the pty master."""

import os
import select
import signal
import termios
import tty

from . import terminal

FORWARDED = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGCONT, signal.SIGWINCH]


def forward_signals(pid: int, master_fd_ref: list) -> None:
    def handler(sig, _frame):
        if sig == signal.SIGWINCH and master_fd_ref:
            _copy_winsize(master_fd_ref[0])
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    for sig in FORWARDED:
        signal.signal(sig, handler)


def _copy_winsize(master: int) -> None:
    try:
        rows, cols = os.get_terminal_size(0)
    except OSError:
        return
    terminal.set_size(master, rows, cols)


def run(started) -> int:
    """Wait for the foreground process, proxying its pty if we hold it; return its exit code."""
    master_ref: list = []
    forward_signals(started.pid, master_ref)
    if started.console is not None:
        master = terminal.recv_master(started.console)
        started.console.close()
        master_ref.append(master)
        _copy_winsize(master)
        _proxy(master, started)
        os.close(master)
    return started.wait()


def _proxy(master: int, started) -> None:
    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    stdin_open = True
    try:
        while True:
            fds = [master] + ([0] if stdin_open else [])
            try:
                readable, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in readable:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""  # EIO: every slave is closed, the process is gone
                if not data:
                    return
                os.write(1, data)
            if 0 in readable:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    stdin_open = False
                    os.write(master, b"\x04")  # EOF for the program reading the tty
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
