"""NAT and filtering for bridge networks in one nftables table of our own (family `ip`).

The engine describes what it wants (bridges, published ports) as a `Ruleset`; `render` turns that
into one `nft -f -` script which creates the table if missing, deletes it and defines it again,
handed to nft's own library (linux/libnftables.py: no process per change). nft
runs a script as a single transaction, so the table is replaced atomically: no window without rules,
no rule left over from an earlier state, and reconciling after a crash is just `apply` again.
Nothing here touches another table, a chain we did not make or a policy: the host's firewall stays
as it is, and several daemons (each with its own table) can share one host.

The model is Docker's (moby's nftables bridge driver, with the userland proxy disabled because we
have none), in our own layout:

- Published ports are DNATed in nat prerouting (traffic from elsewhere) and nat output (traffic from
  the host itself), only for local destination addresses. A port published on a loopback address is
  DNATed in output only: it is reachable from the host and nowhere else (moby#45610 was the bug of
  a 127.0.0.1 port reachable from the LAN).
- Reaching a container from the host's 127.0.0.1 needs `route_localnet` on the bridge (the engine
  sets it) and masquerading of 127.0.0.0/8 sources leaving through the bridge. Because
  `route_localnet` would also let a container address the host's own loopback services through its
  gateway (the CVE-2020-8558 shape), raw prerouting drops anything from our bridges to 127.0.0.0/8,
  and anything from a non-loopback interface to a port published on a loopback address.
- Containers reach the outside masqueraded (unless the network is internal or masquerading is off).
- Forwarding into a bridge is allowed for replies, for traffic from the same bridge (unless
  icc is off) and for DNATed traffic (published ports); everything else, including traffic from
  another of our bridges, is dropped. An internal bridge exchanges nothing with anything but itself.
  With br_netfilter, traffic between two ports of one bridge is seen here with iif = oif = bridge.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from dockyard.errors import InvalidArgument, SystemFailure, Unsupported
from dockyard.linux import libnftables


_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
# Linux interface names may hold almost anything; ours are kept to what nft takes unquoted inside
# chain names (bridge names are part of the per-bridge chain names).
_BRIDGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


@dataclass(frozen=True)
class BridgeNet:
    """One bridge network: its Linux bridge and IPv4 subnet ("172.18.0.0/16")."""
    bridge: str
    subnet: str
    icc: bool = True
    internal: bool = False
    masquerade: bool = True


@dataclass(frozen=True)
class Dnat:
    """One published port: host_ip:host_port/proto → container_ip:container_port on `bridge`.
    host_ip "0.0.0.0" means any local address. Docker publishes nothing on internal networks
    (moby#36174); the engine should not ask (only the host's own loopback would get through)."""
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    bridge: str


@dataclass(frozen=True)
class Ruleset:
    """The whole desired state of the table named `table`."""
    table: str
    bridges: tuple[BridgeNet, ...] = ()
    dnats: tuple[Dnat, ...] = ()


def render(rs: Ruleset) -> str:
    """The `nft -f` script that replaces table `rs.table` with the rules for `rs` (pure)."""
    _validate(rs)
    t = rs.table
    bridges = rs.bridges
    any_or_host = [d for d in rs.dnats if not _is_loopback(d.host_ip)]
    loopback = [d for d in rs.dnats if _is_loopback(d.host_ip)]
    internal = [b for b in bridges if b.internal]

    out = [
        # Make sure the table exists so the delete cannot fail, then define it from scratch: one
        # transaction, so the old table stays in force until the new one is complete.
        f"table ip {t} {{}}",
        f"delete table ip {t}",
        f"table ip {t} {{",
        '\tcomment "dockyard: generated and replaced as a whole; changes made here are lost"',
    ]

    def chain(name: str, rules: list[str], hook: str | None = None) -> None:
        out.append("")
        out.append(f"\tchain {name} {{")
        if hook:
            out.append(f"\t\t{hook}")
        out.extend(f"\t\t{r}" for r in rules)
        out.append("\t}")

    raw = []
    if bridges:
        raw.append(f"iifname {_set(b.bridge for b in bridges)} ip daddr 127.0.0.0/8 counter drop "
                   'comment "no host loopback from containers"')
    for d in loopback:
        raw.append(f'iifname != "lo" ip daddr {d.host_ip} {d.proto} dport {d.host_port} counter drop '
                   'comment "loopback port from remote"')
    chain("raw-prerouting", raw, "type filter hook prerouting priority raw; policy accept;")

    chain("nat-prerouting", ["fib daddr type local jump published"],
          "type nat hook prerouting priority dstnat; policy accept;")
    chain("nat-output", ["ip daddr 127.0.0.0/8 jump published-loopback",
                         "fib daddr type local jump published"],
          "type nat hook output priority -100; policy accept;")
    chain("published", [_dnat_rule(d) for d in any_or_host])
    chain("published-loopback", [_dnat_rule(d) for d in loopback])

    post = []
    for b in bridges:
        if b.masquerade and not b.internal:
            post.append(f'oifname != "{b.bridge}" ip saddr {b.subnet} counter masquerade')
        # The host's own loopback clients of published ports: replies must come back to an
        # address the container can route to.
        post.append(f'oifname "{b.bridge}" ip saddr 127.0.0.0/8 counter masquerade')
    for d in rs.dnats:
        # A container reaching its own published port: without SNAT the reply would stay inside it.
        post.append(f'oifname "{d.bridge}" ip saddr {d.container_ip} ip daddr {d.container_ip} '
                    f'{d.proto} dport {d.container_port} counter masquerade')
    chain("nat-postrouting", post, "type nat hook postrouting priority srcnat; policy accept;")

    fwd = []
    # Egress of internal bridges first: DNATed traffic from an internal bridge would otherwise be
    # accepted by the destination bridge's rules.
    if internal:
        fwd.append(f"iifname {_vmap((b.bridge, f'forward-out-{b.bridge}') for b in internal)}")
    if bridges:
        fwd.append(f"oifname {_vmap((b.bridge, f'forward-in-{b.bridge}') for b in bridges)}")
    chain("forward", fwd, "type filter hook forward priority filter; policy accept;")
    for b in bridges:
        rules = ["ct state established,related accept"]
        if b.internal:
            rules.append(f'iifname != "{b.bridge}" counter drop comment "internal network"')
        rules.append(f'iifname "{b.bridge}" accept' if b.icc
                     else f'iifname "{b.bridge}" counter drop comment "icc disabled"')
        if not b.internal:
            rules.append('ct status dnat accept comment "published ports"')
            rules.append('counter drop comment "isolation"')
        chain(f"forward-in-{b.bridge}", rules)
    for b in internal:
        chain(f"forward-out-{b.bridge}", [f'oifname != "{b.bridge}" counter drop comment "internal network"'])

    out.append("}")
    return "\n".join(out) + "\n"


def apply(rs: Ruleset) -> None:
    """Replace our table with the rules for `rs`, atomically."""
    _nft(render(rs), f"applying nftables table {rs.table}")


def delete(table: str) -> None:
    """Remove our table; a missing table is fine (created then deleted in one transaction)."""
    _check_table(table)
    _nft(f"table ip {table} {{}}\ndelete table ip {table}\n", f"deleting nftables table {table}")


def exists(table: str) -> bool:
    _check_table(table)
    listing = _nft("list tables ip", "listing nftables tables")
    return f"table ip {table}" in listing.splitlines()


def available() -> str | None:
    """Why the nftables rules cannot be used on this machine, or None when they can. Checks the
    library, our privileges and the kernel's support for every expression we use (a dry run
    sends a sample table to the kernel, which validates it and commits nothing)."""
    if not libnftables.available():
        return f"nftables ({libnftables.LIBRARY}) is not installed"
    probe = Ruleset("dockyard_probe", (BridgeNet("dyprobe0", "10.255.255.0/24"),
                                       BridgeNet("dyprobe1", "10.255.254.0/24", icc=False, internal=True)),
                    (Dnat("tcp", "127.0.0.1", 1, "10.255.255.2", 1, "dyprobe0"),
                     Dnat("udp", "0.0.0.0", 1, "10.255.255.2", 1, "dyprobe0")))
    try:
        _nft(render(probe), "checking nftables support", dry_run=True)
    except (SystemFailure, Unsupported) as e:
        return str(e)
    return None


def _dnat_rule(d: Dnat) -> str:
    match = "" if d.host_ip == "0.0.0.0" else f"ip daddr {d.host_ip} "
    return f"{match}{d.proto} dport {d.host_port} counter dnat to {d.container_ip}:{d.container_port}"


def _set(names) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in names) + " }"


