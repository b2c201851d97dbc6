"""engine/networks.py against the real kernel, without dockyardd: the component around a
minimal daemon (config, a container store, events) with container records marked running by
hand, so attach/detach build real sandboxes (netns files, veths on our bridges, nft table, DNS
servers) that the tests probe with nsenter + busybox. Every test uses its own bridge names,
subnets and nft table, and checks that nothing it made is left."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import types
import uuid

import pytest

from dockyard.engine import timeutil
from dockyard.engine.config import AddressPool, Config
from dockyard.engine.events import Events
from dockyard.engine.filters import Filters
from dockyard.engine.networks import Networks, table_name
from dockyard.engine.store import Container, Store
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.network import netlink, netns, nftables

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="networking needs root")]

BUSYBOX = "/bin/busybox"


class Env:
    """One daemon-like object and the names it owns."""

    def __init__(self):
        tag = uuid.uuid4().hex
        self.base = tempfile.mkdtemp(prefix="dynet-", dir="/tmp")
        octet = 128 + int(tag[8:12], 16) % 123
        self.bridge = "dyt" + tag[:8]
        self.config = Config(data_root=os.path.join(self.base, "root"), exec_root=os.path.join(self.base, "exec"),
                             bridge=self.bridge, bip=f"10.{octet}.0.1/24",
                             default_address_pools=(AddressPool(f"10.{octet}.0.0/16", 24),))
        os.makedirs(self.config.data_root)
        self.octet = octet
        self.table = table_name(self.config.data_root)
        self.daemon = None

    async def open(self) -> Networks:
        store = Store(path=os.path.join(self.base, "engine.db")) if self.daemon is None else self.daemon.store
        events = Events()
        await events.start()
        self.daemon = types.SimpleNamespace(config=self.config, store=store, events=events, warnings=[])
        nets = Networks(self.daemon)
        await nets.start()
        self.daemon.networks = nets
        return nets

    def container(self, nets: Networks, name: str, host_config: dict | None = None,
                  networking: dict | None = None, config: dict | None = None) -> Container:
        host_config = {"NetworkMode": "bridge", **(host_config or {})}
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        nets.validate_create(host_config, networking or {})
        c = Container(id=cid, name=name, created=timeutil.format_rfc3339(timeutil.now_ns()), image="busybox",
                      image_id="sha256:" + "0" * 64, path="sh", args=[],
                      config={"Hostname": cid[:12], **(config or {})}, host_config=host_config,
                      network_settings=nets.initial_settings(host_config, networking or {}))
        self.daemon.store.add(c)
        return c

    async def start(self, nets: Networks, c: Container) -> str | None:
        path = await nets.attach(c)
        c.state.set_running(os.getpid(), timeutil.now_ns())
        self.daemon.store.save(c)
        return path

    async def stop(self, nets: Networks, c: Container) -> None:
        await nets.detach(c)
        c.state.set_stopped(0, timeutil.now_ns())
        self.daemon.store.save(c)

    def bridges(self) -> list[str]:
        import sqlite3
        db = sqlite3.connect(os.path.join(self.config.data_root, "network", "network.db"))
        try:
            return [r[0] for r in db.execute("SELECT bridge FROM networks WHERE bridge != ''")]
        finally:
            db.close()


@pytest.fixture
def env():
    e = Env()
    bridges: list[str] = []
    try:
        yield e
        bridges = e.bridges()
    finally:
        # Whatever a failed test left: reported below, but removed first.
        leftovers = []
        for b in bridges + [e.bridge]:
            for link in netlink.links_with_prefix("veth", master=b):
                leftovers.append(link)
                netlink.delete_link(link)
            if netlink.link_exists(b):
                leftovers.append(b)
                netlink.delete_link(b)
        if nftables.exists(e.table):
            leftovers.append(e.table)
            nftables.delete(e.table)
        ns_dir = os.path.join(e.config.exec_root, "netns")
        for entry in os.listdir(ns_dir) if os.path.isdir(ns_dir) else ():
            leftovers.append(entry)
            netns.delete(os.path.join(ns_dir, entry))
        shutil.rmtree(e.base, ignore_errors=True)
    assert not leftovers, f"left behind: {leftovers}"


def off_loop(fn, *args):
    """pyroute2's synchronous API runs its own event loop: never on a thread running one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def link_exists(name: str) -> bool:
    return off_loop(netlink.link_exists, name)


