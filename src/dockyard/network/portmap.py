"""Published ports (`-p`, `-P`): parse a container's port keys and `HostConfig.PortBindings`,
hold the host ports, and render them as `docker inspect` and `docker ps` show them.

A published port is held by a socket bound (not listening) to the host address and port, as
dockerd does since v28, so "port is already allocated" is decided by the kernel against every
program and container on the host, and a port stays ours until released even if nothing listens.
No SO_REUSEADDR: with it, another program that also sets SO_REUSEADDR could bind and listen on the
same address while ours only binds; without it any other bind of an overlapping address fails
(0.0.0.0 vs 127.0.0.1 included), whatever its options. The price: a host port with a TCP
connection still in TIME_WAIT cannot be reserved until that ends (a minute at most). Traffic never
reaches these sockets: nftables DNATs it to the container before the socket lookup.

Host ports given as 0 come from the kernel's ephemeral range (ip_local_port_range), handed out
round-robin as Docker's port allocator does (32768, 32769, … then wrapping), skipping ports
something else holds.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from dockyard.errors import Conflict, InvalidArgument, SystemFailure, Unsupported

PROTOCOLS = ("tcp", "udp")
# Docker's fallback when ip_local_port_range cannot be read.
DEFAULT_RANGE = (49153, 65535)


@dataclass(frozen=True, order=True)
class PortSpec:
    """A container port and its protocol: the "80/tcp" keys of ExposedPorts and PortBindings."""
    port: int
    proto: str

    def __str__(self) -> str:
        return f"{self.port}/{self.proto}"


@dataclass(frozen=True)
class Binding:
    """One published port. `host_port` 0 asks for any free port; `host_port_end` set asks for the
    first free port of host_port..host_port_end. `reserve` returns it with a concrete host_port
    (and host_port_end 0). `host_ip` is always an IPv4 address ("0.0.0.0": every address)."""
    container_port: int
    proto: str
    host_ip: str
    host_port: int
    host_port_end: int = 0

    @property
    def spec(self) -> PortSpec:
        return PortSpec(self.container_port, self.proto)


def _spec_error(text: str) -> InvalidArgument:
    quoted = json.dumps(text, ensure_ascii=False)  # what Go's %q prints for these strings
    return InvalidArgument(f"invalid port specification: {quoted}")


def _port_number(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    number = int(text)
    return number if 1 <= number <= 65535 else None


def parse_port_key(key: str) -> PortSpec:
    """"80", "80/tcp", "53/udp" → PortSpec; "/tcp" is the default. SCTP is Unsupported."""
    if not isinstance(key, str):
        raise _spec_error(str(key))
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    number = _port_number(port)
    if number is None:
        raise _spec_error(port)
    if proto == "sctp":
        raise Unsupported("SCTP port mappings are not supported")
    if proto not in PROTOCOLS:
        raise _spec_error(key)
    return PortSpec(number, proto)


def _host_ip(text: str, default: str) -> str:
    if not text:
        return default
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid IP address: {text}") from None
    if address.version == 6:
        raise Unsupported("IPv6 port bindings are not supported")
    return str(address)


def _host_ports(text: str) -> tuple[int, int]:
    """HostPort: "" or "0" → (0, 0), any port; "8080" → (8080, 0);
    "8000-8010" → (8000, 8010)."""
    if text in ("", "0"):
        return 0, 0
    first, dash, last = text.partition("-")
    start = _port_number(first)
    end = _port_number(last) if dash else start
    if start is None or end is None or end < start:
        raise _spec_error(text)
    return start, (end if end != start else 0)


def requested_bindings(exposed_ports: Mapping | Iterable | None, port_bindings: Mapping | None,
                       publish_all: bool, *, default_host_ip: str = "0.0.0.0") -> list[Binding]:
    """The bindings a container asks for, validated, ordered by container port (then as given):
    every `PortBindings` entry, plus, with `PublishAllPorts`, any port for each exposed port
    that has none. `default_host_ip` stands for an empty HostIp (a network's
    com.docker.network.bridge.host_binding_ipv4)."""
    default_host_ip = _host_ip(default_host_ip, "0.0.0.0")
    if port_bindings is None:
        port_bindings = {}
    if not isinstance(port_bindings, Mapping):
        raise InvalidArgument("invalid PortBindings: want an object")
    wanted: dict[PortSpec, list[Binding]] = {}
    for key, entries in port_bindings.items():
        spec = parse_port_key(key)
        if entries is None:
            entries = []
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise InvalidArgument(f"invalid PortBindings for {key}: want a list of objects")
        found = wanted.setdefault(spec, [])
        for entry in entries:
            host_ip, host_port = entry.get("HostIp") or "", entry.get("HostPort") or ""
            if not isinstance(host_ip, str) or not isinstance(host_port, str):
                raise InvalidArgument(
                    f"invalid PortBindings for {key}: HostIp and HostPort are strings")
            start, end = _host_ports(host_port)
            host_ip = _host_ip(host_ip, default_host_ip)
            found.append(Binding(spec.port, spec.proto, host_ip, start, end))
    if publish_all:
        for key in exposed_ports or ():
            spec = parse_port_key(key)
            if not wanted.get(spec):
                wanted[spec] = [Binding(spec.port, spec.proto, default_host_ip, 0)]
    return [binding for spec in sorted(wanted) for binding in wanted[spec]]


def local_port_range() -> tuple[int, int]:
    """The kernel's ephemeral port range, where ports published as 0 come from."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return DEFAULT_RANGE
    return (low, high) if 0 < low <= high <= 65535 else DEFAULT_RANGE


