"""dockyardd's configuration, one `Config`: defaults, then daemon.json (`--config-file`), then
the flags — with dockerd's rules (moby daemon/config/config.go): a key of the file that is no
option is an error ("the following directives don't match any configuration option"), and so is
a setting made both by a flag and by the file ("the following directives are specified both as a
flag and in the configuration file"); the flag does not silently win.

Keys and flags are dockerd's, for what dockyardd implements: hosts (-H), data-root, exec-root,
pidfile, containerd, group (-G), bridge (-b), bip, icc, ip-masq, ip, default-address-pools, live-restore,
cgroup-parent, log-level (-l), debug (-D), tls, tlsverify, tlscacert, tlscert, tlskey. Anything dockerd knows
that we do not do (storage-driver, registry-mirrors, …) is refused by name rather than ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass

from dockyard.errors import InvalidArgument

DEFAULT_CONFIG_FILE = "/etc/dockyard/daemon.json"
DEFAULT_DATA_ROOT = "/var/lib/dockyard"
DEFAULT_EXEC_ROOT = "/run/dockyard"
DEFAULT_SOCKET = "/run/dockyard/dockyard.sock"
DEFAULT_HOST = "unix://" + DEFAULT_SOCKET
DEFAULT_GROUP = "dockyard"
DEFAULT_BRIDGE = "dockyard0"  # dockerd's docker0; ours, so both engines can share a host
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


@dataclass(frozen=True)
class AddressPool:
    """One `--default-address-pool base=10.10.0.0/16,size=24`: user networks' subnets come from these."""
    base: str
    size: int

    def to_dict(self) -> dict:
        return {"Base": self.base, "Size": self.size}


@dataclass(frozen=True)
class Config:
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    pidfile: str = ""  # "" = <exec_root>/dockyardd.pid
    containerd: str = ""  # "" = dockyardd starts (or finds) its own dockyard-containerd
    group: str = DEFAULT_GROUP
    bridge: str = ""
    bip: str = ""
    icc: bool = True       # the default bridge's inter-container communication
    ip_masq: bool = True   # … and its outbound masquerade
    ip: str = "0.0.0.0"    # the host address of a published port given none
    default_address_pools: tuple[AddressPool, ...] = ()
    live_restore: bool = True
    log_level: str = "info"
    debug: bool = False
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    cgroup_parent: str = "/dockyard"  # containers' cgroups go under it: /dockyard/<id>
    config_file: str = DEFAULT_CONFIG_FILE
    # Not settable: what the engine is.
    api_version: str = "1.45"
    min_api_version: str = "1.24"
    namespace: str = "moby"  # the containerd namespace of the engine's objects, as dockerd's
    shutdown_timeout: float = 10.0  # seconds streams get to finish on SIGTERM

    @property
    def default_network_mode(self) -> str:
        """What NetworkMode "default" (or none given) means: the default bridge, or "none" when
        the daemon runs with `--bridge none` (dockerd's DisableBridge)."""
        return "none" if self.bridge == "none" else "bridge"

    @property
    def bridge_name(self) -> str:
        """The default bridge network's Linux bridge ("" with --bridge none)."""
        return "" if self.bridge == "none" else (self.bridge or DEFAULT_BRIDGE)

    # -- paths -----------------------------------------------------------------------------------

    @property
    def pidfile_path(self) -> str:
        return self.pidfile or os.path.join(self.exec_root, "dockyardd.pid")

    @property
    def containers_dir(self) -> str:
        """<data-root>/containers: one <id>/ per container (hostname, hosts, resolv.conf, the
        json-file log, config files), as dockerd keeps them."""
        return os.path.join(self.data_root, "containers")

    @property
    def engine_db(self) -> str:
        return os.path.join(self.data_root, "engine.db")

    @property
    def containerd_address(self) -> str:
        """The socket of the dockyard-containerd in use: --containerd, or our own one's."""
        return self.containerd or os.path.join(self.exec_root, "containerd", "containerd.sock")

    @property
    def containerd_root(self) -> str:
        return os.path.join(self.data_root, "containerd")

    @property
    def containerd_state(self) -> str:
        return os.path.join(self.exec_root, "containerd")

    @property
    def containerd_log(self) -> str:
        return os.path.join(self.data_root, "containerd.log")

    @property
    def managed_containerd(self) -> bool:
        return not self.containerd

    @property
    def effective_log_level(self) -> str:
        return "debug" if self.debug else self.log_level


# daemon.json key → (Config field, type check). dockerd's names.
def _str(key, v):
    if not isinstance(v, str):
        raise InvalidArgument(f"invalid value for {key}: {json.dumps(v)} is not a string")
    return v


def _bool(key, v):
    if not isinstance(v, bool):
        raise InvalidArgument(f"invalid value for {key}: {json.dumps(v)} is not a boolean")
    return v


def _str_list(key, v):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"invalid value for {key}: {json.dumps(v)} is not a list of strings")
    return tuple(v)