def veths(prefix: str = "veth", master: str | None = None) -> list[str]:
    return off_loop(netlink.links_with_prefix, prefix, master)


def run(coro):
    return asyncio.run(coro)


async def sh(netns_path: str, *args: str, timeout: float = 10) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={netns_path}", BUSYBOX, *args,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -1, out.decode()
    return proc.returncode, out.decode()


def test_predefined_networks_and_clean_close(env):
    async def body():
        nets = await env.open()
        names = {n["Name"]: n for n in nets.list()}
        assert set(names) == {"bridge", "host", "none"}
        bridge = names["bridge"]
        assert bridge["Driver"] == "bridge" and names["none"]["Driver"] == "null"
        assert bridge["IPAM"]["Config"] == [{"Subnet": f"10.{env.octet}.0.0/24", "Gateway": f"10.{env.octet}.0.1"}]
        assert bridge["Options"]["com.docker.network.bridge.name"] == env.bridge
        assert link_exists(env.bridge)
        assert nftables.exists(env.table)
        assert nets.get(bridge["Id"][:10]).name == "bridge"
        with pytest.raises(NotFound, match="network nosuch not found"):
            nets.get("nosuch")
        ids = {n["Name"]: n["Id"] for n in nets.list()}
        await nets.close()
        assert not link_exists(env.bridge)
        assert not nftables.exists(env.table)
        # Restarted: the same records, the bridge made again.
        nets = await env.open()
        assert {n["Name"]: n["Id"] for n in nets.list()} == ids
        assert link_exists(env.bridge)
        await nets.close()
    run(body())


def test_user_network_create_inspect_remove(env):
    async def body():
        nets = await env.open()
        sub = env.daemon.events.subscribe(since=0)
        created = await nets.create({"Name": "front", "Labels": {"a": "b"}})
        n = nets.get("front")
        assert created == {"Id": n.id, "Warning": ""}
        view = nets.inspect("front")
        # The first free /24 of the pool: 10.x.0.0/24 is the default bridge's.
        assert view["IPAM"]["Config"] == [{"Subnet": f"10.{env.octet}.1.0/24", "Gateway": f"10.{env.octet}.1.1"}]
        assert view["Containers"] == {} and view["Labels"] == {"a": "b"} and view["Scope"] == "local"
        assert link_exists("dy-" + n.id[:12])
        with pytest.raises(Conflict, match="network with name front already exists"):
            await nets.create({"Name": "front"})
        with pytest.raises(Conflict, match="predefined bridge network"):
            await nets.create({"Name": "bridge"})
        with pytest.raises(NotFound, match='plugin "overlay" not found'):
            await nets.create({"Name": "x", "Driver": "overlay"})
        with pytest.raises(Conflict, match="overlaps"):
            await nets.create({"Name": "x", "IPAM": {"Config": [{"Subnet": f"10.{env.octet}.1.128/25"}]}})
        await nets.create({"Name": "back", "Internal": True,
                           "IPAM": {"Config": [{"Subnet": f"10.{env.octet}.200.0/24", "IPRange": f"10.{env.octet}.200.64/26"}]}})
        assert [x["Name"] for x in nets.list(Filters(type=["custom"]))] == ["front", "back"]
        assert [x["Name"] for x in nets.list(Filters(label=["a=b"]))] == ["front"]
        assert {x["Name"] for x in nets.list(Filters(dangling=["true"]))} == {"front", "back"}
        with pytest.raises(Conflict, match="pre-defined network and cannot be removed"):
            await nets.remove("host")
        await nets.remove("front")
        assert not link_exists("dy-" + n.id[:12])
        assert (await nets.prune(Filters()))["NetworksDeleted"] == ["back"]
        await nets.close()
        sub.close()
        actions = [(m["Action"], m["Actor"]["Attributes"]["name"]) async for m in sub]
        assert actions == [("create", "front"), ("create", "back"), ("destroy", "front"), ("destroy", "back")]
    run(body())


