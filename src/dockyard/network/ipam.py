"""IPv4 address management for bridge networks, as Docker's built-in "default" IPAM driver does it:
validate a network's `IPAM` request, pick a free subnet from the default pools, and hand out
addresses inside a subnet.

Pure and I/O-free: the engine keeps the state (which subnets its networks hold, which addresses
its endpoints hold) and passes it in, so the allocations are recomputed from the endpoint records
after a restart and every rule here is a unit test.

Errors use dockerd's words (moby api/types/network/ipam.go `ValidateIPAM`, libnetwork ipamapi and
defaultipam). dockerd answers 403 for "Pool overlaps…" and "Address already in use"; we have no
403 class, so those are Conflict (409).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from dockyard.errors import Conflict, Forbidden, InvalidArgument, NoSpace, NotFound, Unsupported

# Docker's local-scope default pools (libnetwork ipamutils): 172.17–172.31 as /16s, then
# 192.168.0.0/16 cut into /20s. (base, size of each network cut from it.)
DEFAULT_POOLS: tuple[tuple[str, int], ...] = tuple(
    (f"172.{n}.0.0/16", 16) for n in range(17, 32)) + (("192.168.0.0/16", 20),)

POOL_OVERLAP = "invalid pool request: Pool overlaps with other one on this address space"
NO_MORE_SUBNETS = ("could not find an available, non-overlapping IPv4 address pool among the "
                   "defaults to assign to the network")
ADDRESS_IN_USE = "Address already in use"
NO_ADDRESSES = "no available IPv4 addresses on this network's address pools"


@dataclass(frozen=True)
class Subnet:
    """One IPv4 subnet of a network: addresses are handed out from `ip_range` (or the whole
    subnet), never the gateway, the auxiliary addresses, nor (for prefixes up to /30) the network
    and broadcast addresses."""
    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None
    aux_addresses: tuple[tuple[str, IPv4Address], ...] = ()  # IPAM.Config AuxiliaryAddresses

    def to_config(self) -> dict:
        """The network's `IPAM.Config` entry as `docker network inspect` shows it."""
        entry = {"Subnet": str(self.subnet), "Gateway": str(self.gateway)}
        if self.ip_range is not None:
            entry["IPRange"] = str(self.ip_range)
        if self.aux_addresses:
            entry["AuxiliaryAddresses"] = {name: str(ip) for name, ip in self.aux_addresses}
        return entry

    def reserved(self) -> set[IPv4Address]:
        """Addresses no endpoint may have."""
        return {self.gateway, *(ip for _, ip in self.aux_addresses)} | _edges(self.subnet)


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # what Go's %q prints for the strings that reach us


def parse_ipam(ipam: dict | None) -> list[dict]:
    """Validates a NetworkCreateRequest `IPAM` object and returns its `Config` entries, normalised
    to the keys given (Subnet, and IPRange / Gateway / AuxiliaryAddresses when present).

    Like dockerd, every problem of every entry is reported at once, one a line under
    "invalid network config:". At most one IPv4 subnet per network, and no IPv6."""
    if ipam is None:
        return []
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAM: want an object")
    driver = ipam.get("Driver") or "default"
    if not isinstance(driver, str):
        raise InvalidArgument("invalid IPAM driver: want a string")
    if driver == "null":
        raise Unsupported('IPAM driver "null" is not supported for bridge networks')
    if driver != "default":
        raise NotFound(f"plugin {_go_quote(driver)} not found")  # dockerd: no such IPAM plugin
    options = ipam.get("Options")
    if options is not None and not isinstance(options, dict):
        raise InvalidArgument("invalid IPAM options: want an object")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise InvalidArgument("invalid IPAM config: want a list of objects")

    errors: list[str] = []
    entries: list[dict] = []
    for config in configs:
        entry = _validate_entry(config, errors)
        if entry is not None:
            entries.append(entry)
    if errors:
        raise InvalidArgument("invalid network config:\n" + "\n".join(errors))
    if len(entries) > 1:
        raise Unsupported("only one IPv4 subnet per network is supported")
    return entries


def _field(config: dict, key: str, errors: list[str]) -> str:
    value = config.get(key) or ""
    if not isinstance(value, str):
        errors.append(f"invalid {key}: want a string")
        return ""
    return value


