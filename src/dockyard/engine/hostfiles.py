"""The per-container /etc/hostname, /etc/hosts and /etc/resolv.conf, as dockerd writes them.

They live in the container's directory (<data-root>/containers/<id>/) and are bind-mounted by
the spec (`dockyard.engine.spec.ContainerPaths`); they are written at each start, once the
container's network endpoints have their addresses:

- hosts holds the loopback entries, `ExtraHosts` ("host-gateway" is the default bridge's
  gateway) and one line per address of the container's own ("<ip>\t<hostname>"; libnetwork
  etchosts). A later connect/disconnect rewrites it in place (the bind mount pins the inode).
- resolv.conf is the host's with loopback nameservers removed (they cannot be reached from
  another network namespace; libnetwork resolvconf.FilterResolvDNS), Google's public servers
  when nothing is left, and `Dns`/`DnsSearch`/`DnsOptions` replacing the matching parts. On a
  user-defined network the only nameserver is the embedded DNS server, 127.0.0.11 (it forwards
  to those servers), with "ndots:0" as dockerd writes it. With `NetworkMode=host` the host's
  file is used unchanged.
"""

from __future__ import annotations

import ipaddress
import os
import re

from dockyard import atomicfile
from dockyard.errors import InvalidArgument

HOSTS_DEFAULT = (
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
)
DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")  # libnetwork resolvconf defaultIPv4Dns
HOST_RESOLV_CONF = "/etc/resolv.conf"
# With systemd-resolved the host's resolv.conf names only its stub at 127.0.0.53; the real
# upstream servers are in this file (dockerd reads it in that case too).
RESOLVED_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
EMBEDDED_DNS = "127.0.0.11"


def write_all(directory: str, *, hostname: str, domainname: str = "", host_config: dict,
              host_resolv_conf: str = HOST_RESOLV_CONF, own: list[tuple[str, str]] = (),
              embedded_dns: bool = False, gateway: str | None = None) -> dict[str, str]:
    """Write the three files into `directory`; returns their paths keyed like ContainerPaths
    ("hostname", "hosts", "resolv_conf"). `own`: (address, names) lines of the container's
    endpoints; `embedded_dns`: it is on a user-defined network; `gateway`: what "host-gateway"
    stands for."""
    paths = {"hostname": os.path.join(directory, "hostname"),
             "hosts": os.path.join(directory, "hosts"),
             "resolv_conf": os.path.join(directory, "resolv.conf")}
    network = host_config.get("NetworkMode") or "default"
    _write(paths["hostname"], hostname_file(hostname))
    write_hosts(paths["hosts"], hosts_file(host_config.get("ExtraHosts") or [], own=own, gateway=gateway))
    host_text = host_resolv_text(host_resolv_conf, network)
    _write(paths["resolv_conf"], resolv_conf(
        host_text, dns=host_config.get("Dns") or [], search=host_config.get("DnsSearch") or [],
        options=host_config.get("DnsOptions") or [], network=network, embedded_dns=embedded_dns))
    return paths


def host_resolv_text(path: str = HOST_RESOLV_CONF, network: str = "none") -> str:
    """The host's resolv.conf, or systemd-resolved's upstream file when the host names only its
    stub (which no other network namespace can reach)."""
    text = _read(path)
    if network != "host" and _parse_resolv(text)[0] == ["127.0.0.53"]:
        text = _read(RESOLVED_RESOLV_CONF) or text
    return text


def upstream_servers(host_config: dict, path: str = HOST_RESOLV_CONF) -> list[str]:
    """Where the embedded DNS server forwards a container's other names: its `Dns`, else the
    host's nameservers (the daemon asks from the host's network namespace, so a loopback
    resolver of the host's is reachable too)."""
    return list(host_config.get("Dns") or []) or _parse_resolv(_read(path))[0]


def hostname_file(hostname: str) -> str:
    return hostname + "\n"


def hosts_file(extra_hosts: list, *, own: list[tuple[str, str]] = (), gateway: str | None = None) -> str:
    """/etc/hosts: Docker's loopback block, each "name:ip" (or "name=ip") of ExtraHosts, then the
    container's own addresses. With NetworkMode=host or none there are none of its own (the
    hostname is the host's, or there is no address to give it)."""
    lines = [f"{ip}\t{names}" for ip, names in HOSTS_DEFAULT]
    for entry in extra_hosts:
        name, ip = parse_extra_host(entry, gateway)
        lines.append(f"{ip}\t{name}")
    lines += [f"{ip}\t{names}" for ip, names in own]
    return "\n".join(lines) + "\n"


def write_hosts(path: str, text: str) -> None:
    """Rewrites hosts in place when it exists: a running container's bind mount holds the inode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        _write(path, text)
        return
    with os.fdopen(fd, "w") as f:
        f.truncate(0)
        f.write(text)


def parse_extra_host(entry: str, gateway: str | None = None) -> tuple[str, str]:
    """"name:ip" or "name=ip" (API ≥ 1.44 CLIs send either; IPv6 addresses contain colons so
    the first separator splits; "[::1]" brackets are allowed). "host-gateway" is `gateway`."""
    if not isinstance(entry, str):
        raise InvalidArgument(f"invalid extra host: {entry!r}")
    sep = "=" if "=" in entry else ":"
    name, found, ip = entry.partition(sep)
    if not found or not name or not ip:
        raise InvalidArgument(f"bad format for add-host: \"{entry}\"")
    if ip == "host-gateway":
        if not gateway:
            raise InvalidArgument("unable to derive the IP value for host-gateway: there is no "
                                  "default bridge network")
        ip = gateway
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid IP address in add-host: \"{ip}\"") from None
    if not re.fullmatch(r"[^\s:=]+", name):
        raise InvalidArgument(f"bad format for add-host: \"{entry}\"")
    return name, ip


def resolv_conf(host_text: str, *, dns: list, search: list, options: list,
                network: str = "none", embedded_dns: bool = False) -> str:
    """The container's resolv.conf from the host's (see the module docstring)."""
    nameservers, searches, opts, others = _parse_resolv(host_text)
    if network != "host":
        nameservers = [ns for ns in nameservers if not _loopback(ns)]
    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"{server} is not an ip address") from None
    if dns:
        nameservers = list(dns)
    if not nameservers and network != "host":
        nameservers = list(DEFAULT_DNS)
    if search:
        # "." alone means "no search domains" (docker run --dns-search .)
        searches = [] if list(search) == ["."] else list(search)
    if options:
        opts = list(options)
    if embedded_dns:
        nameservers = [EMBEDDED_DNS]
        if not any(o.startswith("ndots:") for o in opts):
            opts = [*opts, "ndots:0"]
    lines = list(others)
    lines += [f"nameserver {ns}" for ns in nameservers]
    if searches:
        lines.append("search " + " ".join(searches))
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + "\n"


def _parse_resolv(text: str):
    nameservers, searches, opts, others = [], [], [], []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        key = fields[0]
        if key == "nameserver" and len(fields) > 1:
            nameservers.append(fields[1])
        elif key in ("search", "domain"):
            searches = fields[1:]  # the last search/domain line wins (resolv.conf(5))
        elif key == "options":
            opts += fields[1:]
        else:
            others.append(line.strip())
    return nameservers, searches, opts, others


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _loopback(server: str) -> bool:
    try:
        return ipaddress.ip_address(server.split("%")[0]).is_loopback
    except ValueError:
        return False


def _write(path: str, text: str) -> None:
    # A rename gives a new inode: fine before the container starts (binds are made at start),
    # so these files are written at create and not rewritten under a running container.
    atomicfile.write(path, text.encode(), mode=0o644)
