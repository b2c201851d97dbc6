"""The per-container /etc/hostname, /etc/hosts and /etc/resolv.conf, as dockerd writes them.

They live in the container's directory (<data-root>/containers/<id>/) and are bind-mounted by
the spec (`dockyard.engine.spec.ContainerPaths`). Until networking lands every container has
either a private, empty network namespace or the host's, so:

- hosts holds the loopback entries and `ExtraHosts` (Docker's layout: libnetwork etchosts);
  "host-gateway" needs a bridge gateway and is refused with a clear message.
- resolv.conf is the host's with loopback nameservers removed (they cannot be reached from
  another network namespace; libnetwork resolvconf.FilterResolvDNS), Google's public servers
  when nothing is left, and `Dns`/`DnsSearch`/`DnsOptions` replacing the matching parts.
  With `NetworkMode=host` the host's file is used unchanged.
"""

from __future__ import annotations

import ipaddress
import os
import re

from dockyard import atomicfile
from dockyard.errors import InvalidArgument, Unsupported

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


def write_all(directory: str, *, hostname: str, domainname: str = "", host_config: dict,
              host_resolv_conf: str = HOST_RESOLV_CONF) -> dict[str, str]:
    """Write the three files into `directory`; returns their paths keyed like ContainerPaths
    ("hostname", "hosts", "resolv_conf")."""
    paths = {"hostname": os.path.join(directory, "hostname"),
             "hosts": os.path.join(directory, "hosts"),
             "resolv_conf": os.path.join(directory, "resolv.conf")}
    network = host_config.get("NetworkMode") or "default"
    _write(paths["hostname"], hostname_file(hostname))
    _write(paths["hosts"], hosts_file(host_config.get("ExtraHosts") or [], network=network,
                                      hostname=hostname, domainname=domainname))
    host_text = _read(host_resolv_conf)
    if network != "host" and _parse_resolv(host_text)[0] == ["127.0.0.53"]:
        host_text = _read(RESOLVED_RESOLV_CONF) or host_text
    _write(paths["resolv_conf"], resolv_conf(
        host_text, dns=host_config.get("Dns") or [], search=host_config.get("DnsSearch") or [],
        options=host_config.get("DnsOptions") or [], network=network))
    return paths


def hostname_file(hostname: str) -> str:
    return hostname + "\n"


def hosts_file(extra_hosts: list, *, network: str = "none", hostname: str = "",
               domainname: str = "") -> str:
    """/etc/hosts: Docker's loopback block, then each "name:ip" (or "name=ip") of ExtraHosts.
    With NetworkMode=host the container's hostname is the host's and maps to 127.0.1.1 no
    more than on the host, so nothing is added for it; in a private empty network namespace
    there is no address to give it either (Docker writes none for --network none)."""
    lines = [f"{ip}\t{names}" for ip, names in HOSTS_DEFAULT]
    for entry in extra_hosts:
        name, ip = parse_extra_host(entry)
        lines.append(f"{ip}\t{name}")
    return "\n".join(lines) + "\n"


def parse_extra_host(entry: str) -> tuple[str, str]:
    """"name:ip" or "name=ip" (API ≥ 1.44 CLIs send either; IPv6 addresses contain colons so
    the first separator splits; "[::1]" brackets are allowed)."""
    if not isinstance(entry, str):
        raise InvalidArgument(f"invalid extra host: {entry!r}")
    sep = "=" if "=" in entry else ":"
    name, found, ip = entry.partition(sep)
    if not found or not name or not ip:
        raise InvalidArgument(f"bad format for add-host: \"{entry}\"")
    if ip == "host-gateway":
        raise Unsupported("add-host host-gateway needs a bridge network, and networking is not "
                          "available yet")
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
                network: str = "none") -> str:
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
