"""The network API (engine/api/networks.py over engine/networks.py) as Docker users meet it:
through the real docker CLI and raw HTTP against a real dockyardd, with real bridges, veths,
network namespaces and nft rules.

- `docker network create/ls/inspect/connect/disconnect/rm/prune` and `run --network`, compared
  with dockerd's outputs and error texts;
- two containers on a user network: busybox httpd in one, the other fetching from it by container
  name and by `--network-alias`; a container on another network cannot reach it;
- `-p 127.0.0.1:<port>:80` and `-P` reachable from the host, `docker port`, the port released
  when the container stops;
- bad input (overlapping subnets, an address outside the subnet, a port in use, removing a
  network in use): a clear error and nothing half-made.

After every test (the autouse `no_leaks`): the test's containers and networks removed, no new
veth or bridge link, no netns file, no endpoint row, and the engine's nft table as it was before.

The first test drives the routes against a recording backend instead (no engine, no root): the
request decoding and status codes, on their own."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import sqlite3
import subprocess
import time
import types
import urllib.parse
import urllib.request
import uuid

import aiohttp
import pytest
from aiohttp import web

from dockyard.engine.api import build_app
from dockyard.engine.config import Config
from dockyard.engine.filters import Filters
from dockyard.errors import NotFound

from tests.engine.conftest import docker, inspect, wait_for

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="a real engine needs root")


# -- the routes alone, against a recording backend ----------------------------------------------

class RecordingNetworks:
    """What the routes call on `daemon.networks`, recorded; answers are canned."""

    def __init__(self):
        self.calls: list[tuple] = []

    def list(self, filters):
        self.calls.append(("list", dict(filters)))
        return [{"Name": "bridge"}]

    def inspect(self, ref, verbose=False, scope=""):
        self.calls.append(("inspect", ref, verbose, scope))
        if ref == "nosuch":
            raise NotFound(f"network {ref} not found")
        return {"Name": ref}

    async def create(self, body):
        self.calls.append(("create", body))
        return {"Id": "f" * 64, "Warning": ""}

    async def remove(self, ref):
        self.calls.append(("remove", ref))

    async def prune(self, filters):
        self.calls.append(("prune", dict(filters)))
        return {"NetworksDeleted": ["a"]}

    async def connect(self, ref, container, endpoint_config):
        self.calls.append(("connect", ref, container, endpoint_config))

    async def disconnect(self, ref, container, force=False):
        self.calls.append(("disconnect", ref, container, force))


async def _exchange(backend, requests):
    app = build_app(types.SimpleNamespace(config=Config(), networks=backend), routers=("networks",))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    out = []
    try:
        async with aiohttp.ClientSession() as session:
            for method, path, body in requests:
                kw = {"data": body} if isinstance(body, (str, bytes)) else {"json": body}
                async with session.request(method, f"http://127.0.0.1:{port}{path}", **kw) as r:
                    out.append((r.status, await r.read()))
    finally:
        await runner.cleanup()
    return out


def test_routes_decode_bodies_and_answer_as_dockerd():
    backend = RecordingNetworks()
    cli_connect = {"Container": "ctr", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.9.0.20"},
                                                          "Links": None, "Aliases": ["al1"], "GwPriority": 0}}
    answers = asyncio.run(_exchange(backend, [
        # the CLI's create body (null ConfigFrom, empty Scope); a field name in another case, an
        # unknown field: accepted as Go's decoder does
        ("POST", "/v1.45/networks/create",
         {"Name": "n1", "Driver": "bridge", "Scope": "", "ConfigFrom": None, "internal": True,
          "Labels": {"a": "b"}, "Options": {}, "Unknown": 1}),
        ("POST", "/networks/create", {"Name": "n2", "Labels": ["a=b"]}),          # wrong type
        ("POST", "/networks/create", {"Name": "n2", "Options": {"mtu": 1500}}),   # map[string]string
        ("GET", "/v1.45/networks?filters=" + '{"name":{"foo":true},"dangling":{"true":true}}', None),
        ("GET", "/networks/", None),
        ("GET", "/v1.45/networks/test%2001?verbose=true&scope=local", None),
        ("GET", "/v1.45/networks/nosuch", None),
        ("POST", "/v1.45/networks/n1/connect", cli_connect),
        ("POST", "/v1.45/networks/n1/disconnect", {"Container": "ctr", "Force": True}),
        ("POST", "/v1.45/networks/n1/disconnect", {"Container": "ctr", "Force": "yes"}),
        ("POST", "/v1.45/networks/n1/disconnect", ""),  # no body: moby's ReadJSON reads nothing
        ("DELETE", "/v1.45/networks/n1", None),
        ("POST", "/v1.45/networks/prune?filters=" + '{"label":{"x":true}}', None),
        ("GET", "/v1.99/networks", None),
    ]))
    statuses = [status for status, _ in answers]
    assert statuses == [201, 400, 400, 200, 200, 200, 404, 200, 200, 400, 200, 204, 200, 400], answers
    assert json.loads(answers[0][1]) == {"Id": "f" * 64, "Warning": ""}
    assert b"Labels" in answers[1][1] and b"Options" in answers[2][1]
    assert json.loads(answers[6][1]) == {"message": "network nosuch not found"}
    assert answers[7][1] == answers[8][1] == answers[11][1] == b""
    assert backend.calls == [
        ("create", {"Name": "n1", "Driver": "bridge", "Scope": "", "Internal": True,
                    "Labels": {"a": "b"}, "Options": {}}),
        ("list", {"name": ["foo"], "dangling": ["true"]}),
        ("list", {}),
        ("inspect", "test 01", True, "local"),
        ("inspect", "nosuch", False, ""),
        ("connect", "n1", "ctr", cli_connect["EndpointConfig"]),
        ("disconnect", "n1", "ctr", True),
        ("disconnect", "n1", "", False),
        ("remove", "n1"),
        ("prune", {"label": ["x"]}),
    ]


# -- helpers for the real engine -----------------------------------------------------------------

def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def fetch(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def net_inspect(engine, name: str) -> dict:
    r = docker(engine, "network", "inspect", name)
    [data] = json.loads(r.stdout)
    return data


def net_names(engine, *filters: str) -> list[str]:
    args = [a for f in filters for a in ("--filter", f)]
    return docker(engine, "network", "ls", *args, "--format", "{{.Name}}").stdout.split()


def subnet(engine, third_octet: int, length: int = 24) -> str:
    """A subnet inside this engine's own 10.<n>.0.0/16 (no other engine here uses it); 200+
    stays clear of what the default pool hands out in a test."""
    second = engine.bip.split(".")[1]
    return str(ipaddress.ip_network(f"10.{second}.{third_octet}.0/{length}", strict=False))


def start_httpd(engine, name: str, *args: str, text: str = "hello from httpd") -> None:
    """busybox httpd serving `text` on port 80, waited for from inside the container."""
    docker(engine, "run", "-d", "--name", name, *args, "busybox", "sh", "-c",
           f"mkdir -p /www && echo '{text}' > /www/index.html && exec httpd -f -p 80 -h /www")
    wait_for(lambda: engine.docker("exec", name, "wget", "-q", "-O", "-", "http://127.0.0.1/").returncode == 0,
             timeout=30, interval=0.2)


def fetch_in_container(seconds: int) -> tuple[str, ...]:
    """busybox wget of the URL that follows to stdout, given up after `seconds` (wget's own -T
    crashes busybox 1.35). Under a shell that stays PID 1: `timeout`'s SIGTERM would not end a
    PID 1 wget."""
    return ("sh", "-c", f'timeout {seconds} wget -q -O - "$1"; exit $?', "sh")


def links_json() -> list[dict]:
    out = subprocess.run(["ip", "-d", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def host_links(engine) -> set[str]:
    """Host links this engine could have made: user-network bridges (named "dy-…"; another
    engine's count too, so tests here run one engine at a time), veths on this engine's bridges,
    and veths on no bridge (the host side of a half-made pair)."""
    bridges = set(engine.bridges())
    out = set()
    for link in links_json():
        name, master = link["ifname"], link.get("master")
        kind = link.get("linkinfo", {}).get("info_kind")
        if name.startswith("dy-") or (kind == "veth" and (master is None or master in bridges)):
            out.add(name)
    return out


def new_links(engine, before: set[str]) -> set[str]:
    """Links made since `before` and still there a moment later (a pair being made or removed
    lives for an instant)."""
    deadline = time.monotonic() + 3
    while (new := host_links(engine) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    return new


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def container_ipv4(engine, name: str, ifname: str) -> str | None:
    r = docker(engine, "exec", name, "ip", "-o", "-4", "addr", "show", "dev", ifname, check=False)
    if r.returncode != 0:
        return None
    return r.stdout.split()[3].split("/")[0]


class KernelState:
    """What a test must give back: this engine's bridges (`bridges`: the default one and user
    networks' ones, from its network.db) and the links enslaved to them, veths enslaved to
    nothing (the host side of a half-made pair), netns files, endpoint rows, the engine's nft
    table."""

    def __init__(self, engine, bridges: set[str]):
        self.links = set()
        for link in links_json():
            name, master = link["ifname"], link.get("master")
            kind = link.get("linkinfo", {}).get("info_kind")
            if name in bridges or master in bridges or (kind == "veth" and not master):
                self.links.add(name)
        netns_dir = os.path.join(engine.exec_root, "netns")
        self.netns = sorted(os.listdir(netns_dir)) if os.path.isdir(netns_dir) else []
        self.endpoints = self._endpoints(engine)
        r = subprocess.run(["nft", "list", "table", "ip", engine.nft_table], capture_output=True, text=True)
        self.nft = r.stdout if r.returncode == 0 else ""

    @staticmethod
    def _endpoints(engine) -> int:
        db = os.path.join(engine.data_root, "network", "network.db")
        if not os.path.exists(db):
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
            try:
                return conn.execute("SELECT count(*) FROM endpoints").fetchone()[0]
            except sqlite3.Error:
                return 0

    def leaks_since(self, before: "KernelState") -> list[str]:
        out = [f"link {n}" for n in sorted(self.links - before.links)]
        out += [f"netns {n}" for n in sorted(set(self.netns) - set(before.netns))]
        if self.endpoints > before.endpoints:
            out.append(f"{self.endpoints - before.endpoints} endpoint rows")
        if self.nft != before.nft:
            out.append(f"nft table changed:\n{before.nft}\n---\n{self.nft}")
        return out


def filters_query(**filters: list[str]) -> str:
    return "filters=" + urllib.parse.quote(Filters(filters).to_json())


def remove_custom_networks(engine) -> None:
    status, _, body = engine.http("GET", "/v1.45/networks?" + filters_query(type=["custom"]))
    if status != 200:
        return
    for n in json.loads(body):
        engine.http("DELETE", f"/v1.45/networks/{n['Id']}")


def assert_no_leaks(engine, before: KernelState, bridges: set[str]) -> None:
    # Another engine's veth may exist for a moment: a leak is one still there after a while.
    deadline = time.monotonic() + 5
    while (leaks := KernelState(engine, bridges).leaks_since(before)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leaks, leaks


@pytest.fixture(autouse=True)
def no_leaks(request):
    if "engine" not in request.fixturenames:
        yield
        return
    engine = request.getfixturevalue("engine")
    engine.reset()
    remove_custom_networks(engine)
    bridges = set(engine.bridges())
    before = KernelState(engine, bridges)
    yield
    engine.reset()
    bridges |= set(engine.bridges())  # the test's networks, before they go from the db
    remove_custom_networks(engine)
    assert_no_leaks(engine, before, bridges)


# -- network create / ls / inspect / rm -----------------------------------------------------------

@needs_root
def test_predefined_networks(engine):
    names = net_names(engine)
    assert {"bridge", "host", "none"} <= set(names), names
    bridge = net_inspect(engine, "bridge")
    assert bridge["Driver"] == "bridge" and bridge["Scope"] == "local"
    assert bridge["Options"]["com.docker.network.bridge.name"] == engine.bridge
    gateway, length = engine.bip.split("/")
    assert bridge["IPAM"]["Config"] == [{"Subnet": subnet(engine, 0, int(length)), "Gateway": gateway}]
    assert net_inspect(engine, "host")["Driver"] == "host"
    assert net_inspect(engine, "none")["Driver"] == "null"
    assert set(net_names(engine, "type=builtin")) == {"bridge", "host", "none"}
    for name in ("bridge", "host", "none"):
        r = docker(engine, "network", "rm", name, check=False)
        assert r.returncode != 0 and f"{name} is a pre-defined network and cannot be removed" in r.stderr, r.stderr


@needs_root
def test_create_inspect_ls_rm(engine):
    name, bridge = uniq("h6net"), uniq("dyh6")
    net = subnet(engine, 201)
    gateway, ip_range = net.replace(".0/24", ".254"), net.replace(".0/24", ".128/25")
    r = docker(engine, "network", "create", "--subnet", net, "--gateway", gateway, "--ip-range", ip_range,
               "--internal", "--label", "team=h6", "--label", "tier", "-o", f"com.docker.network.bridge.name={bridge}",
               "-o", "com.docker.network.bridge.enable_icc=false", name)
    net_id = r.stdout.strip()
    assert len(net_id) == 64 and all(c in "0123456789abcdef" for c in net_id), r.stdout

    data = net_inspect(engine, name)
    assert data["Id"] == net_id and data["Name"] == name
    assert data["Driver"] == "bridge" and data["Scope"] == "local"
    assert data["Internal"] is True and data["EnableIPv6"] is False and data["Attachable"] is False
    assert data["IPAM"]["Driver"] == "default"
    assert data["IPAM"]["Config"] == [{"Subnet": net, "IPRange": ip_range, "Gateway": gateway}]
    assert data["Labels"] == {"team": "h6", "tier": ""}
    assert data["Options"]["com.docker.network.bridge.name"] == bridge
    assert data["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert data["Containers"] == {}
    assert link_exists(bridge), "the network's bridge is made at create"
    # by id, id prefix, name; verbose is accepted
    assert net_inspect(engine, net_id[:12])["Name"] == name
    assert engine.json("GET", f"/v1.45/networks/{net_id}?verbose=true", expect=200)["Name"] == name

    # ls and its filters (the CLI sends the map form)
    assert name in net_names(engine)
    assert net_names(engine, f"name={name}") == [name]
    assert net_names(engine, f"id={net_id[:10]}") == [name]
    assert name in net_names(engine, "driver=bridge", "label=team=h6", "type=custom", "scope=local")
    assert name not in net_names(engine, "label=team=other")
    assert name not in net_names(engine, "label=team!=h6")
    assert name not in net_names(engine, "type=builtin")
    assert name not in net_names(engine, "driver=host")
    assert name in net_names(engine, "dangling=true")
    assert name not in net_names(engine, "dangling=false")
    ids = docker(engine, "network", "ls", "-q", "--no-trunc").stdout.split()
    assert net_id in ids
    r = docker(engine, "network", "ls", "--filter", "colour=red", check=False)
    assert r.returncode != 0 and "invalid filter 'colour'" in r.stderr, r.stderr

    docker(engine, "network", "rm", name)
    assert name not in net_names(engine)
    assert not link_exists(bridge), "the network's bridge goes with it"
    r = docker(engine, "network", "inspect", name, check=False)
    assert r.returncode != 0 and f"network {name} not found" in r.stderr, r.stderr
    r = docker(engine, "network", "rm", name, check=False)
    assert r.returncode != 0 and f"network {name} not found" in r.stderr, r.stderr


@needs_root
def test_create_chooses_a_subnet_from_the_pool(engine):
    a, b = uniq("h6pa"), uniq("h6pb")
    docker(engine, "network", "create", a)
    docker(engine, "network", "create", b)
    [ca], [cb] = net_inspect(engine, a)["IPAM"]["Config"], net_inspect(engine, b)["IPAM"]["Config"]
    prefix = ".".join(engine.bip.split(".")[:2]) + "."
    for c in (ca, cb):
        assert c["Subnet"].startswith(prefix) and c["Subnet"].endswith("/24"), c
        assert c["Gateway"] == c["Subnet"].replace(".0/24", ".1"), c
    assert ca["Subnet"] != cb["Subnet"] and ca["Subnet"] != subnet(engine, 0)


@needs_root
def test_create_refuses_bad_input(engine):
    name = uniq("h6bad")
    docker(engine, "network", "create", "--subnet", subnet(engine, 202), name)
    links = host_links(engine)

    r = docker(engine, "network", "create", name, check=False)
    assert r.returncode != 0 and f"network with name {name} already exists" in r.stderr, r.stderr
    status, _, body = engine.http("POST", "/v1.45/networks/create", {"Name": name, "CheckDuplicate": False})
    assert status == 409 and f"network with name {name} already exists" in json.loads(body)["message"]

    other = uniq("h6ovl")
    for bad in (subnet(engine, 202, 25), subnet(engine, 202, 16)):
        r = docker(engine, "network", "create", "--subnet", bad, other, check=False)
        assert r.returncode != 0 and "Pool overlaps with other one on this address space" in r.stderr, r.stderr
    r = docker(engine, "network", "create", "--subnet", subnet(engine, 0), other, check=False)  # the default bridge's
    assert r.returncode != 0 and "overlaps" in r.stderr, r.stderr
    r = docker(engine, "network", "create", "--subnet", subnet(engine, 203), "--gateway", "10.0.0.1", other, check=False)
    assert r.returncode != 0 and "10.0.0.1" in r.stderr, r.stderr
    r = docker(engine, "network", "create", "--subnet", "10.300.0.0/24", other, check=False)
    assert r.returncode != 0 and "10.300.0.0/24" in r.stderr, r.stderr
    r = docker(engine, "network", "create", "-d", "nosuchdriver", other, check=False)
    assert r.returncode != 0 and "nosuchdriver" in r.stderr, r.stderr
    r = docker(engine, "network", "create", "-d", "host", other, check=False)
    assert r.returncode != 0, r.stderr
    status, _, body = engine.http("POST", "/v1.45/networks/create", {"Name": other, "Internal": "yes"})
    assert status == 400 and "Internal" in json.loads(body)["message"]
    for body in ({"Driver": "bridge"}, ""):  # no name
        status, _, answer = engine.http("POST", "/v1.45/networks/create", body)
        assert status == 400, answer

    assert other not in net_names(engine)
    assert new_links(engine, links) == set(), "a refused create leaves no bridge"


# -- connect / disconnect --------------------------------------------------------------------------

@needs_root
def test_connect_and_disconnect_a_running_container(engine):
    net, ctr = uniq("h6con"), uniq("h6c")
    sub = subnet(engine, 204)
    static = sub.replace(".0/24", ".20")
    net_id = docker(engine, "network", "create", "--subnet", sub, net).stdout.strip()
    docker(engine, "run", "-d", "--name", ctr, "busybox", "sleep", "300")
    cid = inspect(engine, ctr)["Id"]
    assert net_inspect(engine, net)["Containers"] == {}

    docker(engine, "network", "connect", "--alias", "al1", "--alias", "al2", "--ip", static, net, ctr)
    assert container_ipv4(engine, ctr, "eth1") == static
    containers = net_inspect(engine, net)["Containers"]
    assert list(containers) == [cid]
    ep = containers[cid]
    assert ep["Name"] == ctr and ep["IPv4Address"] == f"{static}/24" and len(ep["EndpointID"]) == 64
    assert ep["MacAddress"] and ep["IPv6Address"] == ""
    settings = inspect(engine, ctr)["NetworkSettings"]["Networks"][net]
    assert settings["NetworkID"] == net_id and settings["IPAddress"] == static and settings["IPPrefixLen"] == 24
    assert settings["Gateway"] == sub.replace(".0/24", ".1")
    assert settings["EndpointID"] == ep["EndpointID"] and settings["MacAddress"] == ep["MacAddress"]
    assert {"al1", "al2"} <= set(settings["Aliases"])
    assert settings["IPAMConfig"]["IPv4Address"] == static
    assert {ctr, "al1", "al2"} <= set(settings["DNSNames"])
    assert net in net_names(engine, "dangling=false")
    # /etc/hosts follows the live connect and disconnect (rewritten in place: the bind holds)
    hosts = docker(engine, "exec", ctr, "cat", "/etc/hosts").stdout
    assert f"{static}\t{cid[:12]}" in hosts, hosts

    r = docker(engine, "network", "connect", net, ctr, check=False)
    assert r.returncode != 0 and f"endpoint with name {ctr} already exists in network {net}" in r.stderr, r.stderr

    docker(engine, "network", "disconnect", net, ctr)
    assert container_ipv4(engine, ctr, "eth1") is None
    assert static not in docker(engine, "exec", ctr, "cat", "/etc/hosts").stdout
    assert net_inspect(engine, net)["Containers"] == {}
    assert net not in inspect(engine, ctr)["NetworkSettings"]["Networks"]
    r = docker(engine, "network", "disconnect", net, ctr, check=False)
    assert r.returncode != 0 and "is not connected to" in r.stderr, r.stderr

    # its address is free again
    docker(engine, "network", "connect", "--ip", static, net, ctr)
    assert container_ipv4(engine, ctr, "eth1") == static
    docker(engine, "network", "disconnect", "--force", net, ctr)
    assert container_ipv4(engine, ctr, "eth1") is None


@needs_root
def test_connect_refuses_bad_input(engine):
    net, plain, ctr = uniq("h6cb"), uniq("h6cp"), uniq("h6c")
    sub = subnet(engine, 205)
    docker(engine, "network", "create", "--subnet", sub, net)
    docker(engine, "network", "create", plain)
    docker(engine, "run", "-d", "--name", ctr, "busybox", "sleep", "300")
    before = host_links(engine)

    outside = subnet(engine, 206).replace(".0/24", ".7")
    r = docker(engine, "network", "connect", "--ip", outside, net, ctr, check=False)
    assert r.returncode != 0 and outside in r.stderr, r.stderr
    r = docker(engine, "network", "connect", "--ip", sub.replace(".0/24", ".1"), net, ctr, check=False)  # gateway
    assert r.returncode != 0, r.stderr
    r = docker(engine, "network", "connect", "--ip", sub.replace(".0/24", ".9"), plain, ctr, check=False)
    assert r.returncode != 0 and "user configured subnets" in r.stderr, r.stderr
    r = docker(engine, "network", "connect", "nosuchnet", ctr, check=False)
    assert r.returncode != 0 and "network nosuchnet not found" in r.stderr, r.stderr
    r = docker(engine, "network", "connect", net, "nosuchcontainer", check=False)
    assert r.returncode != 0 and "nosuchcontainer" in r.stderr, r.stderr
    status, _, body = engine.http("POST", f"/v1.45/networks/{net}/connect", {"Container": ctr, "EndpointConfig": []})
    assert status == 400, body

    assert net_inspect(engine, net)["Containers"] == {}
    assert container_ipv4(engine, ctr, "eth1") is None
    assert new_links(engine, before) == set()


@needs_root
def test_connect_a_stopped_container_takes_effect_at_start(engine):
    net, ctr = uniq("h6cs"), uniq("h6c")
    docker(engine, "network", "create", "--subnet", subnet(engine, 207), net)
    docker(engine, "create", "--name", ctr, "busybox", "sleep", "300")
    docker(engine, "network", "connect", "--alias", "later", net, ctr)
    assert net in inspect(engine, ctr)["NetworkSettings"]["Networks"]
    docker(engine, "start", ctr)
    ip = container_ipv4(engine, ctr, "eth1")
    assert ip and ip.startswith(subnet(engine, 207)[:-4]), ip
    assert net_inspect(engine, net)["Containers"][inspect(engine, ctr)["Id"]]["IPv4Address"] == f"{ip}/24"


# -- traffic: names, aliases, isolation ------------------------------------------------------------

@needs_root
def test_containers_on_a_network_reach_each_other_by_name_and_alias(engine):
    net, other, srv = uniq("h6web"), uniq("h6oth"), uniq("h6srv")
    docker(engine, "network", "create", net)
    docker(engine, "network", "create", other)
    start_httpd(engine, srv, "--network", net, "--network-alias", "web")
    srv_ip = inspect(engine, srv)["NetworkSettings"]["Networks"][net]["IPAddress"]

    for host in (srv, "web", srv_ip):
        r = docker(engine, "run", "--rm", "--network", net, "busybox", *fetch_in_container(5),
                   f"http://{host}/")
        assert r.stdout.strip() == "hello from httpd", (host, r.stdout, r.stderr)
    r = docker(engine, "run", "--rm", "--network", net, "busybox", "cat", "/etc/resolv.conf")
    assert "nameserver 127.0.0.11" in r.stdout, r.stdout

    # another network: neither the name nor the address
    for host in (srv, srv_ip):
        r = docker(engine, "run", "--rm", "--network", other, "busybox", *fetch_in_container(3),
                   f"http://{host}/", check=False, timeout=90)
        assert r.returncode != 0 and "hello" not in r.stdout, (host, r.stdout, r.stderr)
    # nor from the default bridge
    r = docker(engine, "run", "--rm", "busybox", *fetch_in_container(3), f"http://{srv_ip}/",
               check=False, timeout=90)
    assert r.returncode != 0 and "hello" not in r.stdout, (r.stdout, r.stderr)

    # connected to both, a container reaches it again
    client = uniq("h6cli")
    docker(engine, "run", "-d", "--name", client, "--network", other, "busybox", "sleep", "300")
    docker(engine, "network", "connect", net, client)
    r = docker(engine, "exec", client, *fetch_in_container(5), f"http://{srv}/")
    assert r.stdout.strip() == "hello from httpd", r.stderr


@needs_root
def test_run_network_on_the_default_bridge(engine):
    r = docker(engine, "run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
    address = r.stdout.split()[3]
    gateway, length = engine.bip.split("/")
    assert address.endswith(f"/{length}") and address.rsplit(".", 1)[0] == gateway.rsplit(".", 1)[0], r.stdout
    r = docker(engine, "run", "--rm", "busybox", "ip", "route")
    assert f"default via {gateway}" in r.stdout, r.stdout
    # The CLI refuses an alias on the default bridge itself; the daemon does too, at create.
    r = docker(engine, "run", "--rm", "--network-alias", "x", "busybox", "true", check=False)
    assert r.returncode != 0 and "network-scoped alias" in r.stderr, r.stderr
    status, _, body = engine.http("POST", "/v1.45/containers/create", {
        "Image": "busybox", "HostConfig": {"NetworkMode": "bridge"},
        "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["x"]}}}})
    assert status == 400 and "network-scoped alias is supported only for containers in user defined networks" \
        in json.loads(body)["message"], (status, body)


# -- published ports ------------------------------------------------------------------------------

@needs_root
def test_publish_on_loopback_and_release_at_stop(engine):
    srv, port = uniq("h6pub"), free_port()
    start_httpd(engine, srv, "-p", f"127.0.0.1:{port}:80")
    assert fetch(f"http://127.0.0.1:{port}/").strip() == "hello from httpd"
    assert docker(engine, "port", srv).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
    assert docker(engine, "port", srv, "80").stdout.strip() == f"127.0.0.1:{port}"
    assert inspect(engine, srv)["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                            "HostPort": str(port)}]}
    [summary] = engine.json("GET", "/v1.45/containers/json?" + filters_query(name=[srv]), expect=200)
    assert {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"} in summary["Ports"]
    assert not port_is_free(port), "the published port is held while the container runs"

    docker(engine, "stop", "-t", "1", srv)
    wait_for(lambda: port_is_free(port), timeout=10)  # released at stop
    assert inspect(engine, srv)["NetworkSettings"]["Ports"] == {}
    with pytest.raises(OSError):
        fetch(f"http://127.0.0.1:{port}/", timeout=2)
    # and taken again at the next start
    docker(engine, "start", srv)
    wait_for(lambda: _fetch_ok(f"http://127.0.0.1:{port}/"), timeout=30, interval=0.2)


def _fetch_ok(url: str) -> bool:
    try:
        return "hello" in fetch(url, timeout=2)
    except OSError:
        return False


@needs_root
def test_publish_all_gives_random_ports(engine):
    srv = uniq("h6all")
    start_httpd(engine, srv, "--expose", "80", "-P")
    ports = inspect(engine, srv)["NetworkSettings"]["Ports"]["80/tcp"]
    v4 = [p for p in ports if p["HostIp"] == "0.0.0.0"]
    assert v4 and int(v4[0]["HostPort"]) > 0, ports
    port = int(v4[0]["HostPort"])
    assert fetch(f"http://127.0.0.1:{port}/").strip() == "hello from httpd"
    assert f"80/tcp -> 0.0.0.0:{port}" in docker(engine, "port", srv).stdout
    docker(engine, "rm", "-f", srv)
    wait_for(lambda: port_is_free(port, "0.0.0.0"), timeout=10)


@needs_root
def test_a_port_in_use_fails_the_start_cleanly(engine):
    port = free_port()
    before = host_links(engine)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        r = docker(engine, "run", "-d", "--name", uniq("h6busy"), "-p", f"127.0.0.1:{port}:80", "busybox",
                   "sleep", "300", check=False)
        assert r.returncode != 0 and str(port) in r.stderr and "already" in r.stderr, r.stderr
    assert new_links(engine, before) == set(), "nothing half-made"

    # held by another container: dockerd's "port is already allocated"
    first = uniq("h6own")
    docker(engine, "run", "-d", "--name", first, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "300")
    second = uniq("h6two")
    r = docker(engine, "run", "-d", "--name", second, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "300",
               check=False)
    assert r.returncode != 0 and f"Bind for 127.0.0.1:{port} failed: port is already allocated" in r.stderr, r.stderr
    assert inspect(engine, second)["State"]["Running"] is False
    assert docker(engine, "port", first).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"


# -- rm of a network in use, prune -----------------------------------------------------------------

@needs_root
def test_rm_of_a_network_in_use_is_refused(engine):
    net, ctr = uniq("h6use"), uniq("h6c")
    net_id = docker(engine, "network", "create", net).stdout.strip()
    docker(engine, "run", "-d", "--name", ctr, "--network", net, "busybox", "sleep", "300")
    r = docker(engine, "network", "rm", net, check=False)
    assert r.returncode != 0 and "has active endpoints" in r.stderr and net in r.stderr, r.stderr
    status, _, body = engine.http("DELETE", f"/v1.45/networks/{net_id}")
    assert status in (403, 409) and "has active endpoints" in json.loads(body)["message"], (status, body)
    assert ctr in container_names_on(engine, net)
    docker(engine, "rm", "-f", ctr)
    docker(engine, "network", "rm", net)
    assert net not in net_names(engine)


def container_names_on(engine, net: str) -> list[str]:
    return [c["Name"] for c in net_inspect(engine, net)["Containers"].values()]


@needs_root
def test_prune_removes_unused_networks_only(engine):
    used, unused, labelled, ctr = uniq("h6u"), uniq("h6n"), uniq("h6l"), uniq("h6c")
    for n in (used, unused):
        docker(engine, "network", "create", n)
    docker(engine, "network", "create", "--label", "h6prune=yes", labelled)
    # in use = an endpoint: a running container (dockerd prunes a network only created containers name)
    docker(engine, "run", "-d", "--name", ctr, "--network", used, "busybox", "sleep", "300")

    r = docker(engine, "network", "prune", "-f", "--filter", "label=h6prune=yes")
    assert labelled in r.stdout and unused not in r.stdout, r.stdout
    status, _, body = engine.http("POST", "/v1.45/networks/prune")
    assert status == 200
    deleted = json.loads(body)["NetworksDeleted"]
    assert unused in deleted and used not in deleted, deleted
    names = net_names(engine)
    assert used in names and unused not in names and labelled not in names
    assert {"bridge", "host", "none"} <= set(names)
    status, _, body = engine.http("POST", "/v1.45/networks/prune?" + filters_query(colour=["red"]))
    assert status == 400, body


@needs_root
def test_network_events(engine):
    net, ctr = uniq("h6ev"), uniq("h6c")
    since = str(int(time.time()) - 1)
    docker(engine, "network", "create", net)
    docker(engine, "run", "-d", "--name", ctr, "busybox", "sleep", "300")
    docker(engine, "network", "connect", net, ctr)
    docker(engine, "network", "disconnect", net, ctr)
    docker(engine, "network", "rm", net)
    r = docker(engine, "events", "--since", since, "--until", str(int(time.time()) + 1),
               "--filter", "type=network", "--filter", f"network={net}", "--format", "{{.Action}}")
    assert r.stdout.split() == ["create", "connect", "disconnect", "destroy"], r.stdout
