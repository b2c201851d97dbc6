"""dockyardd's command line: dockerd's flags for what dockyardd implements (`dockerd --help`),
parsed into the settings they make, then merged with daemon.json by `config.merge`.

Go's boolean flags take `--flag`, `--flag=true` and `--flag=false`; so do ours. Repeatable
flags (-H, --default-address-pool) collect every value."""

from __future__ import annotations

import argparse

from . import config as cfg


def _go_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dockyardd",
        description="the Docker Engine API server of Dockyard (dockerd's role)")
    add = p.add_argument
    add("-H", "--host", dest="hosts", action="append", metavar="ADDR",
        help=f"socket to listen on: unix://PATH or tcp://HOST:PORT (TLS only); default {cfg.DEFAULT_HOST}")
    add("--data-root", help=f"persistent state (default {cfg.DEFAULT_DATA_ROOT})")
    add("--exec-root", help=f"runtime state (default {cfg.DEFAULT_EXEC_ROOT})")
    add("-p", "--pidfile", help="pid file (default <exec-root>/dockyardd.pid)")
    add("--containerd", metavar="ADDR",
        help="socket of a running dockyard-containerd; without it dockyardd starts its own")
    add("-G", "--group", help=f"group of the unix socket (default {cfg.DEFAULT_GROUP}, when it exists)")
    add("-b", "--bridge", help="the default bridge network's Linux bridge, made if missing (default dockyard0; none: no default bridge)")
    add("--bip", help="the default bridge's gateway address and subnet, CIDR (default: a free pool)")
    add("--icc", nargs="?", const=True, type=_go_bool, metavar="BOOL",
        help="containers on the default bridge may talk to each other (default true)")
    add("--ip-masq", dest="ip_masq", nargs="?", const=True, type=_go_bool, metavar="BOOL",
        help="masquerade what leaves the default bridge (default true)")
    add("--ip", metavar="IP", help="host address ports are published on when -p names none (default 0.0.0.0)")
    add("--default-address-pool", dest="default_address_pools", action="append", metavar="POOL",
        help="base=CIDR,size=N: where user networks' subnets come from (repeatable)")
    add("--live-restore", nargs="?", const=True, type=_go_bool, metavar="BOOL",
        help="keep containers running while the daemon is down (default true)")
    add("-l", "--log-level", choices=cfg.LOG_LEVELS, help="default info")
    add("-D", "--debug", nargs="?", const=True, type=_go_bool, metavar="BOOL", help="log level debug")
    add("--config-file", help=f"daemon.json (default {cfg.DEFAULT_CONFIG_FILE})")
    add("--tls", nargs="?", const=True, type=_go_bool, metavar="BOOL", help="use TLS; implied by --tlsverify")
    add("--tlsverify", nargs="?", const=True, type=_go_bool, metavar="BOOL",
        help="use TLS and require client certificates signed by --tlscacert")
    add("--tlscacert", metavar="FILE", help="CA of the client certificates")
    add("--tlscert", metavar="FILE", help="server certificate")
    add("--tlskey", metavar="FILE", help="server key")
    add("--cgroup-parent", metavar="PATH", help="parent cgroup of the containers (default /dockyard)")
    add("-v", "--version", action="store_true", help="print the version and exit")
    return p


_FIELDS = ("hosts", "data_root", "exec_root", "pidfile", "containerd", "group", "bridge", "bip", "icc", "ip_masq", "ip",
           "default_address_pools", "live_restore", "log_level", "debug", "tls", "tlsverify",
           "tlscacert", "tlscert", "tlskey", "cgroup_parent")


def load(args: argparse.Namespace) -> cfg.Config:
    """The Config of the parsed flags and the config file they name."""
    flags: dict[str, object] = {}
    for name in _FIELDS:
        value = getattr(args, name)
        if value is None:
            continue
        if name == "hosts":
            value = tuple(value)
        elif name == "default_address_pools":
            value = tuple(cfg.parse_address_pool(v) for v in value)
        flags[name] = value
    path = args.config_file or cfg.DEFAULT_CONFIG_FILE
    settings = cfg.read_file(path, required=args.config_file is not None)
    return cfg.merge(flags, settings, path)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, cfg.Config | None]:
    """(args, config); config is None for --version. Raises InvalidArgument."""
    args = build_parser().parse_args(argv)
    if args.version:
        return args, None
    return args, load(args)
