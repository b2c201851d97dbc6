"""Legacy container links (`docker run --link name:alias`, HostConfig.Links) on the default bridge.

A link gives the container, at each start, the linked container's address under the alias in
/etc/hosts and its exposed ports and environment as variables (moby daemon/links):

    ALIAS_NAME=/me/alias
    ALIAS_PORT=tcp://172.17.0.2:80            (the lowest exposed port)
    ALIAS_PORT_80_TCP=tcp://172.17.0.2:80     and _ADDR, _PORT, _PROTO for each exposed port
    ALIAS_ENV_FOO=1                           each of the target's Env but HOME and PATH

Links are stored as dockerd stores them, "/target:/me/alias", and the target must be running
when the container starts. User-defined networks have no legacy links: there a link is an
alias their embedded DNS answers (EndpointSettings.Links, engine/networks.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.errors import InvalidArgument


@dataclass(frozen=True)
class Link:
    target: str  # the linked container's name, without "/"
    alias: str

    def stored(self, own_name: str) -> str:
        return f"/{self.target}:/{own_name}/{self.alias}"


def parse(text: str) -> Link:
    """"name:alias", "name" (the alias is the name) or the stored "/name:/me/alias"."""
    if not isinstance(text, str) or not text:
        raise InvalidArgument(f"invalid link: {text!r}")
    target, _, alias = text.partition(":")
    target = target.lstrip("/")
    alias = alias.rsplit("/", 1)[-1] if alias else target
    if not target or not alias or "/" in target:
        raise InvalidArgument(f"invalid link: {text!r}")
    return Link(target, alias)


def parse_all(links: list | None) -> list[Link]:
    if links is None:
        return []
    if not isinstance(links, list):
        raise InvalidArgument("invalid HostConfig.Links: want a list of strings")
    return [parse(x) for x in links]


def env(link: Link, own_name: str, ip: str, target_env: list | None, exposed: list[str]) -> list[str]:
    """The variables one link puts in the container's environment."""
    prefix = link.alias.upper().replace("-", "_")
    out = [f"{prefix}_NAME=/{own_name}/{link.alias}"]
    ports = sorted((int(p.partition("/")[0]), p.partition("/")[2] or "tcp")
                   for p in exposed if p.partition("/")[0].isdigit())
    if ports:
        port, proto = ports[0]
        out.append(f"{prefix}_PORT={proto}://{ip}:{port}")
    for port, proto in ports:
        key = f"{prefix}_PORT_{port}_{proto.upper()}"
        out += [f"{key}={proto}://{ip}:{port}", f"{key}_ADDR={ip}", f"{key}_PORT={port}", f"{key}_PROTO={proto}"]
    for item in target_env or ():
        name, found, value = item.partition("=")
        if found and name not in ("HOME", "PATH"):
            out.append(f"{prefix}_ENV_{name}={value}")
    return out


def hosts_entry(link: Link, ip: str, target_hostname: str) -> tuple[str, str]:
    """The /etc/hosts line of a link: the alias, the target's hostname and its name."""
    names = [link.alias]
    for extra in (target_hostname, link.target):
        if extra and extra not in names:
            names.append(extra)
    return ip, " ".join(names)