def _validate_entry(config: dict, errors: list[str]) -> dict | None:
    text = _field(config, "Subnet", errors)
    ip_range = _field(config, "IPRange", errors)
    gateway = _field(config, "Gateway", errors)
    aux = config.get("AuxiliaryAddresses") or {}
    if not isinstance(aux, dict) or not all(isinstance(v, str) for v in aux.values()):
        errors.append("invalid AuxiliaryAddresses: want an object of strings")
        aux = {}
    subnet = _parse_prefix(text)
    if subnet is None:
        errors.append(f"invalid subnet {text}: invalid CIDR block notation")
        return None
    if subnet.version == 6:
        raise Unsupported("IPv6 networks are not supported")
    if not _canonical(text, subnet):
        errors.append(f"invalid subnet {text}: it should be {subnet}")

    before = len(errors)
    if ip_range:
        errors.extend(_ip_range_errors(ip_range, subnet))
    if gateway:
        problem = _address_problem(gateway, subnet)
        if problem:
            errors.append(f"invalid gateway {gateway}: {problem}")
    for name, address in aux.items():
        problem = _address_problem(address, subnet)
        if problem:
            errors.append(f"invalid auxiliary address {name}: {problem}")
    if len(errors) > before:
        return None
    entry = {"Subnet": str(subnet)}
    if ip_range:
        entry["IPRange"] = str(_parse_prefix(ip_range))
    if gateway:
        entry["Gateway"] = str(ipaddress.ip_address(gateway))
    if aux:
        entry["AuxiliaryAddresses"] = {k: str(ipaddress.ip_address(v)) for k, v in aux.items()}
    return entry


def _parse_prefix(text: str) -> IPv4Network | ipaddress.IPv6Network | None:
    """"address/length" only, as Go's netip.ParsePrefix (no netmasks, no bare addresses)."""
    address, slash, length = text.partition("/")
    if not slash or not length.isdigit() or not length.isascii():
        return None
    try:
        return ipaddress.ip_network(f"{address}/{int(length)}", strict=False)
    except ValueError:
        return None


def _canonical(text: str, prefix) -> bool:
    """No host bits set: "10.0.0.0/24", not "10.0.0.1/24"."""
    return ipaddress.ip_address(text.partition("/")[0]) == prefix.network_address


def _ip_range_errors(text: str, subnet: IPv4Network) -> list[str]:
    prefix = _parse_prefix(text)
    if prefix is None:
        return [f"invalid ip-range {text}: invalid CIDR block notation"]
    if prefix.version != 4:
        return [f"invalid ip-range {text}: parent subnet is an IPv4 block"]
    errors = []
    if prefix.prefixlen < subnet.prefixlen:
        errors.append(
            f"invalid ip-range {text}: CIDR block is bigger than its parent subnet {subnet}")
    if not _canonical(text, prefix):
        errors.append(f"invalid ip-range {text}: it should be {prefix}")
    if not subnet.overlaps(prefix):
        errors.append(f"invalid ip-range {text}: parent subnet {subnet} doesn't contain ip-range")
    return errors


def _address_problem(text: str, subnet: IPv4Network) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "invalid address"
    if address.version != 4:
        return "parent subnet is an IPv4 block"
    if address not in subnet:
        return f"parent subnet {subnet} doesn't contain this address"
    return None


def subnet_from_config(entry: dict) -> Subnet:
    """A `Subnet` from one entry `parse_ipam` returned (or a stored `to_config()`). Without a
    Gateway, the lowest free address of the IP range (else the subnet) is the gateway, as
    libnetwork requests it from the pool. A gateway or auxiliary address that is the network or
    broadcast address (or, for aux, the gateway) is refused as libnetwork refuses it."""
    subnet = IPv4Network(entry["Subnet"])
    ip_range = IPv4Network(entry["IPRange"]) if entry.get("IPRange") else None
    aux = tuple((name, IPv4Address(ip))
                for name, ip in (entry.get("AuxiliaryAddresses") or {}).items())
    edges = _edges(subnet)
    if entry.get("Gateway"):
        gateway = IPv4Address(entry["Gateway"])
        if gateway in edges:
            raise Conflict(f"failed to allocate gateway ({gateway}): {ADDRESS_IN_USE}")
    else:
        gateway = _lowest_free(_span(subnet, ip_range), edges | {ip for _, ip in aux}, ())
        if gateway is None:
            raise NoSpace(f"failed to allocate gateway: {NO_ADDRESSES}")
    for name, ip in aux:
        if ip in edges or ip == gateway:
            raise Conflict(
                f"failed to allocate secondary ip address ({name}:{ip}): {ADDRESS_IN_USE}")
    return Subnet(subnet, gateway, ip_range, aux)