def _vmap(pairs) -> str:
    return "vmap { " + ", ".join(f'"{name}" : jump {target}' for name, target in pairs) + " }"


def _is_loopback(ip: str) -> bool:
    return ipaddress.IPv4Address(ip) in _LOOPBACK


def _check_table(table: str) -> None:
    if not _TABLE_NAME.fullmatch(table):
        raise InvalidArgument(f"invalid nftables table name {table!r}")


def _validate(rs: Ruleset) -> None:
    """Everything interpolated into the script is checked here, so nothing can inject nft syntax."""
    _check_table(rs.table)
    names = set()
    for b in rs.bridges:
        if not _BRIDGE_NAME.fullmatch(b.bridge):
            raise InvalidArgument(f"invalid bridge name {b.bridge!r}")
        if b.bridge in names:
            raise InvalidArgument(f"bridge {b.bridge} is listed twice")
        names.add(b.bridge)
        try:
            net = ipaddress.IPv4Network(b.subnet)
        except ValueError:
            raise InvalidArgument(f"invalid subnet {b.subnet!r} for bridge {b.bridge}") from None
        if str(net) != b.subnet:
            raise InvalidArgument(f"subnet {b.subnet!r} for bridge {b.bridge} is not in canonical form")
    for d in rs.dnats:
        if d.proto not in ("tcp", "udp"):
            raise InvalidArgument(f"unsupported protocol {d.proto!r} for a published port")
        for ip in (d.host_ip, d.container_ip):
            try:
                if str(ipaddress.IPv4Address(ip)) != ip:
                    raise ValueError
            except ValueError:
                raise InvalidArgument(f"invalid IPv4 address {ip!r} for a published port") from None
        for port in (d.host_port, d.container_port):
            if type(port) is not int or not 1 <= port <= 65535:
                raise InvalidArgument(f"invalid port {port!r} for a published port")
        if d.bridge not in names:
            raise InvalidArgument(f"published port {d.host_ip}:{d.host_port}/{d.proto} is on bridge "
                                  f"{d.bridge!r}, which is not in the ruleset")


def _nft(commands: str, doing: str, dry_run: bool = False) -> str:
    """nft `commands` through libnftables (in-process: no `nft` process per change)."""
    try:
        return libnftables.run(commands, dry_run=dry_run)
    except OSError:
        raise Unsupported(f"{doing}: nftables ({libnftables.LIBRARY}) is not installed") from None
    except libnftables.NftError as e:
        # nft repeats the offending line with ^^^ markers; the "Error:" lines carry the reason.
        text = str(e)
        errors = [line.strip() for line in text.splitlines() if "Error:" in line]
        raise SystemFailure(f"{doing}: nft: {'; '.join(errors) or text}") from None