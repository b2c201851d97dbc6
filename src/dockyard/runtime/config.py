"""Reading a bundle's config.json and checking what the schema can't: the things runc refuses
before it touches the system (runtime-spec: an error must leave no trace)."""

import json
import os

from dockyard.errors import InvalidArgument, Unsupported
from dockyard.linux.namespaces import NAMESPACES

# Which namespace a sysctl needs to be private for it to be safe to set (runc's validator).
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def load(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"cannot open {path}: no such file or directory") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"config.json: invalid JSON: {e}") from None
    from dockyard.oci.schema import validate_runtime_config
    validate_runtime_config(config)
    return config


def rootfs_path(bundle: str, config: dict) -> str:
    if not config.get("root"):
        raise InvalidArgument("config.json: root is required: there is no root filesystem")
    path = config["root"]["path"]
    if not os.path.isabs(path):
        path = os.path.join(bundle, path)
    path = os.path.realpath(path)
    if not os.path.isdir(path):
        raise InvalidArgument(f"rootfs ({path}) does not exist")
    return path


def namespace_list(config: dict) -> list[tuple[str, str | None]]:
    seen = set()
    result = []
    for n in config.get("linux", {}).get("namespaces", []):
        kind = n["type"]
        if kind in seen:
            raise InvalidArgument(f"duplicate namespace type {kind!r} in config.json")
        seen.add(kind)
        result.append((kind, n.get("path") or None))
    return result


def validate(config: dict) -> None:
    """Semantic checks for create; the schema has already been checked by load()."""
    process = config.get("process")
    if not process or not process.get("args"):
        raise InvalidArgument("process.args must be set: there is nothing to run")
    linux = config.get("linux")
    if linux is None:
        raise InvalidArgument("config.json: linux section is required on Linux")
    kinds = {k for k, _ in namespace_list(config)}
    unknown = kinds - set(NAMESPACES)
    if unknown:
        raise InvalidArgument(f"unknown namespace type {sorted(unknown)[0]!r}")
    if "mount" not in kinds:
        raise InvalidArgument("a mount namespace is required to set up the root filesystem")
    if "user" in kinds and not dict(namespace_list(config)).get("user"):
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise InvalidArgument("a new user namespace needs uidMappings and gidMappings")
    elif linux.get("uidMappings") or linux.get("gidMappings"):
        raise InvalidArgument("uidMappings/gidMappings given without a new user namespace")
    if config.get("hostname") and "uts" not in kinds:
        raise InvalidArgument("unable to set hostname without a private UTS namespace")
    if config.get("domainname") and "uts" not in kinds:
        raise InvalidArgument("unable to set domainname without a private UTS namespace")
    if linux.get("timeOffsets") and "time" not in kinds:
        raise InvalidArgument("timeOffsets given without a private time namespace")
    for key in linux.get("sysctl") or {}:
        _check_sysctl(key, kinds)
    # Features this machine cannot provide are refused, never silently skipped.
    if process.get("apparmorProfile"):
        raise Unsupported("apparmor is not enabled on this system: cannot apply profile "
                          f"{process['apparmorProfile']!r}")
    if process.get("selinuxLabel") or linux.get("mountLabel"):
        raise Unsupported("selinux is not enabled on this system: cannot apply labels")
    if linux.get("intelRdt"):
        raise Unsupported("Intel RDT is not available on this system")
    for key in ("scheduler", "ioPriority", "execCPUAffinity"):
        if process.get(key):
            raise Unsupported(f"process.{key} is not supported by dockyard-runc yet")
    if linux.get("memoryPolicy") or linux.get("netDevices"):
        raise Unsupported("linux.memoryPolicy and linux.netDevices are not supported by dockyard-runc yet")
    for m in config.get("mounts", []):
        if any(o in ("idmap", "ridmap") for o in m.get("options") or []) or m.get("uidMappings"):
            raise Unsupported("id-mapped mounts are not supported by dockyard-runc yet")


def _check_sysctl(key: str, kinds: set[str]) -> None:
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        needed = "ipc"
    elif key.startswith("net."):
        needed = "network"
    elif key in ("kernel.hostname", "kernel.domainname"):
        needed = "uts"
    else:
        raise InvalidArgument(f"sysctl {key!r} is not in a separate kernel namespace")
    if needed not in kinds:
        raise InvalidArgument(f"sysctl {key!r} is not allowed as it conflicts with the host's {needed} namespace")
