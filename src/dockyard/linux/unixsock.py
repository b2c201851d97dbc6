"""Unix socket paths of any length. `sockaddr_un.sun_path` holds 107 bytes and a NUL, and a
socket named by a 64-hex container id under a deep state directory is past that
(`/run/dockyard/containerd/shims/moby/<64 hex>/shim.sock` is 110). A longer path is reached
through its directory instead: `/proc/<pid>/fd/<an O_PATH fd of the directory>/<name>`, which the
kernel resolves to the same place, so where a socket lives never depends on how deep it is."""

import os

SUN_PATH_MAX = 107


class Address:
    """A short name for the socket at `path`, valid until `close()`. With `pid`, the name is
    `/proc/<pid>/fd/…`, for another process (a runtime given --console-socket) to use while
    this one keeps the directory open; by default `/proc/self/fd/…`, for this process."""

    def __init__(self, path: str, pid: int | None = None):
        self.path = path
        self._fd = -1
        if len(os.fsencode(path)) <= SUN_PATH_MAX:
            self.name = path
            return
        self._fd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.name = f"/proc/{pid or 'self'}/fd/{self._fd}/{os.path.basename(path)}"

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, *exc) -> None:
        self.close()


def bind(sock, path: str) -> None:  # any socket object: the shim uses _socket, lighter than socket
    with Address(path) as name:
        sock.bind(name)


def connect(sock, path: str) -> None:
    with Address(path) as name:
        sock.connect(name)

