"""network/netns.py on the real kernel: namespaces pinned on files, entered by threads only."""

import os
import threading

import pytest

from dockyard.errors import Conflict, NotFound, SystemFailure
from dockyard.network import netns
from tests.network.conftest import in_netns, mounts_under, needs_root

pytestmark = [pytest.mark.root, needs_root]


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def own_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_create_pins_a_new_empty_netns(make_netns, tmp_path):
    path = make_netns("a")
    assert netns.is_netns(path)
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    assert ns_inode(path) != own_netns()
    links = in_netns(path, "ip", "-o", "link").splitlines()
    assert len(links) == 1 and ": lo:" in links[0] and "DOWN" in links[0]
    assert mounts_under(str(tmp_path)) == [path]


def test_delete_unpins_and_removes(make_netns, tmp_path):
    path = make_netns()
    netns.delete(path)
    assert not os.path.exists(path)
    assert not netns.is_netns(path)
    assert mounts_under(str(tmp_path)) == []
    netns.delete(path)  # missing is fine


def test_create_on_an_existing_netns_is_a_conflict(make_netns):
    path = make_netns()
    inode = ns_inode(path)
    with pytest.raises(Conflict, match="already exists"):
        netns.create(path)
    assert ns_inode(path) == inode


def test_create_reuses_a_plain_file_left_by_a_crash(make_netns, tmp_path):
    os.makedirs(tmp_path / "netns")
    (tmp_path / "netns" / "left").write_text("")
    path = make_netns("left")
    assert netns.is_netns(path)


def test_delete_removes_a_plain_file(tmp_path):
    path = tmp_path / "plain"
    path.write_text("")
    netns.delete(str(path))
    assert not path.exists()


def test_create_failure_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemFailure, match="create network namespace"):
        netns.create(str(tmp_path / "file" / "ns"))
    # A directory is not a mount point for an nsfs file: the mount fails, the path stays as it was.
    (tmp_path / "dir").mkdir()
    with pytest.raises(SystemFailure):
        netns.create(str(tmp_path / "dir"))
    assert (tmp_path / "dir").is_dir()
    assert mounts_under(str(tmp_path)) == []


def test_is_netns_rejects_other_files(tmp_path):
    (tmp_path / "plain").write_text("")
    assert not netns.is_netns(str(tmp_path / "plain"))
    assert not netns.is_netns(str(tmp_path / "missing"))
    assert not netns.is_netns(str(tmp_path))
    assert not netns.is_netns("/proc/self/ns/mnt")  # an nsfs file, but not a network namespace
    assert netns.is_netns("/proc/self/ns/net")


def test_entered_moves_only_the_calling_thread_and_back(make_netns):
    path = make_netns()
    host = own_netns()
    seen = {}

    def worker():
        with netns.entered(path):
            seen["inside"] = own_netns()
            seen["main"] = os.stat(f"/proc/self/task/{threading.main_thread().native_id}/ns/net").st_ino
        seen["after"] = own_netns()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"inside": ns_inode(path), "main": host, "after": host}
    assert own_netns() == host


def test_entered_goes_back_when_the_block_raises(make_netns):
    path = make_netns()
    host = own_netns()
    with pytest.raises(ValueError):
        with netns.entered(path):
            raise ValueError("boom")
    assert own_netns() == host


def test_run_in_returns_and_raises(make_netns):
    path = make_netns()
    assert netns.run_in(path, own_netns) == ns_inode(path)
    assert netns.run_in(path, lambda a, b: a + b, 2, 3) == 5

    def fail():
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        netns.run_in(path, fail)
    assert own_netns() != ns_inode(path)


def test_run_in_bad_paths(tmp_path):
    with pytest.raises(NotFound, match="not found"):
        netns.run_in(str(tmp_path / "missing"), own_netns)
    (tmp_path / "plain").write_text("")
    with pytest.raises(SystemFailure, match="is not a network namespace"):
        netns.run_in(str(tmp_path / "plain"), own_netns)


def test_socket_made_inside_stays_inside(make_netns):
    """The property netlink.py relies on: a socket belongs to the netns it was made in."""
    import socket

    path = make_netns()
    in_netns(path, "ip", "link", "set", "lo", "up")
    sock = netns.run_in(path, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        # Listening in the netns, not on the host's loopback.
        assert f":{port:04X}" in in_netns(path, "cat", "/proc/net/tcp")
        with open("/proc/net/tcp") as f:
            assert f"0100007F:{port:04X} 00000000:0000 0A" not in f.read()


def test_concurrent_creates_and_deletes(make_netns):
    paths = [None] * 16
    errors = []

    def make(i):
        try:
            paths[i] = make_netns(f"c{i}")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({ns_inode(p) for p in paths}) == 16
