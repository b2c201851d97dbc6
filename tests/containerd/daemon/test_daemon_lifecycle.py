"""dockyard-containerd's life as a process: start, refuse to share, serve, stop."""

import os
import signal
import socket
import stat

import grpc
import pytest
from google.protobuf import empty_pb2

import dockyard
from dockyard.api.services.version.v1 import version_pb2_grpc


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "level=error" in line]


def test_version_answers(daemon):
    reply = version_pb2_grpc.VersionStub(daemon.channel).Version(empty_pb2.Empty(), timeout=10)
    assert reply.version == dockyard.__version__
    assert reply.revision  # a commit in a checkout, "unknown" otherwise


def test_socket_is_0600_and_directories_0711(daemon):
    assert stat.S_ISSOCK(os.lstat(daemon.address).st_mode)
    assert mode(daemon.address) == 0o600
    assert mode(daemon.root) == 0o711
    assert mode(daemon.state) == 0o711
    assert mode(os.path.dirname(daemon.address)) == 0o700


def test_sigterm_drains_exits_0_and_removes_the_socket(daemon):
    status, err = daemon.stop(signal.SIGTERM)
    assert status == 0, err
    assert not os.path.exists(daemon.address)
    assert "signal=SIGTERM" in err and not error_lines(err)


def test_sigint_stops_too(daemon):
    status, err = daemon.stop(signal.SIGINT)
    assert status == 0, err
    assert not os.path.exists(daemon.address)


def test_a_second_daemon_on_the_same_socket_refuses(daemons):
    first = daemons().start()
    second = daemons(address=first.address)
    status, err = second.run_to_exit()
    assert status == 1
    assert error_lines(err) == [line for line in err.splitlines() if "another daemon is serving on" in line]
    assert len(error_lines(err)) == 1 and first.address in err
    # The first one is untouched: its socket is still there and it still answers.
    version_pb2_grpc.VersionStub(first.channel).Version(empty_pb2.Empty(), timeout=10)
    assert first.stop()[0] == 0


def test_a_second_daemon_on_the_same_root_refuses(daemons):
    first = daemons().start()
    status, err = daemons(root=first.root).run_to_exit()
    assert status == 1
    assert len(error_lines(err)) == 1 and f"using root {first.root}" in err
    version_pb2_grpc.VersionStub(first.channel).Version(empty_pb2.Empty(), timeout=10)


def test_a_stale_socket_is_replaced(daemons):
    d = daemons()
    os.makedirs(os.path.dirname(d.address))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(d.address)  # bound, never listening, closed: what a SIGKILLed daemon leaves
    stale.close()
    d.start()
    version_pb2_grpc.VersionStub(d.channel).Version(empty_pb2.Empty(), timeout=10)
    assert mode(d.address) == 0o600


def test_a_file_in_the_way_of_the_socket_is_kept(daemons):
    d = daemons()
    os.makedirs(os.path.dirname(d.address))
    with open(d.address, "w") as f:
        f.write("not a socket")
    status, err = d.run_to_exit()
    assert status == 1 and "is not a socket" in err
    assert open(d.address).read() == "not a socket"


def test_an_unregistered_service_answers_unimplemented(daemon):
    with pytest.raises(grpc.RpcError) as e:
        daemon.channel.unary_unary("/dockyard.nothing.v1.Nothing/Nothing")(b"", timeout=10)
    assert e.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_config_file_sets_the_address(daemons, base):
    path = os.path.join(base, "config.toml")
    address = os.path.join(base, "from-config.sock")
    with open(path, "w") as f:
        f.write(f'shutdown_timeout = 2\n[grpc]\naddress = "{address}"\n[debug]\nlevel = "info"\n')
    d = daemons(extra=("--config", path))
    d.argv.remove("--address")
    d.argv.remove(d.address)
    d.address = address
    d.start()
    version_pb2_grpc.VersionStub(d.channel).Version(empty_pb2.Empty(), timeout=10)
    assert d.stop()[0] == 0


def test_an_unknown_config_key_is_one_clear_line(daemons, base):
    path = os.path.join(base, "config.toml")
    with open(path, "w") as f:
        f.write("[grpc]\naddres = '/run/x.sock'\n")
    status, err = daemons(extra=("--config", path)).run_to_exit()
    assert status == 1
    assert err.strip().splitlines() == [f"dockyard-containerd: config {path}: unknown key 'grpc.addres'"]
