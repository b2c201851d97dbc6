"""dockyard-containerd started as a subprocess on its own socket, root and state, all under one
short temporary directory (a unix socket path must stay under 108 bytes)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from dockyard.containerd.daemon import client

DAEMON = os.path.join(os.path.dirname(sys.executable), "dockyard-containerd")


class Daemon:
    def __init__(self, base: str, name: str = "d", address: str | None = None, root: str | None = None,
                 extra: tuple[str, ...] = ()):
        self.address = address or os.path.join(base, name, "run", "containerd.sock")
        self.root = root or os.path.join(base, name, "root")
        self.state = os.path.join(base, name, "state")
        self.argv = [DAEMON, "--address", self.address, "--root", self.root, "--state", self.state,
                     "--log-level", "debug", *extra]
        self.proc: subprocess.Popen | None = None
        self.early_stderr = ""  # what start() read while waiting
        self.channel = None

    def spawn(self) -> "Daemon":
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        return self

    def start(self) -> "Daemon":
        """Spawns the daemon and waits for its `serving` line, then connects. (Connecting
        before the socket exists would cost gRPC's 1 s reconnect backoff.)"""
        self.spawn()
        for line in self.proc.stderr:
            self.early_stderr += line
            if 'msg="serving"' in line:
                self.channel = client.connect(self.address, timeout=15)
                return self
        self.stop(signal.SIGKILL)
        raise AssertionError(f"daemon did not come up: {self.early_stderr}")

    def run_to_exit(self, timeout: float = 15) -> tuple[int, str]:
        """Spawns the daemon expecting it to give up; returns (exit status, stderr)."""
        self.spawn()
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, str]:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"daemon ignored signal {sig}: {self.early_stderr + err}")
        return self.proc.returncode, self.early_stderr + err


@pytest.fixture
def base():
    path = tempfile.mkdtemp(prefix="dyd-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemons(base):
    """A factory of daemons under `base`; every one still running at the end is killed."""
    made: list[Daemon] = []

    def make(**kwargs) -> Daemon:
        d = Daemon(base, name=f"d{len(made)}", **kwargs)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.stop(signal.SIGKILL)


@pytest.fixture
def daemon(daemons) -> Daemon:
    return daemons().start()
