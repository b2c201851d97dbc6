"""Messages between the runtime's parent process and the processes it forks (the namespace
stage and the container's init): length-prefixed JSON on a socketpair, fds by SCM_RIGHTS."""

import array
import json
import socket
import struct

from dockyard.errors import DockyardError, SystemFailure

_LEN = struct.Struct("!I")


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def send(sock: socket.socket, kind: str, fds: list[int] = (), **fields) -> None:
    body = json.dumps({"type": kind, **fields}).encode()
    data = _LEN.pack(len(body)) + body
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int, fds: list[int]) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk, ancdata, _, _ = sock.recvmsg(n - len(buf), socket.CMSG_LEN(16 * 4))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", data[: len(data) - len(data) % 4]))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def recv(sock: socket.socket) -> tuple[dict, list[int]]:
    """Next message and the fds that came with it; EOFError when the peer is gone."""
    fds: list[int] = []
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size, fds))
    msg = json.loads(_recv_exact(sock, n, fds))
    return msg, fds


def describe(e: BaseException) -> str:
    """One line for an error raised in a forked stage, to travel in an "error" message."""
    if isinstance(e, DockyardError):
        return str(e)
    if isinstance(e, OSError):
        return f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def expect(sock: socket.socket, kind: str) -> tuple[dict, list[int]]:
    """Wait for a message of `kind`; an "error" message from the child becomes SystemFailure."""
    try:
        msg, fds = recv(sock)
    except EOFError:
        raise SystemFailure("container init exited before it was set up") from None
    if msg["type"] == "error":
        raise SystemFailure(msg["message"])
    if msg["type"] != kind:
        raise SystemFailure(f"unexpected message from container init: {msg['type']} (wanted {kind})")
    return msg, fds
