"""dockyard.network.portmap: port keys and bindings (pure), and host-port reservations (real
sockets bound on this host's loopback / wildcard addresses; no traffic is sent)."""

import errno
import fcntl
import os
import random
import socket
import subprocess
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import Conflict, InvalidArgument, SystemFailure, Unsupported
from dockyard.network import portmap
from dockyard.network.portmap import Binding, PortReservations, PortSpec

KINDS = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


# -- parse_port_key / requested_bindings -------------------------------------------------------

@pytest.mark.parametrize("key, spec", [
    ("80", PortSpec(80, "tcp")), ("80/tcp", PortSpec(80, "tcp")), ("53/udp", PortSpec(53, "udp")),
    ("65535/UDP", PortSpec(65535, "udp")), ("1/tcp", PortSpec(1, "tcp")),
])
def test_parse_port_key(key, spec):
    assert portmap.parse_port_key(key) == spec
    assert str(spec) in ("80/tcp", "53/udp", "65535/udp", "1/tcp")


@pytest.mark.parametrize("key, shown", [
    ("0/tcp", "0"), ("65536", "65536"), ("abc/tcp", "abc"), ("", ""), ("80-90/tcp", "80-90"),
    ("80/icmp", "80/icmp"), ("-1", "-1"), ("٨٠", "٨٠"),
])
def test_parse_port_key_invalid(key, shown):
    with pytest.raises(InvalidArgument) as e:
        portmap.parse_port_key(key)
    assert str(e.value) == f'invalid port specification: "{shown}"'


def test_parse_port_key_sctp_unsupported():
    with pytest.raises(Unsupported):
        portmap.parse_port_key("132/sctp")


def test_requested_bindings_explicit_random_and_ranges():
    got = portmap.requested_bindings(
        {"80/tcp": {}, "443/tcp": {}},
        {"80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": ""}],
         "53/udp": [{"HostPort": "0"}], "9000": [{"HostIp": "127.0.0.1", "HostPort": "9000-9010"}]},
        False)
    assert got == [
        Binding(53, "udp", "0.0.0.0", 0),
        Binding(80, "tcp", "0.0.0.0", 8080),
        Binding(80, "tcp", "127.0.0.1", 0),
        Binding(9000, "tcp", "127.0.0.1", 9000, 9010),
    ]
    # A one-port "range" is a plain port.
    assert portmap.requested_bindings(None, {"80": [{"HostPort": "81-81"}]}, False) == [
        Binding(80, "tcp", "0.0.0.0", 81)]


def test_requested_bindings_publish_all():
    exposed = {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}
    got = portmap.requested_bindings(exposed, {"80/tcp": [{"HostPort": "8080"}], "443/tcp": []}, True)
    assert got == [Binding(53, "udp", "0.0.0.0", 0), Binding(80, "tcp", "0.0.0.0", 8080),
                   Binding(443, "tcp", "0.0.0.0", 0)]
    # Without PublishAllPorts, exposed-only ports and empty binding lists publish nothing.
    assert portmap.requested_bindings(exposed, {"443/tcp": None}, False) == []
    # A network's host_binding_ipv4 stands for every empty HostIp.
    assert portmap.requested_bindings(["80"], None, True, default_host_ip="127.0.0.1") == [
        Binding(80, "tcp", "127.0.0.1", 0)]