def test_two_containers_talk_and_resolve_names(env):
    async def body():
        nets = await env.open()
        await nets.create({"Name": "app"})
        web = env.container(nets, "web", {"NetworkMode": "app"},
                            {"EndpointsConfig": {"app": {"Aliases": ["www"]}}})
        cli = env.container(nets, "cli", {"NetworkMode": "app"})
        web_ns = await env.start(nets, web)
        cli_ns = await env.start(nets, cli)
        ep = web.network_settings["Networks"]["app"]
        subnet = ipaddress.ip_network(nets.get("app").subnet)
        assert ipaddress.ip_address(ep["IPAddress"]) in subnet and ep["IPPrefixLen"] == 24
        assert ep["DNSNames"] == ["web", web.id[:12], "www"]
        assert ep["MacAddress"] == netlink.random_mac(ep["IPAddress"])
        assert web.network_settings["SandboxKey"] == web_ns and web.network_settings["IPAddress"] == ""
        assert nets.uses_embedded_dns(web) and nets.hosts_entries(web) == [(ep["IPAddress"], web.id[:12])]
        members = nets.inspect("app")["Containers"]
        assert set(members) == {web.id, cli.id}
        assert members[web.id]["IPv4Address"] == f"{ep['IPAddress']}/24"
        code, out = await sh(cli_ns, "ping", "-c", "1", "-W", "2", ep["IPAddress"])
        assert code == 0, out
        for name in ("web", "WWW", web.id[:12]):
            code, out = await sh(cli_ns, "nslookup", name, "127.0.0.11")
            assert code == 0 and ep["IPAddress"] in out, out
        code, out = await sh(cli_ns, "nslookup", "nosuch-name.invalid", "127.0.0.11")
        assert ep["IPAddress"] not in out
        with pytest.raises(Conflict, match="has active endpoints"):
            await nets.remove("app")
        # A start after a run that was never detached replaces that run's plumbing.
        stale = [e.host_ifname for e in nets.records.endpoints_of_container(web.id)]
        web_ns = await nets.attach(web)
        assert not any(link_exists(h) for h in stale) and len(nets.records.endpoints_of_container(web.id)) == 1
        assert web.network_settings["SandboxKey"] == web_ns and len(os.listdir(nets.netns_dir)) == 2
        hosts = [e.host_ifname for e in nets.records.endpoints.values()]
        await env.stop(nets, web)
        await env.stop(nets, cli)
        assert not any(link_exists(h) for h in hosts)
        assert not os.path.exists(web_ns) and not os.path.exists(cli_ns)
        assert not nets.records.endpoints and not nets.records.sandboxes
        assert web.network_settings["Networks"]["app"]["IPAddress"] == ""
        assert web.network_settings["Networks"]["app"]["Aliases"] == ["www"]
        await nets.remove("app")
        await nets.close()
    run(body())


