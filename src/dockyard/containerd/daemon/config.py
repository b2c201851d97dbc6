"""dockyard-containerd's configuration, one `Config`: defaults, then the TOML file named by
`--config`, then the flags, the later winning. The file takes containerd's shape where the
setting is containerd's:

    root = "/var/lib/dockyard/containerd"
    state = "/run/dockyard/containerd"
    shutdown_timeout = 10          # seconds calls in flight get on SIGTERM

    [grpc]
    address = "/run/dockyard/containerd/containerd.sock"

    [debug]
    level = "info"

An unknown key is an error, so a typo is not silently ignored.
"""

import argparse
import dataclasses
import os
import tomllib
from dataclasses import dataclass

from dockyard.errors import InvalidArgument

DEFAULT_ADDRESS = "/run/dockyard/containerd/containerd.sock"
DEFAULT_ROOT = "/var/lib/dockyard/containerd"
DEFAULT_STATE = "/run/dockyard/containerd"
LOG_LEVELS = ("debug", "info", "warning", "error")
# sun_path is 108 bytes with its terminating NUL.
SOCKET_PATH_MAX = 107
# Channel options of both ends. 16 MiB is containerd's message limit: content Write and Read
# chunks stay well below it.
MAX_MESSAGE_BYTES = 16 << 20
GRPC_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]


@dataclass(frozen=True)
class Config:
    address: str = DEFAULT_ADDRESS
    root: str = DEFAULT_ROOT
    state: str = DEFAULT_STATE
    log_level: str = "info"
    shutdown_timeout: float = 10.0


# TOML location → Config field.
_FILE_KEYS = {
    ("root",): "root",
    ("state",): "state",
    ("shutdown_timeout",): "shutdown_timeout",
    ("grpc", "address"): "address",
    ("debug", "level"): "log_level",
}


def _flatten(table: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    items: dict[tuple[str, ...], object] = {}
    for key, value in table.items():
        path = prefix + (key,)
        if isinstance(value, dict) and path not in _FILE_KEYS:
            items.update(_flatten(value, path))
        else:
            items[path] = value
    return items


def from_file(path: str) -> dict[str, object]:
    """The settings a TOML file makes, as Config field → value."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise InvalidArgument(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"config {path}: {e}") from None
    settings = {}
    for key, value in _flatten(table).items():
        name = _FILE_KEYS.get(key)
        if name is None:
            raise InvalidArgument(f"config {path}: unknown key {'.'.join(key)!r}")
        settings[name] = value
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockyard-containerd",
        description="the lifecycle manager: containers, tasks, content, snapshots, images over gRPC")
    parser.add_argument("-a", "--address", help=f"gRPC unix socket (default {DEFAULT_ADDRESS})")
    parser.add_argument("--root", help=f"persistent state directory (default {DEFAULT_ROOT})")
    parser.add_argument("--state", help=f"runtime state directory (default {DEFAULT_STATE})")
    parser.add_argument("-c", "--config", help="TOML configuration file")
    parser.add_argument("-l", "--log-level", choices=LOG_LEVELS, help="default info")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return parser


def load(args: argparse.Namespace) -> Config:
    settings = from_file(args.config) if args.config else {}
    for name in ("address", "root", "state", "log_level"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    return validate(Config(**settings))


def validate(config: Config) -> Config:
    for name in ("address", "root", "state"):
        value = getattr(config, name)
        if not isinstance(value, str) or not os.path.isabs(value):
            raise InvalidArgument(f"{name} must be an absolute path, not {value!r}")
    if len(os.fsencode(config.address)) > SOCKET_PATH_MAX:
        raise InvalidArgument(f"address {config.address} is longer than {SOCKET_PATH_MAX} bytes")
    if config.log_level not in LOG_LEVELS:
        raise InvalidArgument(f"log level {config.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    timeout = config.shutdown_timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise InvalidArgument(f"shutdown_timeout must be a number of seconds ≥ 0, not {timeout!r}")
    return dataclasses.replace(config, address=os.path.normpath(config.address),
                               root=os.path.normpath(config.root), state=os.path.normpath(config.state),
                               shutdown_timeout=float(timeout))