@pytest.mark.parametrize("bindings, error, message", [
    ({"80/tcp": [{"HostPort": "abc"}]}, InvalidArgument, 'invalid port specification: "abc"'),
    ({"80/tcp": [{"HostPort": "70000"}]}, InvalidArgument, 'invalid port specification: "70000"'),
    ({"80/tcp": [{"HostPort": "9010-9000"}]}, InvalidArgument, 'invalid port specification: "9010-9000"'),
    ({"80/tcp": [{"HostPort": "8080/tcp"}]}, InvalidArgument, 'invalid port specification: "8080/tcp"'),
    ({"x/tcp": [{"HostPort": "80"}]}, InvalidArgument, 'invalid port specification: "x"'),
    ({"80/tcp": [{"HostIp": "1.2.3", "HostPort": "80"}]}, InvalidArgument, "invalid IP address: 1.2.3"),
    ({"80/tcp": [{"HostIp": "::1", "HostPort": "80"}]}, Unsupported, "IPv6 port bindings are not supported"),
    ({"80/tcp": [{"HostPort": 80}]}, InvalidArgument, None),
    ({"80/tcp": "8080"}, InvalidArgument, None),
    ({"80/sctp": [{"HostPort": "80"}]}, Unsupported, None),
])
def test_requested_bindings_errors(bindings, error, message):
    with pytest.raises(error) as e:
        portmap.requested_bindings(None, bindings, False)
    if message:
        assert str(e.value) == message


# -- views ------------------------------------------------------------------------------------

def test_ports_view_and_round_trip():
    bound = [Binding(80, "tcp", "0.0.0.0", 8080), Binding(80, "tcp", "127.0.0.1", 32768),
             Binding(53, "udp", "0.0.0.0", 5353)]
    view = portmap.ports_view({"80/tcp": {}, "443/tcp": {}, "bogus/x": {}}, bound)
    assert view == {
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "32768"}],
        "443/tcp": None,
    }
    assert sorted(portmap.bindings_from_view(view), key=str) == sorted(bound, key=str)
    assert portmap.bindings_from_view(None) == []


def test_summary_ports():
    bound = [Binding(80, "tcp", "0.0.0.0", 8080)]
    assert portmap.summary_ports(["80/tcp", "443"], bound) == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
    ]
    assert portmap.summary_ports([], []) == []


@given(st.lists(st.tuples(st.integers(1, 65535), st.sampled_from(["tcp", "udp"]),
                          st.sampled_from(["0.0.0.0", "127.0.0.1"]), st.integers(1, 65535)),
                max_size=6))
def test_view_round_trip_property(raw):
    bound = [Binding(*r) for r in raw]
    view = portmap.ports_view([], bound)
    assert sorted(portmap.bindings_from_view(view), key=repr) == sorted(bound, key=repr)


# -- reservations (real sockets) --------------------------------------------------------------

def other_bind(proto: str, ip: str, port: int, *, reuse: bool = True) -> int | None:
    """Another program binding with SO_REUSEADDR (and SO_REUSEPORT): the errno, or None."""
    s = socket.socket(socket.AF_INET, KINDS[proto])
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((ip, port))
        return None
    except OSError as e:
        return e.errno
    finally:
        s.close()