def _pools(key, v):
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise InvalidArgument(f"invalid value for {key}: {json.dumps(v)} is not a list of objects")
    pools = []
    for item in v:
        unknown = set(item) - {"base", "size"}
        if unknown:
            raise InvalidArgument(f"invalid value for {key}: unknown field {sorted(unknown)[0]!r}")
        pools.append(_pool(item.get("base"), item.get("size")))
    return tuple(pools)


FILE_KEYS: dict[str, tuple[str, object]] = {
    "hosts": ("hosts", _str_list),
    "data-root": ("data_root", _str),
    "exec-root": ("exec_root", _str),
    "pidfile": ("pidfile", _str),
    "containerd": ("containerd", _str),
    "group": ("group", _str),
    "bridge": ("bridge", _str),
    "bip": ("bip", _str),
    "icc": ("icc", _bool),
    "ip-masq": ("ip_masq", _bool),
    "ip": ("ip", _str),
    "default-address-pools": ("default_address_pools", _pools),
    "live-restore": ("live_restore", _bool),
    "log-level": ("log_level", _str),
    "debug": ("debug", _bool),
    "tls": ("tls", _bool),
    "tlsverify": ("tlsverify", _bool),
    "tlscacert": ("tlscacert", _str),
    "tlscert": ("tlscert", _str),
    "tlskey": ("tlskey", _str),
    "cgroup-parent": ("cgroup_parent", _str),
}

# dockerd options dockyardd does not implement: named, so the error says "not supported" rather
# than "unknown" to someone carrying a working dockerd daemon.json over.
UNSUPPORTED_KEYS = frozenset({
    "storage-driver", "storage-opts", "registry-mirrors", "insecure-registries", "log-driver",
    "log-opts", "default-ulimits", "dns", "dns-opts", "dns-search", "experimental", "features",
    "iptables", "ip6tables", "ip-forward", "ipv6", "fixed-cidr", "fixed-cidr-v6",
    "default-gateway", "mtu", "userland-proxy", "userns-remap", "runtimes", "default-runtime",
    "selinux-enabled", "seccomp-profile", "no-new-privileges", "exec-opts",
    "max-concurrent-downloads", "max-concurrent-uploads", "shutdown-timeout", "init",
    "labels", "metrics-addr", "default-shm-size", "authorization-plugins", "tlsverify-peer",
})


def _pool(base, size) -> AddressPool:
    if not isinstance(base, str) or isinstance(size, bool) or not isinstance(size, int):
        raise InvalidArgument(f"invalid default address pool: base {base!r}, size {size!r}")
    try:
        net = ipaddress.ip_network(base, strict=False)
    except ValueError as e:
        raise InvalidArgument(f"invalid default address pool: {e}") from None
    if not net.prefixlen <= size <= net.max_prefixlen:
        raise InvalidArgument(f"invalid default address pool: size {size} is not within "
                              f"/{net.prefixlen}../{net.max_prefixlen} of {base}")
    return AddressPool(str(net), size)


def parse_address_pool(text: str) -> AddressPool:
    """The flag form `base=10.10.0.0/16,size=24`."""
    values = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("base", "size"):
            raise InvalidArgument(f"invalid default address pool {text!r}: want base=CIDR,size=N")
        values[key.strip()] = value.strip()
    try:
        size = int(values.get("size", ""))
    except ValueError:
        raise InvalidArgument(f"invalid default address pool {text!r}: size is not a number") from None
    return _pool(values.get("base"), size)


