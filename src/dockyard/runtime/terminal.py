"""The container's terminal: a pty allocated inside the container (from its own devpts), its
slave made the process's stdio and controlling tty and bind-mounted on /dev/console, and its
master handed to the caller over the console socket as runc does: one message whose payload
is the pty name and whose SCM_RIGHTS carries the master fd."""

import array
import fcntl
import os
import socket
import struct
import termios

from dockyard.linux import mount as mnt
from dockyard.linux import unixsock

# <asm-generic/ioctls.h>; Python's termios lacks them.
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


def connect_console_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        unixsock.connect(sock, path)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"connect to console socket {path}: {e.strerror}") from None
    return sock


def send_master(sock: socket.socket, master_fd: int, name: str) -> None:
    sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [master_fd]))])


def recv_master(sock: socket.socket) -> int:
    _, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_LEN(4))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            return array.array("i", data[:4])[0]
    raise OSError("console socket: no pty master received")


def set_size(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def setup(console_sock: socket.socket, size: dict | None, *, mount_console: bool) -> None:
    """In the container, after the root switch: make the pty and wire it up."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        # unlockpt/ptsname via the ioctls, so no libc pty helper looks at host paths.
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        n = struct.unpack("i", fcntl.ioctl(master, TIOCGPTN, struct.pack("i", 0)))[0]
        name = f"/dev/pts/{n}"
        slave = os.open(name, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        if size:
            set_size(slave, size.get("height", 0), size.get("width", 0))
        if mount_console:
            mnt.mount(name, "/dev/console", None, mnt.MS_BIND)
        send_master(console_sock, master, name)
    finally:
        os.close(master)
    console_sock.close()
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