def test_default_bridge_ports_and_static_addresses(env):
    async def body():
        nets = await env.open()
        with pytest.raises(InvalidArgument, match="user defined networks only"):
            env.container(nets, "bad", {}, {"EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": "10.0.0.9"}}}})
        with pytest.raises(InvalidArgument, match="network-scoped alias"):
            env.container(nets, "bad", {}, {"EndpointsConfig": {"bridge": {"Aliases": ["x"]}}})
        await nets.create({"Name": "fixed", "IPAM": {"Config": [{"Subnet": f"10.{env.octet}.50.0/24"}]}})
        await nets.create({"Name": "auto"})
        with pytest.raises(InvalidArgument, match="user configured subnets"):
            env.container(nets, "bad", {"NetworkMode": "auto"},
                          {"EndpointsConfig": {"auto": {"IPAMConfig": {"IPv4Address": f"10.{env.octet}.1.9"}}}})
        with pytest.raises(InvalidArgument, match="contain the IP address"):
            env.container(nets, "bad", {"NetworkMode": "fixed"},
                          {"EndpointsConfig": {"fixed": {"IPAMConfig": {"IPv4Address": "10.0.0.9"}}}})
        want = f"10.{env.octet}.50.77"
        a = env.container(nets, "a", {"NetworkMode": "fixed"},
                          {"EndpointsConfig": {"fixed": {"IPAMConfig": {"IPv4Address": want}}}})
        b = env.container(nets, "b", {"NetworkMode": "fixed"},
                          {"EndpointsConfig": {"fixed": {"IPAMConfig": {"IPv4Address": want}}}})
        await env.start(nets, a)
        assert a.network_settings["Networks"]["fixed"]["IPAddress"] == want
        links_before = veths("veth")
        with pytest.raises(Conflict, match="Address already in use"):
            await nets.attach(b)
        # Nothing half-made: no new veth, no sandbox, no settings.
        assert veths("veth") == links_before
        assert b.id not in nets.records.sandboxes and b.network_settings["SandboxKey"] == ""
        await env.stop(nets, a)

        # Default bridge + a published port reachable on 127.0.0.1.
        port = _free_port()
        web = env.container(nets, "web", {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}},
                            config={"ExposedPorts": {"80/tcp": {}, "443/tcp": {}}})
        web_ns = await env.start(nets, web)
        ns = web.network_settings
        assert ns["IPAddress"].startswith(f"10.{env.octet}.0.") and ns["Gateway"] == f"10.{env.octet}.0.1"
        assert ns["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}], "443/tcp": None}
        assert ns["Networks"]["bridge"]["DNSNames"] is None and not nets.uses_embedded_dns(web)
        assert nets.gateway_of(web) == f"10.{env.octet}.0.1"
        clash = env.container(nets, "clash", {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}})
        with pytest.raises(Conflict, match="port is already allocated"):
            await nets.attach(clash)
        server = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={web_ns}", BUSYBOX, "nc", "-l", "-p", "80", "-e", BUSYBOX, "echo", "hello",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            got = await asyncio.to_thread(_fetch, port)
        finally:
            if server.returncode is None:
                server.kill()
            await server.wait()
        assert got == b"hello\n"
        await env.stop(nets, web)
        assert nets.ports_of(web) == []
        socket.create_server(("127.0.0.1", port)).close()  # the host port is free again
        await nets.close()
    run(body())