def read_file(path: str, *, required: bool) -> dict[str, object]:
    """The settings daemon.json makes, as Config field → value. A missing default file is no
    error (dockerd: the same); a missing named file is."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if required:
            raise InvalidArgument(f"unable to configure the daemon: open {path}: no such file or directory") from None
        return {}
    except OSError as e:
        raise InvalidArgument(f"unable to configure the daemon: open {path}: {e.strerror}") from None
    if not raw.strip():
        return {}
    try:
        table = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid configuration file {path}: {e}") from None
    if not isinstance(table, dict):
        raise InvalidArgument(f"invalid configuration file {path}: want a JSON object")
    unsupported = sorted(k for k in table if k in UNSUPPORTED_KEYS)
    if unsupported:
        raise InvalidArgument(f"{path}: not supported by dockyardd: {', '.join(unsupported)}")
    unknown = sorted(k for k in table if k not in FILE_KEYS)
    if unknown:
        raise InvalidArgument(f"{path}: the following directives don't match any configuration "
                              f"option: {', '.join(unknown)}")
    settings = {}
    for key, value in table.items():
        name, check = FILE_KEYS[key]
        settings[name] = check(key, value)
    return settings


def merge(flags: dict[str, object], file_settings: dict[str, object], config_file: str) -> Config:
    """Defaults ← file ← flags; a setting made by both is refused, as dockerd does."""
    keys = {name: key for key, (name, _) in FILE_KEYS.items()}
    both = sorted(name for name in flags if name in file_settings)
    if both:
        details = ", ".join(f"{keys[n]}: (from flag: {_show(flags[n])}, from file: {_show(file_settings[n])})"
                            for n in both)
        raise InvalidArgument("the following directives are specified both as a flag and in the "
                              f"configuration file: {details}")
    return validate(Config(**{**file_settings, **flags, "config_file": config_file}))


def _show(value) -> str:
    if isinstance(value, tuple):
        return "[" + " ".join(str(getattr(v, "base", v)) for v in value) + "]"
    return str(value)


def validate(config: Config) -> Config:
    for name in ("data_root", "exec_root"):
        value = getattr(config, name)
        if not os.path.isabs(value):
            raise InvalidArgument(f"{name.replace('_', '-')} must be an absolute path, not {value!r}")
    if config.pidfile and not os.path.isabs(config.pidfile):
        raise InvalidArgument(f"pidfile must be an absolute path, not {config.pidfile!r}")
    if config.containerd and not os.path.isabs(config.containerd.removeprefix("unix://")):
        raise InvalidArgument(f"containerd must be the absolute path of its socket, not {config.containerd!r}")
    if not config.cgroup_parent.startswith("/") or ".." in config.cgroup_parent.split("/"):
        raise InvalidArgument(f"cgroup-parent must be an absolute cgroup path, not {config.cgroup_parent!r}")
    if config.log_level not in LOG_LEVELS:
        raise InvalidArgument(f"unable to parse logging level: {config.log_level}")
    if config.bip:
        try:
            ipaddress.ip_interface(config.bip)
        except ValueError:
            raise InvalidArgument(f"invalid bip {config.bip!r}: want an address with a prefix, like 172.17.0.1/16") from None
        if ipaddress.ip_interface(config.bip).version != 4:
            raise InvalidArgument(f"invalid bip {config.bip!r}: only IPv4 is supported")
    try:
        if ipaddress.ip_address(config.ip).version != 4:
            raise ValueError
    except ValueError:
        raise InvalidArgument(f"invalid ip {config.ip!r}: want an IPv4 address of this host, like 127.0.0.1") from None
    if config.bridge and (len(config.bridge) > 15 or not all(ch.isalnum() or ch in "-_." for ch in config.bridge)):
        raise InvalidArgument(f"invalid bridge name {config.bridge!r}: at most 15 letters, digits, '-', '_' or '.'")
    hosts = tuple(parse_host(h) for h in (config.hosts or (DEFAULT_HOST,)))
    tcp = [h for h in hosts if h.startswith("tcp://")]
    if tcp:
        if not config.tlsverify:
            raise InvalidArgument(f"refusing to listen on {tcp[0]} without TLS client verification: "
                                  "TCP needs --tlsverify with --tlscacert, --tlscert and --tlskey")
    if config.tlsverify:
        missing = [f"--{n}" for n in ("tlscacert", "tlscert", "tlskey") if not getattr(config, n)]
        if missing:
            raise InvalidArgument(f"--tlsverify needs {', '.join(missing)}")
    return dataclasses.replace(
        config, hosts=hosts, data_root=os.path.normpath(config.data_root),
        exec_root=os.path.normpath(config.exec_root),
        containerd=os.path.normpath(config.containerd.removeprefix("unix://")) if config.containerd else "",
        tls=config.tls or config.tlsverify)


def parse_host(text: str) -> str:
    """A -H value made canonical: unix://PATH (default path when empty) or tcp://HOST:PORT.
    fd:// (systemd socket activation) and ssh:// are refused."""
    text = text.strip()
    if text.startswith("unix://") or text.startswith("/"):
        path = text.removeprefix("unix://") or DEFAULT_SOCKET
        if not os.path.isabs(path):
            raise InvalidArgument(f"invalid host {text!r}: a unix socket path must be absolute")
        if len(os.fsencode(path)) > SOCKET_PATH_MAX:
            raise InvalidArgument(f"invalid host {text!r}: the socket path is longer than {SOCKET_PATH_MAX} bytes")
        return "unix://" + os.path.normpath(path)
    if text.startswith("tcp://"):
        rest = text.removeprefix("tcp://").rstrip("/")
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgument(f"invalid host {text!r}: want tcp://HOST:PORT")
        host = host.strip("[]") or "0.0.0.0"
        return f"tcp://{host}:{int(port)}" if ":" not in host else f"tcp://[{host}]:{int(port)}"
    scheme = text.partition("://")[0] if "://" in text else text
    raise InvalidArgument(f"invalid host {text!r}: {scheme}:// is not supported (unix:// or tcp:// with TLS)")


def split_tcp(host: str) -> tuple[str, int]:
    """tcp://HOST:PORT → (HOST, PORT), brackets of an IPv6 address removed."""
    rest = host.removeprefix("tcp://")
    name, _, port = rest.rpartition(":")
    return name.strip("[]"), int(port)
