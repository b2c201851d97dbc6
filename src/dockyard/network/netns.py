"""Named network namespaces: nsfs files bind-mounted on a path, as `ip netns add` does, in-process.

A container's netns is made (and wired: see netlink.py) before its process exists, so the
namespace must outlive any process: it is pinned by bind-mounting its nsfs file on `path`, and
the OCI spec points the runtime at that path. A network namespace is a per-thread attribute
(unshare/setns of CLONE_NEWNET act on the calling thread only), so everything that has to run
inside one does it in a short-lived thread, and the daemon's other threads never change netns.

Mount propagation: the nsfs mounts are made in the caller's directory with whatever propagation
its mount has; we add no mount point of our own, so nothing is left to unmount at shutdown. On
a systemd host `/` is shared: mount namespaces cloned later (services) are peers or slaves and
get our MNT_DETACH umount too. A runtime's copy of our mounts goes when it pivot_roots away from
the host's tree, so a deleted namespace is freed once its last process exits.
"""

import contextlib
import errno
import fcntl
import os
import threading

from dockyard.errors import Conflict, NotFound, SystemFailure
from dockyard.linux.mount import MNT_DETACH, MS_BIND, mount, umount
from dockyard.linux.namespaces import CLONE_NEWNET, setns, unshare

NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs fd: the namespace's CLONE_NEW* type (linux/nsfs.h)
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def open_fd(path: str) -> int:
    """An O_CLOEXEC fd on the netns file at `path` (the caller closes it), for setns() or
    IFLA_NET_NS_FD; NotFound if missing, SystemFailure if it is not a network namespace."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise NotFound(f"network namespace {path} not found") from None
    except OSError as e:
        raise SystemFailure(f"open network namespace {path}: {e.strerror}") from None
    try:
        if fcntl.ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET:
            raise OSError(errno.EINVAL, "")
    except OSError:
        os.close(fd)
        raise SystemFailure(f"{path} is not a network namespace") from None
    return fd


def is_netns(path: str) -> bool:
    """Whether `path` is a mounted nsfs file of a network namespace."""
    try:
        os.close(open_fd(path))
    except (NotFound, SystemFailure):
        return False
    return True


def _in_thread(fn, *args):
    """fn(*args) in a new thread, so that namespace changes die with it; its result or exception."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args)
        except BaseException as e:  # re-raised in the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=target, name="netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome.pop("error")
    return outcome["value"]


def create(path: str) -> None:
    """A new, empty network namespace pinned on `path` (parent directories made 0700).

    Paths must be unique per caller: two concurrent creates of one path are not serialized."""
    if is_netns(path):
        raise Conflict(f"network namespace {path} already exists")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        # The mount point; a plain file left by a crash between this and the mount is reused.
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o444))
    except OSError as e:
        raise SystemFailure(f"create network namespace {path}: {e.strerror}") from None

    def unshare_and_pin():
        unshare(CLONE_NEWNET)
        mount("/proc/thread-self/ns/net", path, None, MS_BIND)

    try:
        _in_thread(unshare_and_pin)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise SystemFailure(f"create network namespace {path}: {e.strerror}") from None


def delete(path: str) -> None:
    """Unpin the namespace at `path` and remove the file; a missing one is fine.

    The namespace itself goes away when no process and no other mount holds it."""
    for _ in range(8):  # the same path may carry stacked mounts (a crashed create's retry)
        try:
            umount(path, MNT_DETACH)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
                break
            raise SystemFailure(f"delete network namespace {path}: {e.strerror}") from None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise SystemFailure(f"delete network namespace {path}: {e.strerror}") from None


@contextlib.contextmanager
def entered(path: str):
    """The calling thread is inside the network namespace at `path` for the with-block.

    Only for threads of our own (see run_in): a thread that cannot get back is unusable."""
    target = open_fd(path)
    try:
        own = os.open("/proc/thread-self/ns/net", _OPEN_FLAGS)
    except OSError as e:
        os.close(target)
        raise SystemFailure(f"open own network namespace: {e.strerror}") from None
    try:
        try:
            setns(target, CLONE_NEWNET)
        except OSError as e:
            raise SystemFailure(f"enter network namespace {path}: {e.strerror}") from None
        finally:
            os.close(target)
        try:
            yield
        finally:
            try:
                setns(own, CLONE_NEWNET)
            except OSError as e:
                raise SystemFailure(f"leave network namespace {path}: {e.strerror}") from None
    finally:
        os.close(own)


def run_in(path: str, fn, *args):
    """fn(*args) in a fresh thread inside the network namespace at `path`; its result or exception.

    Sockets made by fn stay in that namespace whichever thread uses them afterwards."""

    def inside():
        with entered(path):
            return fn(*args)

    return _in_thread(inside)
