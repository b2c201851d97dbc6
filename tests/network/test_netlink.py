"""network/netlink.py on the real kernel: test bridges, veth endpoints into test netns, traffic
between them; every link and netns made is removed and checked gone (see conftest)."""

import ipaddress
import re
import subprocess
import threading
import time

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound, SystemFailure
from dockyard.network import netlink
from tests.network.conftest import host_links, in_netns, needs_root

pytestmark = [pytest.mark.root, needs_root]


def link_info(name: str, path: str | None = None) -> str:
    argv = ["ip", "-d", "-o", "link", "show", "dev", name]
    if path is None:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return in_netns(path, *argv)


def addrs(name: str, path: str | None = None) -> list[str]:
    argv = ["ip", "-o", "-4", "addr", "show", "dev", name]
    out = in_netns(path, *argv) if path else subprocess.run(argv, check=True, capture_output=True,
                                                            text=True).stdout
    return re.findall(r"inet (\S+)", out)


def routes(path: str) -> str:
    return in_netns(path, "ip", "-4", "route")


def endpoint(bridge, path, host_ifname, n, ifname="eth0", gateway=True, **kw):
    name, _, prefix = bridge
    ip = f"{prefix}{n}"
    netlink.add_endpoint(bridge=name, netns_path=path, host_ifname=host_ifname, ifname=ifname,
                         address=f"{ip}/24", mac=netlink.random_mac(ip),
                         gateway=prefix + "1" if gateway else None, **kw)
    return ip


def test_ensure_bridge_creates_then_is_idempotent(link_name):
    name = link_name("br")
    try:
        assert netlink.ensure_bridge(name, "10.251.7.1/24", mtu=1400) is True
        info = link_info(name)
        assert "bridge" in info and "mtu 1400" in info and ",UP" in info
        assert addrs(name) == ["10.251.7.1/24"]
        assert "brd 10.251.7.255" in subprocess.run(["ip", "-o", "addr", "show", "dev", name],
                                                    capture_output=True, text=True).stdout
        assert netlink.ensure_bridge(name, "10.251.7.1/24") is False
        assert addrs(name) == ["10.251.7.1/24"]
        # A missing address is added beside the others; a downed bridge is brought up again.
        subprocess.run(["ip", "link", "set", name, "down"], check=True)
        assert netlink.ensure_bridge(name, "10.251.8.1/24") is False
        assert sorted(addrs(name)) == ["10.251.7.1/24", "10.251.8.1/24"]
        assert ",UP" in link_info(name)
        assert netlink.link_exists(name)
    finally:
        netlink.delete_link(name)
    assert not netlink.link_exists(name)


def test_ensure_bridge_refuses_a_link_that_is_not_a_bridge(link_name):
    name = link_name("dm")
    subprocess.run(["ip", "link", "add", name, "type", "veth"], check=True)
    try:
        with pytest.raises(Conflict, match=f"cannot use {name} as a bridge"):
            netlink.ensure_bridge(name, "10.251.9.1/24")
        assert addrs(name) == []
    finally:
        netlink.delete_link(name)


@pytest.mark.parametrize("address", ["10.251.0.1", "nonsense/24", "10.0.0.300/24", "fd00::1/64"])
def test_ensure_bridge_bad_address(link_name, address):
    name = link_name("br")
    with pytest.raises(InvalidArgument, match="invalid CIDR address"):
        netlink.ensure_bridge(name, address)
    assert not netlink.link_exists(name)


@pytest.mark.parametrize("name", ["", "a" * 16, "has space", "a/b", "x:1"])
def test_bad_link_names(name):
    with pytest.raises(InvalidArgument, match="invalid interface name"):
        netlink.ensure_bridge(name, "10.251.0.1/24")
    with pytest.raises(InvalidArgument):
        netlink.delete_link(name)