class PortReservations:
    """The host ports this engine holds, one bound socket each. Thread-safe; sockets are
    close-on-exec, so forked runtimes and containers do not inherit them."""

    def __init__(self, port_range: tuple[int, int] | None = None):
        self._range = port_range or local_port_range()
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str, int], socket.socket] = {}  # (proto, host_ip, port)
        # Round-robin cursor per (proto, host_ip, range), as Docker's allocator keeps one.
        self._last: dict[tuple[str, str, int, int], int] = {}

    def reserve(self, binding: Binding) -> Binding:
        """Holds the binding's host port and returns the binding with the port it got."""
        if binding.proto not in PROTOCOLS:
            raise _spec_error(str(binding.spec))
        ip = _host_ip(binding.host_ip, "0.0.0.0")
        with self._lock:
            if binding.host_port and not binding.host_port_end:
                port = binding.host_port
                if not self._bind(binding.proto, ip, port):
                    raise Conflict(f"Bind for {ip}:{port} failed: port is already allocated")
                return replace(binding, host_ip=ip, host_port_end=0)
            if binding.host_port:
                start, end = binding.host_port, binding.host_port_end
            else:
                start, end = self._range
            port = self._bind_in_range(binding.proto, ip, start, end)
            if port is None:
                if binding.host_port:
                    raise Conflict(f"Bind for {ip}:{start}-{end} failed: port is already allocated")
                raise Conflict("all ports are allocated")  # dockerd's words
            return replace(binding, host_ip=ip, host_port=port, host_port_end=0)

    def _bind_in_range(self, proto: str, ip: str, start: int, end: int) -> int | None:
        cursor = (proto, ip, start, end)
        port = self._last.get(cursor, end)
        for _ in range(end - start + 1):
            port = start if port >= end else port + 1
            if self._bind(proto, ip, port):
                self._last[cursor] = port
                return port
        return None

    def _bind(self, proto: str, ip: str, port: int) -> bool:
        """Binds (proto, ip, port); False if something holds it (us included)."""
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = None
        try:
            sock = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
            sock.bind((ip, port))
        except OSError as e:
            if sock is not None:
                sock.close()
            if e.errno == errno.EADDRINUSE:
                return False
            raise SystemFailure(f"failed to bind host port {ip}:{port}/{proto}: "
                                f"{(e.strerror or str(e)).lower()}") from None
        self._held[(proto, ip, port)] = sock
        return True

    def release(self, binding: Binding) -> None:
        """Lets the binding's host port go; a binding not held is fine."""
        with self._lock:
            key = (binding.proto, binding.host_ip or "0.0.0.0", binding.host_port)
            sock = self._held.pop(key, None)
        if sock is not None:
            sock.close()

    def release_all(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            self.release(binding)

    def close(self) -> None:
        with self._lock:
            held, self._held = self._held, {}
        for sock in held.values():
            sock.close()


def _exposed_specs(exposed: Iterable[str]) -> set[PortSpec]:
    specs = set()
    for key in exposed or ():
        try:
            specs.add(parse_port_key(key))
        except (InvalidArgument, Unsupported):
            pass  # an image's odd ExposedPorts key must not break inspect or ps
    return specs


def ports_view(exposed: Iterable[str], bound: Iterable[Binding]) -> dict:
    """`NetworkSettings.Ports` of a running container: every exposed or published port, with
    its host bindings or None."""
    view: dict[PortSpec, list | None] = {spec: None for spec in _exposed_specs(exposed)}
    for binding in bound:
        entries = view.get(binding.spec) or []
        entries.append({"HostIp": binding.host_ip, "HostPort": str(binding.host_port)})
        view[binding.spec] = entries
    return {str(spec): view[spec] for spec in sorted(view)}


def bindings_from_view(view: Mapping | None) -> list[Binding]:
    """The inverse of `ports_view`: the bindings a running container holds, from its recorded
    NetworkSettings.Ports (to re-reserve them after a daemon restart)."""
    bindings = []
    for key, entries in (view or {}).items():
        spec = parse_port_key(key)
        for entry in entries or ():
            bindings.append(Binding(spec.port, spec.proto, entry["HostIp"], int(entry["HostPort"])))
    return bindings


def summary_ports(exposed: Iterable[str], bound: Iterable[Binding]) -> list[dict]:
    """`Ports` of GET /containers/json: one entry per binding, and one without IP/PublicPort per
    exposed port that has none."""
    bound = list(bound)
    published = {b.spec for b in bound}
    entries = [{"IP": b.host_ip, "PrivatePort": b.container_port, "PublicPort": b.host_port,
                "Type": b.proto} for b in bound]
    entries += [{"PrivatePort": spec.port, "Type": spec.proto}
                for spec in _exposed_specs(exposed) - published]
    return sorted(entries, key=lambda e: (e["PrivatePort"], e["Type"], e.get("PublicPort", 0)))
