"""The engine's network records: <data-root>/network/network.db (SQLite, `dockyard/database.py`)
holding what dockerd keeps in libnetwork's local-kv.db — the networks, each container's sandbox
(its network namespace file) and its endpoints (one per network it is attached to).

IP allocations ARE the endpoint rows: the addresses in use on a network are its endpoints'
addresses, so a restart recovers them by construction and nothing can be allocated twice
(the primary key and a unique (network, ip) index hold even if the engine's locking failed).
Records are cached in memory (the daemon is the only writer) and written through.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from dockyard.database import Database

MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE networks (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            driver TEXT NOT NULL,
            created TEXT NOT NULL,
            scope TEXT NOT NULL DEFAULT 'local',
            internal INTEGER NOT NULL DEFAULT 0,
            attachable INTEGER NOT NULL DEFAULT 0,
            enable_ipv6 INTEGER NOT NULL DEFAULT 0,
            predefined INTEGER NOT NULL DEFAULT 0,
            ipam TEXT NOT NULL CHECK (json_valid(ipam)),
            options TEXT NOT NULL CHECK (json_valid(options)),
            labels TEXT NOT NULL CHECK (json_valid(labels)),
            bridge TEXT NOT NULL DEFAULT '',
            bridge_made INTEGER NOT NULL DEFAULT 0,
            subnet TEXT NOT NULL DEFAULT '',
            gateway TEXT NOT NULL DEFAULT '',
            ip_range TEXT NOT NULL DEFAULT '',
            subnet_configured INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE sandboxes (
            container_id TEXT PRIMARY KEY,
            sandbox_id TEXT NOT NULL,
            path TEXT NOT NULL)""",
        """CREATE TABLE endpoints (
            network_id TEXT NOT NULL REFERENCES networks(id),
            container_id TEXT NOT NULL,
            endpoint_id TEXT NOT NULL,
            ip TEXT NOT NULL,
            mac TEXT NOT NULL,
            ifname TEXT NOT NULL,
            host_ifname TEXT NOT NULL,
            aliases TEXT NOT NULL CHECK (json_valid(aliases)),
            sandbox TEXT NOT NULL,
            static_ip INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (network_id, container_id))""",
        "CREATE UNIQUE INDEX endpoints_ip ON endpoints (network_id, ip)",
    ),
]

_NET_COLUMNS = ("id", "name", "driver", "created", "scope", "internal", "attachable", "enable_ipv6",
                "predefined", "ipam", "options", "labels", "bridge", "bridge_made", "subnet", "gateway",
                "ip_range", "subnet_configured")
_EP_COLUMNS = ("network_id", "container_id", "endpoint_id", "ip", "mac", "ifname", "host_ifname", "aliases",
               "sandbox", "static_ip")

# Docker's option keys for the bridge driver (Network.Options).
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"