def test_connect_and_disconnect_running_container(env):
    async def body():
        nets = await env.open()
        await nets.create({"Name": "extra"})
        c = env.container(nets, "c")
        path = await env.start(nets, c)
        stopped = env.container(nets, "s")
        await nets.connect("extra", "c", {"Aliases": ["db"]})
        await nets.connect("extra", "s", None)
        assert list(stopped.network_settings["Networks"]) == ["bridge", "extra"]
        assert stopped.id not in {e.container_id for e in nets.records.endpoints.values()}
        ep = c.network_settings["Networks"]["extra"]
        assert ep["IPAddress"] and ep["DNSNames"] == ["c", c.id[:12], "db"]
        code, out = await sh(path, "ip", "addr", "show", "eth1")
        assert code == 0 and ep["IPAddress"] in out, out
        assert nets.uses_embedded_dns(c)
        with pytest.raises(Conflict, match="already exists in network extra"):
            await nets.connect("extra", "c", None)
        await nets.disconnect("extra", "c")
        assert "extra" not in c.network_settings["Networks"]
        code, out = await sh(path, "ip", "link", "show", "eth1")
        assert code != 0
        with pytest.raises(Conflict, match="is not connected"):
            await nets.disconnect("extra", "c")
        await nets.disconnect("extra", "s")
        # none: a private netns with only lo; container:<x>: nothing of ours (the CLI sends an
        # EndpointsConfig entry named after the mode).
        lone = env.container(nets, "lone", {"NetworkMode": "none"}, {"EndpointsConfig": {"none": {}}})
        lone_ns = await env.start(nets, lone)
        code, out = await sh(lone_ns, "ip", "-o", "link")
        assert code == 0 and "lo:" in out and "UP" in out and "eth0" not in out, out
        assert list(lone.network_settings["Networks"]) == ["none"] and not nets.uses_embedded_dns(lone)
        peer = env.container(nets, "peer", {"NetworkMode": "container:c"}, {"EndpointsConfig": {"container:c": {}}})
        assert peer.network_settings["Networks"] == {} and await nets.attach(peer) is None
        await env.stop(nets, lone)
        assert not os.path.exists(lone_ns)
        h = env.container(nets, "h", {"NetworkMode": "host"}, {"EndpointsConfig": {"host": {}}})
        assert await nets.attach(h) is None
        with pytest.raises(Conflict, match="host network"):
            await nets.connect("extra", "h", None)
        await env.stop(nets, c)
        await nets.remove("extra")
        await nets.close()
    run(body())


def test_reconcile_after_a_crash(env):
    async def body():
        nets = await env.open()
        await nets.create({"Name": "r"})
        gone = env.container(nets, "gone", {"NetworkMode": "r"})
        kept = env.container(nets, "kept", {"NetworkMode": "r"})
        gone_ns = await env.start(nets, gone)
        kept_ns = await env.start(nets, kept)
        kept_ip = kept.network_settings["Networks"]["r"]["IPAddress"]
        gone_links = [e.host_ifname for e in nets.records.endpoints_of_container(gone.id)]
        # "SIGKILL": nothing closed; `gone` exited meanwhile; a stray veth and netns file appear.
        await nets.resolver.close()
        nets.ports.close()
        nets.records.close()
        gone.state.set_stopped(137, timeutil.now_ns())
        env.daemon.store.save(gone)
        stray = netlink.host_ifname()
        r_bridge = nets.get("r").bridge
        netns.create(os.path.join(nets.netns_dir, "strayns"))
        subprocess.run(["ip", "link", "add", stray, "type", "veth", "peer", "name", stray + "p"], check=True)
        subprocess.run(["ip", "link", "set", stray, "master", r_bridge], check=True)
        nets = await env.open()
        assert not link_exists(stray) and not any(link_exists(x) for x in gone_links)
        assert not os.path.exists(gone_ns) and os.listdir(nets.netns_dir) == [os.path.basename(kept_ns)]
        assert [e.container_id for e in nets.records.endpoints.values()] == [kept.id]
        assert nets.resolver.serving() == {kept.id: kept_ns}
        # The kept container still answers, and its address is not handed out again.
        late = env.container(nets, "late", {"NetworkMode": "r"})
        late_ns = await env.start(nets, late)
        assert late.network_settings["Networks"]["r"]["IPAddress"] != kept_ip
        code, out = await sh(late_ns, "ping", "-c", "1", "-W", "2", kept_ip)
        assert code == 0, out
        # A graceful stop with containers running keeps their plumbing…
        await nets.close()
        assert link_exists(r_bridge) and nftables.exists(env.table)
        nets = await env.open()
        await env.stop(nets, kept)
        await env.stop(nets, late)
        await nets.remove("r")
        # …and without any, leaves nothing.
        await nets.close()
    run(body())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fetch(port: int) -> bytes:
    import time
    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                data = b""
                while chunk := s.recv(100):
                    data += chunk
                if data:
                    return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            return b""
        time.sleep(0.1)
