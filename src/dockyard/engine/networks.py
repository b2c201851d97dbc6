"""The daemon's networks (`daemon.networks`): Docker's network model on Linux bridges — the
predefined `bridge`, `host` and `none` networks, user-defined bridge networks, and for each
container started on them a sandbox (a network namespace file under <exec-root>/netns) with one
veth endpoint per network, its published ports (host port reservations + DNAT in our own nft
table) and, on user-defined networks, the embedded DNS server at 127.0.0.11.

State lives in network.db (engine/netrecords.py), written before the kernel object it describes
is made, so whatever a crash leaves behind is named by a record and `start()` reconciles it:
endpoints of containers that are not running are released, veths enslaved to our bridges that
no endpoint names are deleted, netns files no sandbox names are removed, the nft table is
rendered again from the records. `close()` keeps everything while a container runs (live
restore) and otherwise removes our nft table and the bridges we made.

Kernel work goes through dockyard.network (netns, netlink, nftables: synchronous, so run in
threads); the API routes (engine/api/networks.py) and the containers component call in here.
Shapes and error texts are the Engine API's and dockerd's (docker-engine-api-v1.45.yaml
Network, NetworkCreateRequest, EndpointSettings, NetworkSettings).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import secrets

from dockyard.engine import hostfiles, timeutil
from dockyard.engine.filters import Filters
from dockyard.engine.netrecords import (OPT_BRIDGE_NAME, OPT_DEFAULT_BRIDGE, OPT_HOST_BINDING, OPT_ICC,
                                        OPT_MASQUERADE, OPT_MTU, Endpoint, NetRecords, Network, Sandbox)
from dockyard.errors import Conflict, DockyardError, Forbidden, InvalidArgument, NotFound, Unsupported
from dockyard.network import ipam, netlink, netns, nftables, portmap
from dockyard.network.resolver import Resolver

log = logging.getLogger(__name__)

PREDEFINED = ("bridge", "host", "none")
USER_BRIDGE_PREFIX = "dy-"     # + 12 hex of the network id (dockerd: "br-")
LIST_FILTERS = frozenset({"driver", "id", "label", "name", "scope", "type", "dangling"})
PRUNE_FILTERS = frozenset({"until", "label", "label!"})

# The runtime fields of an EndpointSettings (cleared when the container stops); the rest
# (IPAMConfig, Aliases, Links, DriverOpts, a configured MacAddress) is the user's configuration.
_RUNTIME_TOP = {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                "MacAddress": ""}
_RUNTIME_ENDPOINT = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                     "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def endpoint_settings(config: dict | None = None, network_id: str = "") -> dict:
    """A Docker EndpointSettings with the user's part of `config` (an EndpointsConfig entry)."""
    config = config or {}
    return {"IPAMConfig": config.get("IPAMConfig") or None, "Links": config.get("Links") or None,
            "Aliases": config.get("Aliases") or None, "MacAddress": config.get("MacAddress") or "",
            "DriverOpts": config.get("DriverOpts") or None, "NetworkID": network_id, **_RUNTIME_ENDPOINT}


def table_name(data_root: str) -> str:
    """One nft table per daemon, so several daemons on one host never touch each other's rules."""
    return "dockyard_" + hashlib.sha256(data_root.encode()).hexdigest()[:8]


def network_mode(host_config: dict) -> str:
    mode = host_config.get("NetworkMode") or "bridge"
    return "bridge" if mode == "default" else mode


def _sandboxed(mode: str) -> bool:
    """Whether the container gets a namespace of its own from us (not host's, not a peer's)."""
    return mode != "host" and not mode.startswith("container:")


def _static_ip(settings: dict) -> str:
    return ((settings.get("IPAMConfig") or {}).get("IPv4Address") or "").strip()


def _new_id() -> str:
    return secrets.token_hex(32)