def _edges(subnet: IPv4Network) -> set[IPv4Address]:
    # RFC 3021: a /31 (and a /32) has no network or broadcast address; libnetwork agrees.
    if subnet.prefixlen <= 30:
        return {subnet.network_address, subnet.broadcast_address}
    return set()


def _lowest_free(span: IPv4Network, taken: Collection[IPv4Address],
                 used: Collection[IPv4Address]) -> IPv4Address | None:
    for value in range(int(span.network_address), int(span.broadcast_address) + 1):
        address = IPv4Address(value)
        if address not in taken and address not in used:
            return address
    return None


def _span(subnet: IPv4Network, ip_range: IPv4Network | None) -> IPv4Network:
    """Where dynamic addresses come from: the IP range, or the subnet."""
    if ip_range is None or ip_range.prefixlen < subnet.prefixlen:
        return subnet  # libnetwork: a range bigger than its subnet means the subnet
    return ip_range


def _pools(pools: Iterable) -> list[tuple[IPv4Network, int]]:
    out = []
    for pool in pools:
        # Either DEFAULT_POOLS pairs or engine.config.AddressPool objects (base, size).
        base, size = (pool.base, pool.size) if hasattr(pool, "base") else pool
        network = ipaddress.ip_network(base, strict=False)
        if network.version == 4:
            out.append((network, int(size)))
    return out


def choose_subnet(pools: Iterable, in_use: Iterable[IPv4Network]) -> IPv4Network:
    """The first `size`-long subnet of the first pool, in order, that overlaps nothing in
    `in_use` (other networks' subnets and host routes: the caller decides)."""
    taken = sorted({n for n in in_use if n.version == 4},
                   key=lambda n: (int(n.network_address), n.prefixlen))
    for base, size in _pools(pools):
        step = 1 << (32 - size)
        start = int(base.network_address)
        end = int(base.broadcast_address)
        while start + step - 1 <= end:
            candidate = IPv4Network((start, size))
            clash = next((n for n in taken if n.overlaps(candidate)), None)
            if clash is None:
                return candidate
            # Skip every candidate the clashing network covers, not one at a time (a /8 pool
            # cut into /24s would otherwise be 65536 steps).
            past = max(int(clash.broadcast_address), start + step - 1) + 1
            start = (past + step - 1) // step * step
    raise InvalidArgument(NO_MORE_SUBNETS)


def check_overlap(subnet: IPv4Network, others: Iterable[IPv4Network]) -> None:
    """A user-given subnet must not overlap another network's (dockerd checks only those, not
    host routes)."""
    if any(other.version == 4 and other.overlaps(subnet) for other in others):
        raise Forbidden(POOL_OVERLAP)


def allocate(subnet: Subnet, used: Collection[IPv4Address], requested: str | None = None, *,
             network: str = "") -> IPv4Address:
    """An address for a new endpoint: `requested` if given and free (anywhere in the subnet, as
    Docker lets static addresses sit outside the IP range), else the lowest free address of the
    IP range (or subnet). `network` ("name (id)") completes dockerd's exhaustion message."""
    taken = subnet.reserved()
    if requested:
        try:
            address = ipaddress.ip_address(requested)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {requested}") from None
        if address.version != 4:
            raise InvalidArgument(f"invalid IPv4 address: {requested}")
        if address not in subnet.subnet:
            raise InvalidArgument(
                f"invalid address {requested}: It does not belong to any of this network's subnets")
        if address in taken or address in used:
            raise Forbidden(ADDRESS_IN_USE)
        return address
    if not isinstance(used, (set, frozenset)):
        used = set(used)  # membership is tested once per candidate address
    address = _lowest_free(_span(subnet.subnet, subnet.ip_range), taken, used)
    if address is None:
        raise NoSpace(NO_ADDRESSES + (f": {network}" if network else ""))
    return address
