"""What every daemon of ours does to the filesystem at start-up, in one place: make its
directories, and make way for its unix socket without ever taking over a live one."""

import os
import socket
import stat

from dockyard.errors import Conflict, SystemFailure


def make_dir(path: str, mode: int) -> None:
    """mkdir -p; the mode is set on the directory only when we create it."""
    try:
        os.makedirs(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise SystemFailure(f"{path} exists and is not a directory") from None
        return
    os.chmod(path, mode)


def claim_socket(path: str) -> bool:
    """Makes way for our socket at `path`: nothing there, or a stale socket, which is removed
    (returns True then). A socket a process still answers on, or a file that is not a socket,
    is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise Conflict(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except ConnectionRefusedError:  # nobody listens: a daemon that died without cleaning up
        os.unlink(path)
        return True
    except FileNotFoundError:  # it went away meanwhile
        return False
    except (BlockingIOError, TimeoutError):  # a full backlog: someone is there, just busy
        pass
    except OSError as e:
        raise SystemFailure(f"cannot probe {path}: {e.strerror or e}") from None
    finally:
        probe.close()
    raise Conflict(f"another daemon is serving on {path}")