@dataclass
class Network:
    id: str
    name: str
    driver: str                     # "bridge", "host", "null"
    created: str                    # RFC 3339 with nanoseconds
    scope: str = "local"
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    predefined: bool = False        # bridge/host/none: made by the daemon, never removed
    ipam: dict = field(default_factory=lambda: {"Driver": "default", "Options": {}, "Config": []})
    options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    bridge: str = ""                # the Linux bridge (bridge driver only)
    bridge_made: bool = False       # we created that link (so we may delete it)
    subnet: str = ""                # "10.1.0.0/24" ("" for host/null)
    gateway: str = ""
    ip_range: str = ""
    subnet_configured: bool = False  # the user gave the subnet (static IPs allowed, as in Docker)

    @property
    def is_bridge(self) -> bool:
        return self.driver == "bridge"

    @property
    def user_defined(self) -> bool:
        """Docker's "user-defined network": embedded DNS, aliases, static IPs."""
        return not self.predefined

    @property
    def prefix_len(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen if self.subnet else 0

    def flag(self, key: str, default: bool) -> bool:
        value = str(self.options.get(key, "")).lower()
        return default if value == "" else value in ("1", "true", "t", "yes")

    @property
    def mtu(self) -> int:
        try:
            return int(self.options.get(OPT_MTU) or 1500)
        except ValueError:
            return 1500

    def _row(self) -> tuple:
        return (self.id, self.name, self.driver, self.created, self.scope, int(self.internal),
                int(self.attachable), int(self.enable_ipv6), int(self.predefined), json.dumps(self.ipam),
                json.dumps(self.options), json.dumps(self.labels), self.bridge, int(self.bridge_made),
                self.subnet, self.gateway, self.ip_range, int(self.subnet_configured))

    @classmethod
    def _from_row(cls, row) -> Network:
        (nid, name, driver, created, scope, internal, attachable, ipv6, predefined, ipam, options, labels,
         bridge, bridge_made, subnet, gateway, ip_range, subnet_configured) = row
        return cls(id=nid, name=name, driver=driver, created=created, scope=scope, internal=bool(internal),
                   attachable=bool(attachable), enable_ipv6=bool(ipv6), predefined=bool(predefined),
                   ipam=json.loads(ipam), options=json.loads(options), labels=json.loads(labels),
                   bridge=bridge, bridge_made=bool(bridge_made), subnet=subnet, gateway=gateway,
                   ip_range=ip_range, subnet_configured=bool(subnet_configured))


@dataclass
class Endpoint:
    network_id: str
    container_id: str
    endpoint_id: str
    ip: str                 # "10.1.0.2" (the prefix length is the network's)
    mac: str
    ifname: str             # inside the container: eth0, eth1…
    host_ifname: str        # the host side of the veth pair
    aliases: list = field(default_factory=list)
    sandbox: str = ""       # the netns path
    static_ip: bool = False

    def _row(self) -> tuple:
        return (self.network_id, self.container_id, self.endpoint_id, self.ip, self.mac, self.ifname,
                self.host_ifname, json.dumps(self.aliases), self.sandbox, int(self.static_ip))

    @classmethod
    def _from_row(cls, row) -> Endpoint:
        nid, cid, eid, ip, mac, ifname, host_ifname, aliases, sandbox, static_ip = row
        return cls(network_id=nid, container_id=cid, endpoint_id=eid, ip=ip, mac=mac, ifname=ifname,
                   host_ifname=host_ifname, aliases=json.loads(aliases), sandbox=sandbox,
                   static_ip=bool(static_ip))


@dataclass(frozen=True)
class Sandbox:
    container_id: str
    sandbox_id: str
    path: str               # the bind-mounted netns file


class NetRecords:
    """network.db and its in-memory cache."""

    def __init__(self, path: str):
        self._db = Database(path, MIGRATIONS)
        self.networks: dict[str, Network] = {}
        self.endpoints: dict[tuple[str, str], Endpoint] = {}   # (network_id, container_id)
        self.sandboxes: dict[str, Sandbox] = {}
        with self._db.transaction() as db:
            for row in db.execute(f"SELECT {', '.join(_NET_COLUMNS)} FROM networks"):
                n = Network._from_row(row)
                self.networks[n.id] = n
            for row in db.execute(f"SELECT {', '.join(_EP_COLUMNS)} FROM endpoints"):
                e = Endpoint._from_row(row)
                self.endpoints[(e.network_id, e.container_id)] = e
            for row in db.execute("SELECT container_id, sandbox_id, path FROM sandboxes"):
                self.sandboxes[row[0]] = Sandbox(*row)

    def close(self) -> None:
        self._db.close()

    # -- networks ----------------------------------------------------------------------------------

    def by_name(self, name: str) -> Network | None:
        return next((n for n in self.networks.values() if n.name == name), None)

    def put_network(self, n: Network) -> None:
        """Inserts or rewrites `n`."""
        with self._db.transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO networks ({', '.join(_NET_COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(_NET_COLUMNS))})", n._row())
        self.networks[n.id] = n

    def delete_network(self, n: Network) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM networks WHERE id = ?", (n.id,))
        self.networks.pop(n.id, None)

    # -- endpoints ---------------------------------------------------------------------------------

    def endpoints_of_network(self, network_id: str) -> list[Endpoint]:
        return [e for (nid, _), e in self.endpoints.items() if nid == network_id]

    def endpoints_of_container(self, container_id: str) -> list[Endpoint]:
        """In interface order (eth0 first)."""
        found = [e for (_, cid), e in self.endpoints.items() if cid == container_id]
        return sorted(found, key=lambda e: int(e.ifname[3:] or 0) if e.ifname[3:].isdigit() else 0)

    def add_endpoint(self, e: Endpoint) -> None:
        """Records an allocation (the caller checked the address is free, under its lock)."""
        with self._db.transaction() as db:
            db.execute(f"INSERT INTO endpoints ({', '.join(_EP_COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(_EP_COLUMNS))})", e._row())
        self.endpoints[(e.network_id, e.container_id)] = e

    def delete_endpoint(self, e: Endpoint) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM endpoints WHERE network_id = ? AND container_id = ?",
                       (e.network_id, e.container_id))
        self.endpoints.pop((e.network_id, e.container_id), None)

    # -- sandboxes ---------------------------------------------------------------------------------

    def put_sandbox(self, s: Sandbox) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT OR REPLACE INTO sandboxes (container_id, sandbox_id, path) VALUES (?, ?, ?)",
                       (s.container_id, s.sandbox_id, s.path))
        self.sandboxes[s.container_id] = s

    def delete_sandbox(self, container_id: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM sandboxes WHERE container_id = ?", (container_id,))
        self.sandboxes.pop(container_id, None)