class Networks:
    """The daemon component behind /networks and the containers' network plumbing."""

    def __init__(self, daemon):
        self.daemon = daemon
        config = daemon.config
        self.root = os.path.join(config.data_root, "network")
        self.netns_dir = os.path.join(config.exec_root, "netns")
        self.table = table_name(config.data_root)
        self.records: NetRecords | None = None
        self.ports = portmap.PortReservations()
        self.resolver = Resolver(self._dns_lookup, self._dns_reverse, self._dns_upstreams)
        self._bindings: dict[str, list] = {}   # container id → its reserved portmap.Bindings
        self._lock = asyncio.Lock()            # network create/remove and the nft table
        self._nft_reason: str | None = None    # why nft cannot be used (then no DNAT/masquerade)
        self._applied: nftables.Ruleset | None = None  # the table as last applied

    @property
    def store(self):
        return self.daemon.store

    @property
    def _events(self):
        return getattr(self.daemon, "events", None)

    # -- component life ----------------------------------------------------------------------------

    async def start(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.makedirs(self.netns_dir, mode=0o700, exist_ok=True)
        self.records = NetRecords(os.path.join(self.root, "network.db"))
        self._nft_reason = nftables.available()
        if self._nft_reason:
            warning = f"WARNING: nftables unavailable ({self._nft_reason}): no port publishing or NAT"
            log.warning(warning)
            self.daemon.warnings.append(warning)
        await self._predefined()
        bridges = [n for n in self.records.networks.values() if n.is_bridge]
        if bridges:
            await asyncio.to_thread(netlink.enable_ip_forward)
        for n in bridges:
            await self._bridge_up(n)
        await self._reconcile()
        await self._apply_nft()

    async def close(self) -> None:
        await self.resolver.close()
        self.ports.close()
        self._bindings.clear()
        if self.records is None:
            return
        live = any(self._running(cid) for cid in {e.container_id for e in self.records.endpoints.values()})
        if not live:
            for cid in {*self.records.sandboxes, *(e.container_id for e in self.records.endpoints.values())}:
                if not self._running(cid):
                    await self._teardown(cid, publish=False)
            # No container needs them: leave the host as we found it (the next start makes them again).
            if not self._nft_reason:
                await asyncio.to_thread(nftables.delete, self.table)
                self._applied = None
            for n in self.records.networks.values():
                if n.is_bridge and n.bridge_made:
                    await asyncio.to_thread(netlink.delete_link, n.bridge)
        self.records.close()
        self.records = None

    def _running(self, cid: str) -> bool:
        c = self.store.find(cid)
        return c is not None and c.state.running

    async def _predefined(self) -> None:
        """host, none and (unless --bridge none) bridge, made once; the bridge network follows
        --bridge/--bip changes across restarts."""
        for name, driver in (("host", "host"), ("none", "null")):
            if self.records.by_name(name) is None:
                self.records.put_network(Network(id=_new_id(), name=name, driver=driver, predefined=True,
                                                 created=timeutil.format_rfc3339(timeutil.now_ns()),
                                                 ipam={"Driver": "default", "Options": None, "Config": []}))
        config = self.daemon.config
        current = self.records.by_name("bridge")
        if config.bridge == "none":
            if current is not None and not self.records.endpoints_of_network(current.id):
                if current.bridge_made:
                    await asyncio.to_thread(netlink.delete_link, current.bridge)
                self.records.delete_network(current)
            return
        bridge = config.bridge_name
        if config.bip:
            iface = ipaddress.ip_interface(config.bip)
            subnet, gateway = iface.network, iface.ip
        elif current is not None and current.bridge == bridge and current.subnet:
            subnet, gateway = ipaddress.ip_network(current.subnet), ipaddress.ip_address(current.gateway)
        else:
            others = [n.subnet for n in self.records.networks.values() if n.subnet and n is not current]
            subnet = await self._choose_subnet(others)
            gateway = next(subnet.hosts())
        # dockerd's --icc, --ip-masq and --ip, shown as the default bridge's options as dockerd does.
        options = {OPT_DEFAULT_BRIDGE: "true", OPT_ICC: str(config.icc).lower(),
                   OPT_MASQUERADE: str(config.ip_masq).lower(), OPT_HOST_BINDING: config.ip,
                   OPT_BRIDGE_NAME: bridge, OPT_MTU: "1500"}
        if current is not None and (current.bridge, current.subnet, current.gateway, current.options) == (
                bridge, str(subnet), str(gateway), options):
            return
        if current is not None and current.bridge != bridge and current.bridge_made:
            await asyncio.to_thread(netlink.delete_link, current.bridge)
        n = Network(id=current.id if current else _new_id(), name="bridge", driver="bridge", predefined=True,
                    created=current.created if current else timeutil.format_rfc3339(timeutil.now_ns()),
                    ipam={"Driver": "default", "Options": None,
                          "Config": [{"Subnet": str(subnet), "Gateway": str(gateway)}]},
                    options=options, bridge=bridge,
                    bridge_made=bool(current and current.bridge == bridge and current.bridge_made),
                    subnet=str(subnet), gateway=str(gateway), subnet_configured=bool(config.bip))
        self.records.put_network(n)

    def _pools(self) -> tuple:
        pools = self.daemon.config.default_address_pools
        return tuple((p.base, p.size) for p in pools) if pools else ipam.DEFAULT_POOLS

    async def _choose_subnet(self, others: list[str]) -> ipaddress.IPv4Network:
        """A pool subnet overlapping neither another network nor a host route (our own bridges'
        routes are our networks' subnets, already in `others`)."""
        host = await asyncio.to_thread(netlink.host_ipv4_networks)
        return ipam.choose_subnet(self._pools(), [*host, *(ipaddress.ip_network(s) for s in others)])

    async def _bridge_up(self, n: Network) -> None:
        made = await asyncio.to_thread(netlink.ensure_bridge, n.bridge, f"{n.gateway}/{n.prefix_len}", n.mtu)
        # Published ports must answer on 127.0.0.1 too: that takes DNAT to a bridge address
        # with route_localnet on the bridge (and the masquerade the nft table adds).
        await asyncio.to_thread(netlink.set_route_localnet, n.bridge)
        if made and not n.bridge_made:
            n.bridge_made = True
            self.records.put_network(n)

    # -- reconcile ---------------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Crash and restart safety (see the module docstring)."""
        records = self.records
        for cid in {*records.sandboxes, *(e.container_id for e in records.endpoints.values())}:
            c = self.store.find(cid)
            if c is None or not c.state.running:
                await self._teardown(cid, publish=False)
                continue
            for e in records.endpoints_of_container(cid):
                if not await asyncio.to_thread(netlink.link_exists, e.host_ifname):
                    log.warning("container %s lost its endpoint %s on %s", cid[:12], e.host_ifname,
                                e.network_id[:12])
            self._restore_ports(c)
            sandbox = records.sandboxes.get(cid)
            if sandbox is not None and self._wants_dns(c):
                with contextlib.suppress(DockyardError, OSError):
                    await self.resolver.serve(cid, sandbox.path)
        known = {e.host_ifname for e in records.endpoints.values()}
        for n in records.networks.values():
            if not n.is_bridge:
                continue
            # Only links enslaved to OUR bridges: another engine's veths are not ours to judge.
            for ifname in await asyncio.to_thread(netlink.links_with_prefix, "veth", n.bridge):
                if ifname not in known:
                    log.info("deleting stray endpoint %s on %s", ifname, n.bridge)
                    await asyncio.to_thread(netlink.delete_link, ifname)
        paths = {s.path for s in records.sandboxes.values()}
        for entry in os.listdir(self.netns_dir):
            path = os.path.join(self.netns_dir, entry)
            if path not in paths:
                log.info("deleting stray network namespace %s", path)
                await asyncio.to_thread(netns.delete, path)

    def _restore_ports(self, c) -> None:
        """The host ports of a running container's published bindings, held again."""
        bound = []
        for binding in portmap.bindings_from_view(c.network_settings.get("Ports")):
            try:
                bound.append(self.ports.reserve(binding))
            except DockyardError as e:
                log.warning("container %s: %s", c.id[:12], e)
        if bound:
            self._bindings[c.id] = bound

    # -- nftables ----------------------------------------------------------------------------------

    def _ruleset(self) -> nftables.Ruleset:
        nets = self.records.networks
        bridges = tuple(nftables.BridgeNet(bridge=n.bridge, subnet=n.subnet, icc=n.flag(OPT_ICC, True),
                                           internal=n.internal, masquerade=n.flag(OPT_MASQUERADE, True))
                        for n in sorted(nets.values(), key=lambda n: n.bridge) if n.is_bridge)
        dnats = []
        for cid, bindings in sorted(self._bindings.items()):
            eps = self.records.endpoints_of_container(cid)
            if not eps or eps[0].network_id not in nets:
                continue
            primary, n = eps[0], nets[eps[0].network_id]
            for b in bindings:
                dnats.append(nftables.Dnat(proto=b.proto, host_ip=b.host_ip or "0.0.0.0", host_port=b.host_port,
                                           container_ip=primary.ip, container_port=b.container_port,
                                           bridge=n.bridge))
        return nftables.Ruleset(table=self.table, bridges=bridges, dnats=tuple(dnats))

    async def _apply_nft(self) -> None:
        if self._nft_reason or self.records is None:
            return
        async with self._lock:
            rules = self._ruleset()
            # Most starts and exits change nothing here (no published port, a bridge already
            # there): skipping the unchanged table saves an `nft` process on that path.
            if rules == self._applied:
                return
            self._applied = None  # unknown if the apply fails half-way: the next one goes through
            await asyncio.to_thread(nftables.apply, rules)
            self._applied = rules

    # -- lookups -----------------------------------------------------------------------------------

    def get(self, ref: str) -> Network:
        """dockerd's order: full id, exact name, unique id prefix."""
        nets = self.records.networks
        if ref in nets:
            return nets[ref]
        n = self.records.by_name(ref)
        if n is not None:
            return n
        if ref:
            found = [n for i, n in nets.items() if i.startswith(ref.lower())]
            if len(found) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
            if found:
                return found[0]
        raise NotFound(f"network {ref} not found")

    def find(self, ref: str) -> Network | None:
        try:
            return self.get(ref)
        except (NotFound, InvalidArgument):
            return None

    # -- API: create, list, inspect, remove, prune ---------------------------------------------------

    async def create(self, body: dict) -> dict:
        """POST /networks/create (NetworkCreateRequest) → {"Id", "Warning"}."""
        if not isinstance(body, dict):
            raise InvalidArgument("invalid network config: want a JSON object")
        # Field types are checked by the route (engine/api/networks.py decode), as dockerd's decoder.
        name = (body.get("Name") or "").strip()
        if not name:
            raise InvalidArgument("network name is required")  # dockerd: "invalid name: ..." family
        if name in PREDEFINED:
            raise Forbidden(f"operation is not permitted on predefined {name} network ")
        driver = body.get("Driver") or "bridge"
        if driver in ("host", "null"):
            raise Forbidden(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if body.get("EnableIPv6"):
            raise Unsupported("IPv6 networks are not supported")
        if body.get("Ingress"):
            raise Unsupported("ingress networks need swarm mode, which dockyardd does not provide")
        if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
            raise Unsupported("config-only networks are not supported")
        if (body.get("Scope") or "local") != "local":
            raise InvalidArgument(f"invalid scope {body['Scope']!r}: only \"local\" networks are supported")
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
        entries = ipam.parse_ipam(body.get("IPAM"))
        if len(entries) > 1:
            raise Unsupported("only one IPv4 subnet per network is supported")
        mtu = options.get(OPT_MTU)
        if mtu is not None and not (mtu.isdigit() and 68 <= int(mtu) <= 65535):
            raise InvalidArgument(f"invalid MTU {mtu!r}: want a number from 68 to 65535")
        async with self._lock:
            if self.records.by_name(name) is not None:
                raise Conflict(f"network with name {name} already exists")
            nid = _new_id()
            bridge = options.get(OPT_BRIDGE_NAME) or USER_BRIDGE_PREFIX + nid[:12]
            if len(bridge) > 15 or "/" in bridge or not bridge.strip():
                raise InvalidArgument(f"invalid bridge name {bridge!r}: at most 15 characters")
            if any(n.bridge == bridge for n in self.records.networks.values()):
                raise Conflict(f"bridge name {bridge} is already used by another network")
            others = [n.subnet for n in self.records.networks.values() if n.subnet]
            if entries:
                subnet = ipam.subnet_from_config(entries[0])
                ipam.check_overlap(subnet.subnet, [ipaddress.ip_network(s) for s in others])
            else:
                subnet = ipam.subnet_from_config({"Subnet": str(await self._choose_subnet(others))})
            ipam_view = {"Driver": "default", "Options": (body.get("IPAM") or {}).get("Options") or None,
                         "Config": [subnet.to_config()]}
            n = Network(id=nid, name=name, driver=driver, created=timeutil.format_rfc3339(timeutil.now_ns()),
                        internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
                        ipam=ipam_view, options=options, labels=labels, bridge=bridge,
                        subnet=str(subnet.subnet), gateway=str(subnet.gateway),
                        ip_range=str(subnet.ip_range) if subnet.ip_range else "",
                        subnet_configured=bool(entries))
            # The record first: a crash between the two leaves a bridge a record names.
            self.records.put_network(n)
            try:
                await asyncio.to_thread(netlink.enable_ip_forward)
                await self._bridge_up(n)
            except BaseException:
                with contextlib.suppress(DockyardError):
                    await asyncio.to_thread(netlink.delete_link, bridge)
                self.records.delete_network(n)
                raise
        await self._apply_nft()
        self._publish(n, "create")
        return {"Id": nid, "Warning": ""}

    def list(self, filters: Filters | None = None) -> list[dict]:
        """GET /networks: Containers is empty in the list, as dockerd's."""
        filters = filters or Filters()
        filters.validate(LIST_FILTERS)
        for t in filters.values("type"):
            if t not in ("custom", "builtin"):
                raise InvalidArgument(f"invalid filter: 'type'='{t}'")
        dangling = filters.get_bool("dangling", False) if filters.contains("dangling") else None
        out = []
        for n in sorted(self.records.networks.values(), key=lambda n: n.created):
            kind = "builtin" if n.predefined else "custom"
            if not (filters.exact_match("driver", n.driver) and filters.fuzzy_match("id", n.id)
                    and filters.match("name", n.name) and filters.match_kv("label", n.labels)
                    and filters.exact_match("scope", n.scope) and filters.exact_match("type", kind)):
                continue
            if dangling is not None:
                unused = not n.predefined and not self.records.endpoints_of_network(n.id)
                if unused != dangling:
                    continue
            out.append(self._view(n, containers=False))
        return out

    def inspect(self, ref: str, verbose: bool = False, scope: str = "") -> dict:
        n = self.get(ref)
        if scope and scope != n.scope:
            raise NotFound(f"network {ref} not found")
        return self._view(n, containers=True)

    def _view(self, n: Network, containers: bool) -> dict:
        members = {}
        if containers:
            for e in self.records.endpoints_of_network(n.id):
                c = self.store.find(e.container_id)
                members[e.container_id] = {
                    "Name": c.name if c else "", "EndpointID": e.endpoint_id, "MacAddress": e.mac,
                    "IPv4Address": f"{e.ip}/{n.prefix_len}", "IPv6Address": ""}
        return {"Name": n.name, "Id": n.id, "Created": n.created, "Scope": n.scope, "Driver": n.driver,
                "EnableIPv6": n.enable_ipv6, "IPAM": n.ipam, "Internal": n.internal, "Attachable": n.attachable,
                "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": members,
                "Options": n.options, "Labels": n.labels}

    async def remove(self, ref: str) -> None:
        async with self._lock:
            n = self.get(ref)
            if n.predefined:
                raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
            if self.records.endpoints_of_network(n.id):
                raise Forbidden(f"error while removing network: network {n.name} id {n.id} has active endpoints")
            self.records.delete_network(n)
        if n.is_bridge and n.bridge_made:
            await asyncio.to_thread(netlink.delete_link, n.bridge)
        await self._apply_nft()
        self._publish(n, "destroy")

    async def prune(self, filters: Filters | None = None) -> dict:
        filters = filters or Filters()
        filters.validate(PRUNE_FILTERS)
        until = timeutil.parse_timestamp(filters.values("until")[0]) if filters.values("until") else None
        deleted = []
        for n in list(self.records.networks.values()):
            if n.predefined or self.records.endpoints_of_network(n.id):
                continue
            if until is not None and timeutil.to_ns(n.created) >= until:
                continue
            if not filters.match_kv("label", n.labels):
                continue
            if any(_label_expr(n.labels, e) for e in filters.values("label!")):
                continue
            try:
                await self.remove(n.id)
            except (Conflict, NotFound):
                continue
            deleted.append(n.name)
        return {"NetworksDeleted": deleted}

    def _publish(self, n: Network, action: str, container: str = "") -> None:
        if self._events is None:
            return
        attributes = {"name": n.name, "type": n.driver}
        if container:
            attributes["container"] = container
        self._events.publish("network", action, n.id, attributes)

    # -- API: connect, disconnect ----------------------------------------------------------------

    async def connect(self, ref: str, container_ref: str, endpoint_config: dict | None = None) -> None:
        n = self.get(ref)
        c = self.store.get(container_ref)
        endpoint_config = endpoint_config or {}
        if not isinstance(endpoint_config, dict):
            raise InvalidArgument("invalid EndpointConfig: want a JSON object")
        async with self._container_lock(c):
            mode = network_mode(c.host_config)
            self._check_switchable(mode, n)
            networks = c.network_settings.setdefault("Networks", {})
            if self._network_key(c, n) is not None:
                raise Forbidden(f"endpoint with name {c.name} already exists in network {n.name}")
            self._check_endpoint_config(n.name, n, endpoint_config)
            settings = endpoint_settings(endpoint_config, n.id)
            if c.state.running:
                sandbox = self.records.sandboxes.get(c.id)
                if sandbox is None:
                    raise Conflict(f"container {c.id} has no network sandbox to connect")
                ifnames = {e.ifname for e in self.records.endpoints_of_container(c.id)}
                ifname = next(f"eth{i}" for i in range(len(ifnames) + 1) if f"eth{i}" not in ifnames)
                await self._join(c, n, settings, sandbox, ifname)
                if self._wants_dns(c, extra=n):
                    await self.resolver.serve(c.id, sandbox.path)
            networks[n.name] = settings
            self.store.save(c)
            self._refresh_hosts(c)
        await self._apply_nft()
        if c.state.running:
            self._publish(n, "connect", c.id)

    async def disconnect(self, ref: str, container_ref: str, force: bool = False) -> None:
        c = self.store.get(container_ref)
        n = self.find(ref)
        async with self._container_lock(c):
            key = self._network_key(c, n) if n is not None else (ref if ref in (
                c.network_settings.get("Networks") or {}) and force else None)
            if n is None and key is None:
                raise NotFound(f"network {ref} not found")
            if key is None:
                raise Forbidden(f"container {c.id} is not connected to network {n.name}")
            if n is not None:
                self._check_switchable(network_mode(c.host_config), n)
                e = self.records.endpoints.get((n.id, c.id))
                if e is not None:
                    await self._leave(e)
            del c.network_settings["Networks"][key]
            self._fill_top(c)
            self.store.save(c)
            self._refresh_hosts(c)
        await self._apply_nft()
        if n is not None:
            self._publish(n, "disconnect", c.id)

    def _refresh_hosts(self, c) -> None:
        containers = getattr(self.daemon, "containers", None)
        if containers is not None and c.state.running:
            try:
                containers.refresh_hosts(c)
            except OSError as e:  # the endpoint is made; a stale hosts line is no reason to undo it
                log.warning("rewriting /etc/hosts of %s: %s", c.id[:12], e)

    def _container_lock(self, c):
        """The containers component's per-container lock (start/stop don't race a connect)."""
        containers = getattr(self.daemon, "containers", None)
        return containers.lock(c.id) if containers is not None else contextlib.nullcontext()

    def _network_key(self, c, n: Network) -> str | None:
        """The key of `n` in c's Networks (by name, or by id as dockerd also accepts)."""
        for key, settings in (c.network_settings.get("Networks") or {}).items():
            if key in (n.name, n.id) or (settings or {}).get("NetworkID") == n.id:
                return key
        return None

    @staticmethod
    def _check_switchable(mode: str, n: Network) -> None:
        if mode.startswith("container:"):
            raise Conflict("container sharing network namespace with another container or host cannot be "
                           "connected to any other network")
        if mode == "host" or n.driver == "host":
            raise Conflict("container cannot be disconnected from host network or connected to host network")
        if mode == "none" or n.driver == "null":
            raise Conflict("container cannot be disconnected from none network or connected to none network")

    def _check_endpoint_config(self, name: str, n: Network | None, config: dict) -> None:
        """dockerd's checks of one EndpointsConfig entry (`n` None: not created yet)."""
        if not isinstance(config, dict):
            raise InvalidArgument(f"invalid EndpointsConfig[{name!r}]: want a JSON object")
        predefined = name in PREDEFINED or (n is not None and n.predefined)
        ip = _static_ip(config)
        if ip:
            try:
                address = ipaddress.IPv4Address(ip)
            except ValueError:
                raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
            if predefined:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            if n is not None and not n.subnet_configured:
                raise InvalidArgument("user specified IP address is supported only when connecting to "
                                      "networks with user configured subnets")
            if n is not None and address not in ipaddress.ip_network(n.subnet):
                raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {ip}")
        if ((config.get("IPAMConfig") or {}).get("IPv6Address") or "").strip():
            raise Unsupported("IPv6 networks are not supported")
        if config.get("Aliases") and predefined:
            raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")

    # -- container hooks ---------------------------------------------------------------------------

    def validate_create(self, host_config: dict, networking_config: dict | None) -> None:
        """dockerd's create-time checks; networks not created yet are not an error (they are
        resolved when the container starts)."""
        mode = network_mode(host_config)
        endpoints = (networking_config or {}).get("EndpointsConfig") or {}
        if not isinstance(endpoints, dict):
            raise InvalidArgument("invalid NetworkingConfig.EndpointsConfig: want a JSON object")
        for name, config in endpoints.items():
            name = mode if name == "default" else name
            # The CLI sends an entry for the mode itself ("container:x", "host") too.
            if mode.startswith("container:") and name != mode:
                raise InvalidArgument("conflicting options: networking config and container network mode")
            if name.startswith("container:"):
                continue
            self._check_endpoint_config(name, self.find(name), config or {})
        if _sandboxed(mode) and mode not in ("none",):
            portmap.requested_bindings(None, host_config.get("PortBindings"), False)

    def initial_settings(self, host_config: dict, networking_config: dict | None) -> dict:
        """The NetworkSettings of a new container: its NetworkMode's network first, then the
        other EndpointsConfig entries, with their user configuration."""
        mode = network_mode(host_config)
        endpoints = {(mode if k == "default" else k): v or {}
                     for k, v in ((networking_config or {}).get("EndpointsConfig") or {}).items()}
        networks = {}
        if not mode.startswith("container:"):
            networks[mode] = endpoint_settings(endpoints.pop(mode, None))
            for name, config in endpoints.items():
                networks[name] = endpoint_settings(config)
        return {**_RUNTIME_TOP, "Ports": {}, "Networks": networks}

    async def attach(self, c) -> str | None:
        """At start, before the spec is built: the netns path for the spec, or None (host and
        container: modes). Fills c.network_settings in place; the caller saves c. On failure
        nothing is left and the error is raised."""
        mode = network_mode(c.host_config)
        if not _sandboxed(mode):
            if mode == "host":
                host = self.records.by_name("host")
                settings = c.network_settings.setdefault("Networks", {}).setdefault("host", endpoint_settings())
                settings["NetworkID"] = host.id if host else ""
            return None
        if c.id in self.records.sandboxes or self.records.endpoints_of_container(c.id):
            await self._teardown(c.id, publish=False)  # a previous run's, never detached
        networks = c.network_settings.setdefault("Networks", {})
        if not networks and mode != "none":
            networks[mode] = endpoint_settings()
        # Resolve every network before anything is made (dockerd: "network x not found" at start).
        resolved = []
        for key, settings in networks.items():
            n = self.find(key) or self.find((settings or {}).get("NetworkID") or "")
            if n is None:
                raise NotFound(f"network {key} not found")
            resolved.append((key, n))
        try:
            sandbox = await self._make_sandbox(c.id)
            joined = []
            for i, (key, n) in enumerate((k, n) for k, n in resolved if n.is_bridge):
                settings = networks[key]
                settings.update(_RUNTIME_ENDPOINT)
                await self._join(c, n, settings, sandbox, f"eth{i}")
                joined.append(n)
            for key, n in resolved:
                networks[key]["NetworkID"] = n.id
            if not any(n.is_bridge for _, n in resolved):
                await asyncio.to_thread(netlink.loopback_up, sandbox.path)
            c.network_settings["SandboxID"] = sandbox.sandbox_id
            c.network_settings["SandboxKey"] = sandbox.path
            self._publish_ports(c, joined)
            if self._wants_dns(c):
                await self.resolver.serve(c.id, sandbox.path)
            self._fill_top(c)
        except BaseException:
            await self._teardown(c.id, publish=False)
            self._clear(c)
            raise
        await self._apply_nft()
        for n in joined:
            self._publish(n, "connect", c.id)
        return sandbox.path

    async def detach(self, c) -> None:
        """At exit, failed start or removal: everything attach made is undone; IPs are released
        (a static one stays in IPAMConfig and is asked for again at the next start). Idempotent."""
        await self._teardown(c.id, publish=True)
        self._clear(c)
        await self._apply_nft()

    def hosts_entries(self, c) -> list[tuple[str, str]]:
        """(address, names) lines of c's own /etc/hosts entries: one per endpoint, eth0 first."""
        hostname = c.config.get("Hostname") or c.id[:12]
        domain = c.config.get("Domainname") or ""
        names = f"{hostname}.{domain} {hostname}" if domain else hostname
        return [(e.ip, names) for e in self.records.endpoints_of_container(c.id)]

    def uses_embedded_dns(self, c) -> bool:
        """Docker's rule: a container on a user-defined network resolves through 127.0.0.11."""
        return self._wants_dns(c)

    def gateway_of(self, c) -> str | None:
        """host-gateway for --add-host: the default bridge's gateway, as dockerd."""
        n = self.records.by_name("bridge")
        return n.gateway if n is not None else None

    def rename_container(self, c, old_name: str) -> None:
        """DNSNames follow a rename (lookups read the store, so they already do); caller saves c."""
        for settings in (c.network_settings.get("Networks") or {}).values():
            names = (settings or {}).get("DNSNames")
            if names:
                settings["DNSNames"] = [c.name if x == old_name else x for x in names]

    def ports_of(self, c) -> list:
        """The container's reserved bindings (for `docker ps` Ports and the port filters)."""
        return list(self._bindings.get(c.id, ()))

    # -- sandboxes and endpoints ---------------------------------------------------------------------

    async def _make_sandbox(self, cid: str) -> Sandbox:
        sid = _new_id()
        sandbox = Sandbox(container_id=cid, sandbox_id=sid, path=os.path.join(self.netns_dir, sid[:12]))
        self.records.put_sandbox(sandbox)  # first: a crash leaves a file a record names
        try:
            await asyncio.to_thread(netns.create, sandbox.path)
        except BaseException:
            self.records.delete_sandbox(cid)
            raise
        return sandbox

    async def _join(self, c, n: Network, settings: dict, sandbox: Sandbox, ifname: str) -> None:
        """One live endpoint of c on n: address, veth into the sandbox, settings filled."""
        used = {ipaddress.IPv4Address(e.ip) for e in self.records.endpoints_of_network(n.id)}
        requested = _static_ip(settings) or None
        subnet = ipam.subnet_from_config(n.ipam["Config"][0])
        ip = str(ipam.allocate(subnet, used, requested, network=f"{n.name} ({n.id})"))
        mac = settings.get("MacAddress") or (c.config.get("MacAddress") if ifname == "eth0" else "") \
            or netlink.random_mac(ip)
        aliases = list(settings.get("Aliases") or []) if n.user_defined else []
        e = Endpoint(network_id=n.id, container_id=c.id, endpoint_id=_new_id(), ip=ip, mac=mac, ifname=ifname,
                     host_ifname=netlink.host_ifname(), aliases=aliases, sandbox=sandbox.path,
                     static_ip=bool(requested))
        # Recorded before the veth exists (no await in between: the address is ours atomically).
        self.records.add_endpoint(e)
        try:
            await asyncio.to_thread(
                lambda: netlink.add_endpoint(bridge=n.bridge, netns_path=sandbox.path, host_ifname=e.host_ifname,
                                             ifname=ifname, address=f"{ip}/{n.prefix_len}", mac=mac,
                                             gateway=None if n.internal else n.gateway, mtu=n.mtu))
        except BaseException:
            self.records.delete_endpoint(e)
            raise
        settings.update({"NetworkID": n.id, "EndpointID": e.endpoint_id, "Gateway": "" if n.internal else n.gateway,
                         "IPAddress": ip, "IPPrefixLen": n.prefix_len, "MacAddress": mac,
                         "DNSNames": [c.name, c.id[:12], *aliases] if n.user_defined else None})

    async def _leave(self, e: Endpoint) -> None:
        await asyncio.to_thread(netlink.remove_endpoint, e.host_ifname)
        self.records.delete_endpoint(e)

    async def _teardown(self, cid: str, publish: bool) -> None:
        """Every endpoint, the sandbox, the ports and the DNS server of `cid`; errors logged
        (a leftover is found again by the next reconcile)."""
        with contextlib.suppress(DockyardError, OSError):
            await self.resolver.stop(cid)
        self.ports.release_all(self._bindings.pop(cid, ()))
        for e in self.records.endpoints_of_container(cid):
            try:
                await self._leave(e)
            except (DockyardError, OSError) as err:
                log.error("removing endpoint %s of %s: %s", e.host_ifname, cid[:12], err)
                continue
            n = self.records.networks.get(e.network_id)
            if publish and n is not None:
                self._publish(n, "disconnect", cid)
        sandbox = self.records.sandboxes.get(cid)
        if sandbox is not None:
            try:
                await asyncio.to_thread(netns.delete, sandbox.path)
                self.records.delete_sandbox(cid)
            except (DockyardError, OSError) as err:
                log.error("removing network namespace %s: %s", sandbox.path, err)

    def _publish_ports(self, c, joined: list[Network]) -> None:
        """Reserves c's published host ports (DNAT'd to its eth0 address): "port is already
        allocated" fails the start before anything is reachable."""
        exposed = [*(c.config.get("ExposedPorts") or {}), *(c.host_config.get("PortBindings") or {})]
        if not joined:
            c.network_settings["Ports"] = {}
            return
        wanted = portmap.requested_bindings(
            c.config.get("ExposedPorts"), c.host_config.get("PortBindings"),
            bool(c.host_config.get("PublishAllPorts")),
            default_host_ip=joined[0].options.get(OPT_HOST_BINDING) or "0.0.0.0")
        bound = []
        try:
            for b in wanted:
                bound.append(self.ports.reserve(b))
        except BaseException:
            self.ports.release_all(bound)
            raise
        self._bindings[c.id] = bound
        c.network_settings["Ports"] = portmap.ports_view(exposed, bound)

    def _fill_top(self, c) -> None:
        """The deprecated top-level fields: Docker fills them from the default bridge's endpoint only."""
        ns = c.network_settings
        bridge = self.records.by_name("bridge")
        e = self.records.endpoints.get((bridge.id, c.id)) if bridge else None
        if e is None:
            ns.update({k: v for k, v in _RUNTIME_TOP.items()
                       if k in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress")})
            return
        ns.update({"EndpointID": e.endpoint_id, "Gateway": bridge.gateway, "IPAddress": e.ip,
                   "IPPrefixLen": bridge.prefix_len, "MacAddress": e.mac})

    @staticmethod
    def _clear(c) -> None:
        """Runtime fields back to a stopped container's (dockerd clears them when it stops)."""
        ns = c.network_settings
        ns.update({k: (dict(v) if isinstance(v, dict) else v) for k, v in _RUNTIME_TOP.items()})
        for settings in (ns.get("Networks") or {}).values():
            if settings is None:
                continue
            # A MAC we generated (Docker's, from the address) goes; a configured one stays.
            if settings.get("IPAddress") and settings.get("MacAddress") == netlink.random_mac(settings["IPAddress"]):
                settings["MacAddress"] = ""
            settings.update(_RUNTIME_ENDPOINT)

    # -- embedded DNS ------------------------------------------------------------------------------

    def _wants_dns(self, c, extra: Network | None = None) -> bool:
        if not _sandboxed(network_mode(c.host_config)):
            return False
        if extra is not None and extra.user_defined and extra.is_bridge:
            return True
        for key, settings in (c.network_settings.get("Networks") or {}).items():
            n = self.find(key) or self.find((settings or {}).get("NetworkID") or "")
            if n is not None and n.user_defined and n.is_bridge:
                return True
        return False

    def _dns_lookup(self, cid: str, name: str) -> list[str] | None:
        """Containers (by name, short id, network alias) sharing a user-defined network with the asker."""
        name = name.rstrip(".").lower()
        asker = self.store.find(cid)
        found = []
        for mine in self.records.endpoints_of_container(cid):
            n = self.records.networks.get(mine.network_id)
            if n is None or not n.user_defined:
                continue
            wanted = {name, *_linked(asker, n, name)}
            for e in self.records.endpoints_of_network(n.id):
                peer = self.store.find(e.container_id)
                if peer is None:
                    continue
                if wanted & {peer.name.lower(), peer.id[:12]} or name in (a.lower() for a in e.aliases):
                    found.append(e.ip)
        return found or None

    def _dns_reverse(self, cid: str, ip: str) -> str | None:
        for mine in self.records.endpoints_of_container(cid):
            n = self.records.networks.get(mine.network_id)
            if n is None or not n.user_defined:
                continue
            for e in self.records.endpoints_of_network(n.id):
                peer = self.store.find(e.container_id)
                if e.ip == ip and peer is not None:
                    return f"{peer.name}.{n.name}"
        return None

    def _dns_upstreams(self, cid: str) -> list[str]:
        """The container's --dns, else the host's; none at all (SERVFAIL) when every network it is
        on is internal: an internal network reaches nothing outside."""
        c = self.store.find(cid)
        nets = [self.records.networks.get(e.network_id) for e in self.records.endpoints_of_container(cid)]
        if nets and all(n is not None and n.internal for n in nets):
            return []
        return hostfiles.upstream_servers(c.host_config if c else {})


def _linked(asker, n: Network, alias: str) -> list[str]:
    """The container names the asker's endpoint on `n` links under `alias` (EndpointSettings
    Links "name:alias": a name only that container resolves, as dockerd's embedded DNS)."""
    if asker is None:
        return []
    settings = (asker.network_settings.get("Networks") or {}).get(n.name) or {}
    out = []
    for link in settings.get("Links") or ():
        target, _, link_alias = link.partition(":")
        if (link_alias or target).lower() == alias:
            out.append(target.lstrip("/").lower())
    return out


def _label_expr(labels: dict, expr: str) -> bool:
    key, eq, value = expr.partition("=")
    return key in labels and (not eq or labels[key] == value)