def test_concurrent_ensure_bridge(link_name):
    name = link_name("br")
    results, errors = [], []

    def ensure():
        try:
            results.append(netlink.ensure_bridge(name, "10.251.10.1/24"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=ensure) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert results.count(True) <= 1 and len(results) == 8
        assert addrs(name) == ["10.251.10.1/24"]
    finally:
        netlink.delete_link(name)


def test_add_endpoint_wires_the_netns(bridge, make_netns, link_name):
    name, _, prefix = bridge
    path = make_netns()
    host_if = link_name("v")
    ip = endpoint(bridge, path, host_if, 2, mtu=1450)
    host_side = link_info(host_if)
    assert f"master {name}" in host_side and ",UP" in host_side and "mtu 1450" in host_side
    inside = link_info("eth0", path)
    assert netlink.random_mac(ip) in inside and ",UP" in inside and "mtu 1450" in inside
    assert addrs("eth0", path) == [f"{ip}/24"]
    assert ",UP" in link_info("lo", path)
    assert f"default via {prefix}1 dev eth0" in routes(path)
    # The peer never appeared on the host under its in-netns name.
    assert "eth0" not in link_info(host_if)
    # Reachable from the host through the bridge.
    in_netns(path, "/bin/busybox", "ping", "-c", "1", "-W", "2", f"{prefix}1")
    netlink.remove_endpoint(host_if)
    assert not netlink.link_exists(host_if)
    assert "eth0" not in in_netns(path, "ip", "-o", "link")


def test_two_endpoints_talk_over_tcp(bridge, make_netns, link_name):
    a, b = make_netns("a"), make_netns("b")
    ip_a = endpoint(bridge, a, link_name("va"), 2)
    endpoint(bridge, b, link_name("vb"), 3)
    in_netns(b, "/bin/busybox", "ping", "-c", "1", "-W", "2", ip_a)
    server = subprocess.Popen(["nsenter", f"--net={a}", "/bin/busybox", "nc", "-l", "-p", "5001"],
                              stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 5
        while ":1389 " not in in_netns(a, "cat", "/proc/net/tcp") and time.monotonic() < deadline:
            time.sleep(0.02)  # 5001 = 0x1389, listening
        r = subprocess.run(["nsenter", f"--net={b}", "/bin/busybox", "nc", "-w", "2", ip_a, "5001"],
                           input="hello over the bridge\n", capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        out, _ = server.communicate(timeout=5)
        assert out == "hello over the bridge\n"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_second_network_keeps_the_first_default_route(bridge, make_netns, link_name):
    name2 = link_name("br")
    try:
        netlink.ensure_bridge(name2, "10.252.3.1/24")
        path = make_netns()
        endpoint(bridge, path, link_name("v"), 2)
        netlink.add_endpoint(bridge=name2, netns_path=path, host_ifname=link_name("v"), ifname="eth1",
                             address="10.252.3.2/24", mac=netlink.random_mac("10.252.3.2"),
                             gateway="10.252.3.1")
        r = routes(path)
        assert f"default via {bridge[2]}1 dev eth0" in r and "default via 10.252.3.1" not in r
        assert addrs("eth1", path) == ["10.252.3.2/24"]

    finally:
        netlink.delete_link(name2)


def test_endpoint_without_gateway_has_no_default_route(bridge, make_netns, link_name):
    path = make_netns()
    endpoint(bridge, path, link_name("v"), 2, gateway=False)
    assert "default" not in routes(path)


def test_add_endpoint_failure_after_the_pair_leaves_nothing(bridge, make_netns, link_name):
    path = make_netns()
    host_if = link_name("v")
    with pytest.raises(SystemFailure, match="default route"):
        netlink.add_endpoint(bridge=bridge[0], netns_path=path, host_ifname=host_if, ifname="eth0",
                             address=f"{bridge[2]}2/24", mac=netlink.random_mac(f"{bridge[2]}2"),
                             gateway="10.253.253.1")  # not on the endpoint's subnet: unreachable
    assert not netlink.link_exists(host_if)
    assert "eth0" not in in_netns(path, "ip", "-o", "link")


def test_add_endpoint_name_clash_keeps_the_other_link(bridge, make_netns, link_name):
    path = make_netns()
    other = link_name("x")
    subprocess.run(["ip", "link", "add", other, "type", "veth"], check=True)
    try:
        with pytest.raises(Conflict, match=f"create veth pair {other}"):
            endpoint(bridge, path, other, 2)
        assert netlink.link_exists(other)
        # A clash inside the netns (eth0 there already) is refused the same way.
        endpoint(bridge, path, link_name("v"), 2)
        second = link_name("v")
        with pytest.raises(Conflict):
            endpoint(bridge, path, second, 3)
        assert not netlink.link_exists(second)
    finally:
        netlink.delete_link(other)


def test_add_endpoint_bad_input(bridge, make_netns, link_name, tmp_path):
    path = make_netns()
    host_if = link_name("v")
    ok = dict(bridge=bridge[0], netns_path=path, host_ifname=host_if, ifname="eth0",
              address=f"{bridge[2]}2/24", mac="02:42:0a:00:00:02", gateway=None)
    with pytest.raises(NotFound, match="bridge dytnobridge not found"):
        netlink.add_endpoint(**{**ok, "bridge": "dytnobridge"})
    with pytest.raises(NotFound, match="network namespace"):
        netlink.add_endpoint(**{**ok, "netns_path": str(tmp_path / "missing")})
    with pytest.raises(InvalidArgument, match="MAC"):
        netlink.add_endpoint(**{**ok, "mac": "02:42:zz:00:00:02"})
    with pytest.raises(InvalidArgument, match="gateway"):
        netlink.add_endpoint(**{**ok, "gateway": "10.0.0"})
    with pytest.raises(InvalidArgument, match="CIDR"):
        netlink.add_endpoint(**{**ok, "address": "10.0.0.2"})
    assert not netlink.link_exists(host_if)


def test_concurrent_endpoints(bridge, make_netns, link_name):
    paths = [make_netns() for _ in range(8)]
    names = [link_name("v") for _ in range(8)]
    errors = []

    def add(i):
        try:
            endpoint(bridge, paths[i], names[i], 10 + i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert netlink.links_with_prefix("dytv", master=bridge[0]) == sorted(names)
    for i, path in enumerate(paths):
        assert addrs("eth0", path) == [f"{bridge[2]}{10 + i}/24"]
    in_netns(paths[0], "/bin/busybox", "ping", "-c", "1", "-W", "2", f"{bridge[2]}17")
    for n in names:
        netlink.remove_endpoint(n)
    assert netlink.links_with_prefix("dytv", master=bridge[0]) == []


def test_missing_links_are_fine(link_name):
    name = link_name("gone")
    netlink.delete_link(name)
    netlink.remove_endpoint(name)
    assert not netlink.link_exists(name)


def test_links_with_prefix(bridge, make_netns, link_name):
    path = make_netns()
    mine = link_name("v")
    endpoint(bridge, path, mine, 2)
    loose = link_name("v")
    subprocess.run(["ip", "link", "add", loose, "type", "veth"], check=True)
    try:
        assert {mine, loose} <= set(netlink.links_with_prefix("dytv"))
        assert netlink.links_with_prefix("dytv", master=bridge[0]) == [mine]
        assert netlink.links_with_prefix("dytv", master="dytnobridge") == []
        assert set(netlink.links_with_prefix("dytv")) <= host_links()
    finally:
        netlink.delete_link(loose)


def test_loopback_up(make_netns):
    path = make_netns()
    assert ",UP" not in link_info("lo", path)
    netlink.loopback_up(path)
    assert ",UP" in link_info("lo", path)
    in_netns(path, "/bin/busybox", "ping", "-c", "1", "-W", "2", "127.0.0.1")


def test_host_ipv4_networks(bridge):
    nets = netlink.host_ipv4_networks()
    assert ipaddress.IPv4Network(bridge[1], strict=False) in nets
    assert ipaddress.IPv4Network("127.0.0.0/8") in nets
    assert ipaddress.IPv4Network("0.0.0.0/0") not in nets
    assert all(isinstance(n, ipaddress.IPv4Network) for n in nets)


def test_set_route_localnet(bridge):
    netlink.set_route_localnet(bridge[0])
    with open(f"/proc/sys/net/ipv4/conf/{bridge[0]}/route_localnet") as f:
        assert f.read().strip() == "1"
    with pytest.raises(NotFound, match="bridge dytnobridge not found"):
        netlink.set_route_localnet("dytnobridge")


def test_write_sysctl_reports_a_change(tmp_path):
    # enable_ip_forward's logic, on a stand-in file (the host's setting stays the test runner's).
    path = str(tmp_path / "ip_forward")
    with open(path, "w") as f:
        f.write("0\n")
    assert netlink._write_sysctl(path, "1") is True
    assert open(path).read() == "1"
    assert netlink._write_sysctl(path, "1") is False


def test_random_mac_and_host_ifname():
    assert netlink.random_mac("172.17.0.2") == "02:42:ac:11:00:02"
    assert netlink.random_mac("10.0.255.1") == "02:42:0a:00:ff:01"
    with pytest.raises(InvalidArgument):
        netlink.random_mac("fd00::1")
    names = {netlink.host_ifname() for _ in range(50)}
    assert len(names) == 50
    assert all(re.fullmatch(r"veth[0-9a-f]{7}", n) for n in names)


def test_add_endpoint_is_fast(bridge, make_netns, link_name):
    """Container start latency is benchmarked: wiring an endpoint must stay in milliseconds."""
    paths = [make_netns() for _ in range(5)]
    took = []
    for i, path in enumerate(paths):
        start = time.perf_counter()
        endpoint(bridge, path, link_name("v"), 20 + i)
        took.append(time.perf_counter() - start)
    assert min(took) < 0.05, took
