"""dockyard.linux.unixsock: a socket path longer than sun_path is bound and connected through its
directory; a short one is used as it is."""

import os
import socket

import pytest

from dockyard.linux import unixsock


@pytest.mark.parametrize("depth", [1, 12])
def test_bind_and_connect_at_any_depth(tmp_path, depth):
    directory = tmp_path.joinpath(*["d" * 9] * depth)
    directory.mkdir(parents=True)
    path = str(directory / "s.sock")
    assert (len(path) > unixsock.SUN_PATH_MAX) == (depth > 1)
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        unixsock.bind(server, path)
        server.listen()
        assert os.path.exists(path)  # the socket is where it was asked to be
        unixsock.connect(client, path)
        conn, _ = server.accept()
        with conn:
            client.sendall(b"hi")
            assert conn.recv(2) == b"hi"


def test_address_for_another_process_names_our_pid(tmp_path):
    directory = tmp_path.joinpath(*["d" * 9] * 12)
    directory.mkdir(parents=True)
    with unixsock.Address(str(directory / "c.sock"), pid=os.getpid()) as name:
        assert name.startswith(f"/proc/{os.getpid()}/fd/") and name.endswith("/c.sock")
    short = str(tmp_path / "c.sock")
    with unixsock.Address(short, pid=os.getpid()) as name:
        assert name == short