def free_port(proto: str) -> int:
    s = socket.socket(socket.AF_INET, KINDS[proto])
    s.bind(("0.0.0.0", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_block(n: int) -> int:
    """A start port of n consecutive ports free for tcp and udp, below the ephemeral range so
    the host's own connections do not wander in while the test runs."""
    for _ in range(50):
        start = random.randint(20000, 30000)
        if all(other_bind(p, "0.0.0.0", port, reuse=False) is None
               for port in range(start, start + n) for p in KINDS):
            return start
    pytest.skip("no free port block")


@pytest.fixture
def reservations():
    r = PortReservations()
    yield r
    r.close()


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_reserved_port_blocks_everyone_until_released(reservations, proto):
    port = free_port(proto)
    got = reservations.reserve(Binding(80, proto, "0.0.0.0", port))
    assert got == Binding(80, proto, "0.0.0.0", port)
    for ip in ("0.0.0.0", "127.0.0.1"):
        assert other_bind(proto, ip, port) == errno.EADDRINUSE
    with pytest.raises(Conflict) as e:
        reservations.reserve(Binding(81, proto, "127.0.0.1", port))
    assert str(e.value) == f"Bind for 127.0.0.1:{port} failed: port is already allocated"
    reservations.release(got)
    assert other_bind(proto, "0.0.0.0", port, reuse=False) is None
    reservations.release(got)  # twice is fine


def test_port_used_elsewhere_is_already_allocated(reservations):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        with pytest.raises(Conflict, match=f"^Bind for 0.0.0.0:{port} failed: port is already allocated$"):
            reservations.reserve(Binding(80, "tcp", "0.0.0.0", port))
        # The same port for UDP is another port.
        assert reservations.reserve(Binding(80, "udp", "0.0.0.0", port)).host_port == port
    finally:
        listener.close()


def test_specific_host_ip_not_on_this_host(reservations):
    with pytest.raises(SystemFailure, match="failed to bind host port 203.0.113.7:.*/tcp: cannot assign"):
        reservations.reserve(Binding(80, "tcp", "203.0.113.7", free_port("tcp")))


def test_random_ports_round_robin_in_range_skipping_held():
    start = free_block(4)
    r = PortReservations(port_range=(start, start + 3))
    blocker = socket.socket()
    blocker.bind(("0.0.0.0", start + 1))
    try:
        first = r.reserve(Binding(80, "tcp", "", 0))
        assert first == Binding(80, "tcp", "0.0.0.0", start)
        assert r.reserve(Binding(81, "tcp", "0.0.0.0", 0)).host_port == start + 2  # start+1 held
        assert r.reserve(Binding(82, "tcp", "0.0.0.0", 0)).host_port == start + 3
        r.release(first)
        # Round-robin wraps to the freed port, as Docker's allocator does.
        assert r.reserve(Binding(83, "tcp", "0.0.0.0", 0)).host_port == start
        with pytest.raises(Conflict, match="^all ports are allocated$"):
            r.reserve(Binding(84, "tcp", "0.0.0.0", 0))
    finally:
        blocker.close()
        r.close()
    assert other_bind("tcp", "0.0.0.0", start, reuse=False) is None  # close() let them all go


def test_explicit_host_port_range(reservations):
    start = free_block(3)
    asked = Binding(80, "udp", "127.0.0.1", start, start + 1)
    assert reservations.reserve(asked) == Binding(80, "udp", "127.0.0.1", start)
    assert reservations.reserve(asked) == Binding(80, "udp", "127.0.0.1", start + 1)
    with pytest.raises(Conflict) as e:
        reservations.reserve(asked)
    assert str(e.value) == f"Bind for 127.0.0.1:{start}-{start + 1} failed: port is already allocated"


def test_default_range_is_the_kernels():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    assert portmap.local_port_range() == (low, high)
    r = PortReservations()
    try:
        got = r.reserve(Binding(80, "tcp", "127.0.0.1", 0))
        assert low <= got.host_port <= high
    finally:
        r.close()


def test_concurrent_random_reservations_are_distinct():
    r = PortReservations()
    got, errors = [], []

    def grab():
        try:
            for _ in range(10):
                got.append(r.reserve(Binding(80, "tcp", "127.0.0.1", 0)).host_port)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r.close()
    assert not errors
    assert len(got) == len(set(got)) == 80


def test_reservation_sockets_are_close_on_exec(reservations):
    got = reservations.reserve(Binding(80, "tcp", "127.0.0.1", free_port("tcp")))
    sock = reservations._held[("tcp", "127.0.0.1", got.host_port)]
    assert fcntl.fcntl(sock.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    inode = os.readlink(f"/proc/self/fd/{sock.fileno()}")  # "socket:[N]"
    # A child that keeps every inheritable fd (close_fds=False) still does not get it.
    child = subprocess.run(["sh", "-c", "ls -l /proc/$$/fd"], close_fds=False,
                           capture_output=True, text=True, check=True)
    assert inode not in child.stdout


def test_unknown_protocol_refused(reservations):
    with pytest.raises(InvalidArgument):
        reservations.reserve(Binding(80, "sctp", "0.0.0.0", 80))
