"""nftables against the kernel (root): apply/exists/delete of a randomly named table, and the rules'
effect on real traffic between the host, a test bridge and test network namespaces wired with `ip`
(veth pairs; busybox httpd serving inside a namespace). Everything made here has a random name and
is removed at the end; traffic goes only to 127.0.0.1 and to the namespaces the test made."""

import inspect
import ipaddress
import os
import random
import secrets
import socket
import subprocess
import sys
import time

import pytest

from dockyard.errors import SystemFailure
from dockyard.network import nftables
from dockyard.network.nftables import BridgeNet, Dnat, Ruleset

BUSYBOX = "/bin/busybox"

UNAVAILABLE = "needs root" if os.geteuid() != 0 else nftables.available()

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"nftables unusable: {UNAVAILABLE}"),
    pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK), reason="needs busybox-static at /bin/busybox"),
]


def sh(*argv, check=True, timeout=20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


def write_sysctl(path: str, value: str, netns: str | None = None) -> None:
    if netns is None:
        with open(path, "w") as f:
            f.write(value)
    else:  # /proc/sys/net shows the namespace of the process that opens it
        sh("nsenter", f"--net={netns}", BUSYBOX, "sh", "-c", f"echo {value} > {path}")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get(host: str, port: int, timeout: float = 3) -> str | None:
    """The body of GET / from ip:port, or None when it cannot connect."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    return data.partition(b"\r\n\r\n")[2].decode()


def in_netns(ns: str, statement: str, timeout: float) -> str | None:
    """Run a Python statement (with http_get above at hand) inside `ns`; its output, or None if it
    failed. (Debian busybox 1.35's wget segfaults with -T, and its nc has no -z.)"""
    r = subprocess.run(["nsenter", f"--net={ns}", sys.executable, "-c",
                        f"import socket\n{inspect.getsource(http_get)}\n{statement}"],
                       capture_output=True, text=True, timeout=timeout + 20)
    return r.stdout if r.returncode == 0 and r.stdout != "None" else None


def table_names() -> set[str]:
    return {line.split()[-1] for line in sh("nft", "list", "tables", "ip").stdout.splitlines() if line}


class Lab:
    """Bridges, namespaces and veths made with `ip`, all removed by cleanup()."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.tag = secrets.token_hex(3)
        self.table = f"dyt_h3_{self.tag}"
        self.count = 0
        self.links: list[str] = []
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.used: list[ipaddress.IPv4Network] = []

    def name(self, kind: str) -> str:
        self.count += 1
        return f"h3{kind}{self.tag}{self.count}"  # at most 12 characters

    def subnet(self) -> ipaddress.IPv4Network:
        """A /24 that overlaps no host route and no other subnet of this lab."""
        taken = [ipaddress.IPv4Network(line.split()[0], strict=False)
                 for line in sh("ip", "-4", "route", "show", "table", "all").stdout.splitlines()
                 if line.split() and line.split()[0][0].isdigit()] + self.used
        while True:
            net = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
            if not any(net.overlaps(t) for t in taken):
                self.used.append(net)
                return net

    def bridge(self, route_localnet: bool = True) -> tuple[str, ipaddress.IPv4Network]:
        name, net = self.name("b"), self.subnet()
        sh("ip", "link", "add", name, "type", "bridge")
        self.links.append(name)
        sh("ip", "addr", "add", f"{net[1]}/{net.prefixlen}", "dev", name)
        sh("ip", "link", "set", name, "up")
        if route_localnet:  # what netlink.set_route_localnet does for the engine
            write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")
        return name, net

    def netns(self) -> str:
        path = str(self.tmp / f"ns{len(self.namespaces)}")
        open(path, "w").close()
        sh("unshare", f"--net={path}", "true")
        self.namespaces.append(path)
        return path

    def attach(self, bridge: str, net: ipaddress.IPv4Network, host: int, lo_up: bool = True) -> tuple[str, str]:
        """A new namespace on `bridge` with address net[host] as eth0, default route via net[1]."""
        ns, veth, peer = self.netns(), self.name("v"), self.name("p")
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        self.links.append(veth)
        sh("ip", "link", "set", veth, "master", bridge, "up")
        sh("ip", "link", "set", peer, "netns", ns)
        inside = ["nsenter", f"--net={ns}", "ip"]
        sh(*inside, "link", "set", peer, "name", "eth0")
        sh(*inside, "addr", "add", f"{net[host]}/{net.prefixlen}", "dev", "eth0")
        sh(*inside, "link", "set", "eth0", "up")
        if lo_up:
            sh(*inside, "link", "set", "lo", "up")
        sh(*inside, "route", "add", "default", "via", str(net[1]))
        return ns, str(net[host])

    def serve(self, ns: str, text: str) -> None:
        """busybox httpd on port 80 inside `ns`, answering `text`."""
        www = self.tmp / f"www{len(self.procs)}"
        www.mkdir()
        (www / "index.html").write_text(text)
        self.procs.append(subprocess.Popen(["nsenter", f"--net={ns}", BUSYBOX, "httpd", "-f", "-p", "80",
                                            "-h", str(www)], stdin=subprocess.DEVNULL))
        for _ in range(50):
            if self.fetch(ns, "127.0.0.1", timeout=1) == text:
                return
            time.sleep(0.1)
        raise AssertionError("httpd did not come up")

    def fetch(self, ns: str, ip: str, port: int = 80, timeout: float = 2) -> str | None:
        """GET / from inside `ns`, None when it cannot connect or times out."""
        return in_netns(ns, f"print(http_get({ip!r}, {port}, {timeout}), end='')", timeout)

    def cleanup(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        nftables.delete(self.table)
        for name in self.links:
            sh("ip", "link", "del", name, check=False)
        for path in self.namespaces:
            sh("umount", path, check=False)
            os.unlink(path)


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    links_before = set(os.listdir("/sys/class/net"))
    yield lab
    lab.cleanup()
    assert lab.table not in table_names()
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith("h3") and n not in links_before]
    assert not [p for p in lab.namespaces if os.path.exists(p)]


@pytest.fixture
def ip_forward():
    """Routing between bridges needs net.ipv4.ip_forward=1. Left at 1 afterwards on purpose: the
    engine sets it at start too (netlink.enable_ip_forward) and engine tests running beside this one
    rely on it; resetting it to 0 under them would break their containers' traffic."""
    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")


@pytest.fixture
def bridge_netfilter():
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
            on = f.read().strip() == "1"
    except OSError:
        on = False
    if not on:
        pytest.skip("br_netfilter with bridge-nf-call-iptables=1 is needed to filter traffic within a bridge")


def test_available():
    assert nftables.available() is None


def test_apply_replaces_the_table_and_delete_removes_it(lab):
    others = table_names()
    assert not nftables.exists(lab.table)
    first = Ruleset(lab.table, (BridgeNet("h3nob0", "10.250.0.0/24"),),
                    (Dnat("tcp", "127.0.0.1", 40001, "10.250.0.2", 80, "h3nob0"),))
    nftables.apply(first)
    assert nftables.exists(lab.table)
    listing = sh("nft", "list", "table", "ip", lab.table).stdout
    assert "dnat to 10.250.0.2:80" in listing and "ip daddr 127.0.0.0/8 jump published-loopback" in listing

    second = Ruleset(lab.table, (BridgeNet("h3nob1", "10.250.1.0/24", icc=False),),
                     (Dnat("udp", "0.0.0.0", 40002, "10.250.1.3", 53, "h3nob1"),))
    nftables.apply(second)
    listing = sh("nft", "list", "table", "ip", lab.table).stdout
    assert "10.250.0.2" not in listing and "h3nob0" not in listing  # replaced, nothing accumulates
    assert "udp dport 40002 counter packets 0 bytes 0 dnat to 10.250.1.3:53" in listing
    assert table_names() == others | {lab.table}

    nftables.delete(lab.table)
    assert not nftables.exists(lab.table)
    nftables.delete(lab.table)  # missing is fine
    assert table_names() == others


def test_failed_apply_keeps_the_previous_table(lab, monkeypatch):
    good = Ruleset(lab.table, (BridgeNet("h3nob0", "10.250.0.0/24"),),
                   (Dnat("tcp", "0.0.0.0", 40003, "10.250.0.2", 80, "h3nob0"),))
    nftables.apply(good)
    before = sh("nft", "list", "table", "ip", lab.table).stdout
    broken = nftables.render(good).replace("counter dnat to 10.250.0.2:80", "counter dnat to nowhere:80")
    monkeypatch.setattr(nftables, "render", lambda rs: broken)
    with pytest.raises(SystemFailure, match=f"applying nftables table {lab.table}: nft: .*Error"):
        nftables.apply(good)
    # the delete at the top of the script was rolled back with the rest of the transaction
    assert sh("nft", "list", "table", "ip", lab.table).stdout == before


def test_published_ports_reach_a_container_from_host_loopback(lab):
    bridge, net = lab.bridge()
    ns, ip = lab.attach(bridge, net, 2)
    lab.serve(ns, "hello from the container")
    on_lo, on_any = free_port("127.0.0.1"), free_port("0.0.0.0")
    assert http_get("127.0.0.1", on_lo) is None  # nothing there before the rules

    nftables.apply(Ruleset(lab.table, (BridgeNet(bridge, str(net)),),
                           (Dnat("tcp", "127.0.0.1", on_lo, ip, 80, bridge),
                            Dnat("tcp", "0.0.0.0", on_any, ip, 80, bridge))))
    assert http_get("127.0.0.1", on_lo) == "hello from the container"
    assert http_get("127.0.0.1", on_any) == "hello from the container"
    # the any-address port also answers on the host's other local addresses (here the gateway's)
    assert http_get(str(net[1]), on_any) == "hello from the container"
    # the loopback one does not
    assert http_get(str(net[1]), on_lo, timeout=1) is None

    nftables.delete(lab.table)
    assert http_get("127.0.0.1", on_lo, timeout=1) is None


def test_containers_cannot_reach_host_loopback_through_route_localnet(lab):
    """CVE-2020-8558's shape: route_localnet (needed on our bridges for the DNAT above) would let a
    container send to 127.0.0.1 via its gateway and reach services the host binds to loopback only."""
    bridge, net = lab.bridge(route_localnet=True)
    # The attacker: its own loopback down and 127.0.0.0/8 routed to the gateway instead
    ns, _ = lab.attach(bridge, net, 2, lo_up=False)
    sh("nsenter", f"--net={ns}", "ip", "route", "add", "127.0.0.0/8", "via", str(net[1]), "dev", "eth0")
    write_sysctl("/proc/sys/net/ipv4/conf/eth0/route_localnet", "1", netns=ns)
    victim = socket.socket()
    victim.bind(("127.0.0.1", 0))
    victim.listen(8)
    port = victim.getsockname()[1]
    try:
        # Without our rules the host's loopback-only service answers the container's SYN: the hole
        # exists, so the check below means something.
        assert connects(ns, "127.0.0.1", port)

        victim_published = free_port("127.0.0.1")
        lab.serve(lab.attach(bridge, net, 3)[0], "published on loopback")
        nftables.apply(Ruleset(lab.table, (BridgeNet(bridge, str(net)),),
                               (Dnat("tcp", "127.0.0.1", victim_published, str(net[3]), 80, bridge),)))
        assert not connects(ns, "127.0.0.1", port)
        assert not connects(ns, "127.0.0.1", victim_published)
        assert http_get("127.0.0.1", victim_published) == "published on loopback"  # the host still can
        assert packets(lab.table, "no host loopback from containers") > 0

        # Someone else's interface with route_localnet on (kube-proxy's CVE): our loopback port is
        # not reachable through it either.
        foreign, foreign_net = lab.bridge(route_localnet=True)
        outsider, _ = lab.attach(foreign, foreign_net, 2, lo_up=False)
        sh("nsenter", f"--net={outsider}", "ip", "route", "add", "127.0.0.0/8", "via", str(foreign_net[1]))
        write_sysctl("/proc/sys/net/ipv4/conf/eth0/route_localnet", "1", netns=outsider)
        assert not connects(outsider, "127.0.0.1", victim_published)
        assert packets(lab.table, "loopback port from remote") > 0
    finally:
        victim.close()


def connects(ns: str, ip: str, port: int) -> bool:
    """Whether a TCP connection from inside `ns` to ip:port completes within 2 s."""
    statement = f"socket.create_connection(({ip!r}, {port}), timeout=2).close(); print('ok', end='')"
    return in_netns(ns, statement, 2) == "ok"


def packets(table: str, comment: str) -> int:
    for line in sh("nft", "list", "table", "ip", table).stdout.splitlines():
        if f'comment "{comment}"' in line:
            return int(line.split("counter packets ")[1].split()[0])
    raise AssertionError(f"no rule with comment {comment!r}")


def test_icc_disabled_blocks_containers_on_one_bridge(lab, bridge_netfilter):
    bridge, net = lab.bridge()
    client, _ = lab.attach(bridge, net, 2)
    server, server_ip = lab.attach(bridge, net, 3)
    lab.serve(server, "neighbour")

    nftables.apply(Ruleset(lab.table, (BridgeNet(bridge, str(net), icc=True),)))
    assert lab.fetch(client, server_ip) == "neighbour"
    nftables.apply(Ruleset(lab.table, (BridgeNet(bridge, str(net), icc=False),)))
    assert lab.fetch(client, server_ip) is None
    assert packets(lab.table, "icc disabled") > 0


def test_bridges_are_isolated_but_published_ports_are_reachable(lab, ip_forward, bridge_netfilter):
    bridge_a, net_a = lab.bridge()
    bridge_b, net_b = lab.bridge()
    bridge_i, net_i = lab.bridge()
    ns_a, ip_a = lab.attach(bridge_a, net_a, 2)
    ns_b, ip_b = lab.attach(bridge_b, net_b, 2)
    ns_i, ip_i = lab.attach(bridge_i, net_i, 2)
    ns_i2, ip_i2 = lab.attach(bridge_i, net_i, 3)
    lab.serve(ns_a, "on a")
    lab.serve(ns_b, "on b")
    lab.serve(ns_i2, "on internal")
    # Without rules the host routes between the bridges: the isolation checks below mean something.
    assert lab.fetch(ns_a, ip_b) == "on b"
    assert lab.fetch(ns_i, ip_a) == "on a"

    published = free_port("0.0.0.0")
    nftables.apply(Ruleset(lab.table,
                           (BridgeNet(bridge_a, str(net_a)), BridgeNet(bridge_b, str(net_b)),
                            BridgeNet(bridge_i, str(net_i), internal=True)),
                           (Dnat("tcp", "0.0.0.0", published, ip_b, 80, bridge_b),)))
    assert lab.fetch(ns_a, ip_b) is None
    assert lab.fetch(ns_b, ip_a) is None
    # a's container reaches b's published port through the host's address (its gateway)
    assert lab.fetch(ns_a, str(net_a[1]), published) == "on b"
    assert packets(lab.table, "isolation") > 0
    # the internal network talks only to itself, published ports included
    assert lab.fetch(ns_i, ip_i2) == "on internal"
    assert lab.fetch(ns_i, ip_a) is None
    assert lab.fetch(ns_a, ip_i2) is None
    assert lab.fetch(ns_i, str(net_i[1]), published) is None
