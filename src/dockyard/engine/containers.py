"""The engine's containers: the Engine API's container lifecycle over dockyard-containerd
(docker-engine-api-v1.45.yaml "Container" operations; reference engine-api.md §1.3–1.4).

What lives where. The engine record (engine/store.py) holds the Docker view — Config, HostConfig,
State. dockyard-containerd holds, per container, a container record (the OCI spec built by
engine/spec.py, snapshot key = the container id, on the image's top chain id) made at create,
and while it runs a task (the shim and the process). As in dockerd, a task lives from start to
the exit: the exit watcher records the exit and deletes the task; the container record and the
snapshot (the container's writable layer) live until the container is removed.

Exits. Every task has one watcher: a Tasks.Wait call (dockyard-containerd keeps a thread per
call for this, server.py MAX_WORKERS). Wait returns at once for a task that exited while nobody
waited, so arming it after a start or at daemon start (live restore) misses nothing. The watcher
records the exit under the container's lock, deletes the task, publishes `die`, wakes the API's
`wait` calls, then AutoRemove or the restart policy (engine/restarts.py) take over. OOM kills
arrive as /tasks/oom events (one subscription) and set OOMKilled on the run they belong to.

Locks. State changes of one container are serialised by its asyncio lock; nothing waits for an
exit while holding it (the watcher needs it to record the exit).

Restore (`start()`): each stored container that was running is matched with its task: a running
or paused task is kept (and watched again), a stopped or missing one is an exit that happened
while dockyardd was down. containerd container records the store does not know (a create cut
short by a crash) are deleted with their snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal as signals
import tempfile
from dataclasses import dataclass, field

from google.protobuf import any_pb2

from dockyard.api.events import task_pb2
from dockyard.api.services.containers.v1 import containers_pb2 as cpb
from dockyard.api.services.events.v1 import events_pb2 as epb
from dockyard.api.services.snapshots.v1 import snapshots_pb2 as spb
from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from dockyard.containerd import snapshots as csnapshots
from dockyard.containerd.taskoptions import create_options
from dockyard.engine import attach, health, hostfiles, links, names, restarts, spec as specs, timeutil
from dockyard.engine.events import container_attributes
from dockyard.engine.filters import Filters
from dockyard.engine.gojson import go_keys
from dockyard.engine.state import State, status_string
from dockyard.engine.store import Container
from dockyard.errors import (Conflict, DockyardError, InvalidArgument, NotFound, SystemFailure,
                             Unavailable, Unsupported)
from dockyard.network import portmap

log = logging.getLogger(__name__)

SNAPSHOTTER = "overlayfs"
RUNTIME = "dockyard-runc"  # dockyard-containerd runs its own runtime for a non-absolute name
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
DEFAULT_STOP_TIMEOUT = 10  # seconds (moby container.DefaultStopTimeout)
KILL_WAIT = 30.0  # how long kill/stop wait for the exit after SIGKILL before giving up
WATCH_RETRY = 1.0  # seconds between Wait attempts while dockyard-containerd is away
UNKNOWN_EXIT = 255
EXIT_START_FAILED = 128  # dockerd's exitUnknown for a start that failed otherwise

# ContainerConfig and HostConfig keys of the schema (docker-engine-api-v1.45.yaml), plus fields
# older clients (docker-py, API < 1.45) still send. Anything else is refused: a typo in a field
# name would otherwise silently do nothing.
CONFIG_KEYS = frozenset({
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
    "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
    "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
    "StopTimeout", "Shell"})
RESOURCE_KEYS = frozenset({
    "CpuShares", "Memory", "CgroupParent", "BlkioWeight", "BlkioWeightDevice", "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota",
    "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "Devices",
    "DeviceCgroupRules", "DeviceRequests", "KernelMemory", "KernelMemoryTCP", "MemoryReservation",
    "MemorySwap", "MemorySwappiness", "NanoCpus", "OomKillDisable", "Init", "PidsLimit", "Ulimits",
    "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth"})
HOST_CONFIG_KEYS = RESOURCE_KEYS | frozenset({
    "Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy",
    "AutoRemove", "VolumeDriver", "VolumesFrom", "Mounts", "ConsoleSize", "Annotations", "CapAdd",
    "CapDrop", "CgroupnsMode", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "IpcMode",
    "Cgroup", "Links", "OomScoreAdj", "PidMode", "Privileged", "PublishAllPorts", "ReadonlyRootfs",
    "SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode", "UsernsMode", "ShmSize", "Sysctls", "Runtime",
    "Isolation", "MaskedPaths", "ReadonlyPaths", "InitPath", "Capabilities"})
# "Runtime" at the top level: docker-py (6.x) sends create_container(runtime=…) there; dockerd's
# decoder ignores it (the Config struct has no such field), and so do we.
BODY_KEYS = CONFIG_KEYS | {"HostConfig", "NetworkingConfig", "Runtime"}
UPDATE_KEYS = RESOURCE_KEYS | {"RestartPolicy"}

LIST_FILTERS = frozenset({"ancestor", "before", "expose", "exited", "health", "id", "isolation",
                          "is-task", "label", "name", "network", "publish", "since", "status", "volume"})
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy", "none")
PRUNE_FILTERS = frozenset({"until", "label", "label!"})
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")

# Types of the fields we read ourselves (spec.py checks the rest as it builds the spec).
_TYPES: dict[str, tuple[type, ...]] = {
    "Hostname": (str,), "Domainname": (str,), "User": (str,), "AttachStdin": (bool,),
    "AttachStdout": (bool,), "AttachStderr": (bool,), "Tty": (bool,), "OpenStdin": (bool,),
    "StdinOnce": (bool,), "Env": (list,), "Image": (str,), "WorkingDir": (str,), "Labels": (dict,),
    "StopSignal": (str,), "StopTimeout": (int,), "ExposedPorts": (dict,), "Volumes": (dict,),
    "Healthcheck": (dict,), "ArgsEscaped": (bool,), "NetworkDisabled": (bool,), "MacAddress": (str,),
    "OnBuild": (list,), "Shell": (list,),
}
_HOST_TYPES: dict[str, tuple[type, ...]] = {
    "Binds": (list,), "LogConfig": (dict,), "NetworkMode": (str,), "PortBindings": (dict,),
    "RestartPolicy": (dict,), "AutoRemove": (bool,), "Mounts": (list,), "ConsoleSize": (list,),
    "CapAdd": (list,), "CapDrop": (list,), "Dns": (list,), "DnsOptions": (list,), "DnsSearch": (list,),
    "ExtraHosts": (list,), "GroupAdd": (list,), "Links": (list,), "Privileged": (bool,),
    "PublishAllPorts": (bool,), "ReadonlyRootfs": (bool,), "SecurityOpt": (list,), "Tmpfs": (dict,),
    "Sysctls": (dict,), "Ulimits": (list,), "Devices": (list,), "ShmSize": (int,), "Memory": (int,),
    "MemorySwap": (int,), "MemoryReservation": (int,), "NanoCpus": (int,), "CpuShares": (int,),
    "CpuQuota": (int,), "CpuPeriod": (int,), "CpusetCpus": (str,), "CpusetMems": (str,),
    "PidsLimit": (int,), "BlkioWeight": (int,), "OomScoreAdj": (int,), "Init": (bool,),
    "OomKillDisable": (bool,), "IpcMode": (str,), "PidMode": (str,), "UTSMode": (str,),
    "CgroupnsMode": (str,), "Runtime": (str,), "CgroupParent": (str,), "Annotations": (dict,),
    "VolumesFrom": (list,), "StorageOpt": (dict,), "DeviceCgroupRules": (list,),
}


# --- small parsers -------------------------------------------------------------------------------

def parse_signal(text: str | int | None, default: int | None = None) -> int:
    """A signal as Docker takes it (moby pkg/signal ParseSignal): a number, or a name with or
    without "SIG", any case, incl. RTMIN+n / RTMAX-n."""
    if text is None or text == "":
        if default is None:
            raise InvalidArgument("Invalid signal: ")
        return default
    if isinstance(text, int) and not isinstance(text, bool):
        number = text
    else:
        raw = str(text).strip()
        if raw.isdigit():
            number = int(raw)
        else:
            name = raw.upper().removeprefix("SIG")
            m = re.fullmatch(r"RT(MIN|MAX)([+-]\d+)?", name)
            if m:
                base = signals.SIGRTMIN if m.group(1) == "MIN" else signals.SIGRTMAX
                number = int(base) + int(m.group(2) or 0)
            else:
                try:
                    number = int(signals.Signals["SIG" + name])
                except KeyError:
                    raise InvalidArgument(f"Invalid signal: {raw}") from None
    if not 0 < number <= int(signals.SIGRTMAX):
        raise InvalidArgument(f"Invalid signal: {text}")
    return number


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """go-units RAMInBytes ("10m" = 10 MiB), as json-file's max-size takes it."""
    m = _SIZE.fullmatch(str(text).strip())
    if not m:
        raise InvalidArgument(f"invalid size: '{text}'")
    power = "kmgtp".find(m.group(2).lower()) + 1 if m.group(2) else 0
    return int(float(m.group(1)) * (1024 ** power))


# dockerd's built-in logging drivers; any other name is refused at create as dockerd refuses it.
LOG_DRIVERS = frozenset({"json-file", "local", "none", "syslog", "journald", "gelf", "fluentd",
                         "awslogs", "splunk", "etwlogs", "gcplogs", "logentries"})


def log_driver(host_config: dict) -> str:
    return (host_config.get("LogConfig") or {}).get("Type") or "json-file"


def log_options(host_config: dict) -> tuple[int, int]:
    """(max size, max files) of the json-file log from HostConfig.LogConfig; the `none` driver
    keeps no log at all."""
    lc = host_config.get("LogConfig") or {}
    kind = log_driver(host_config)
    if kind not in LOG_DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{kind}' is registered")  # dockerd's words
    if kind not in ("json-file", "none"):
        raise Unsupported(f'logging driver "{kind}" is not supported: dockyardd writes json-file logs')
    opts = lc.get("Config") or {}
    if not isinstance(opts, dict) or not all(isinstance(v, str) for v in opts.values()):
        raise InvalidArgument("LogConfig.Config must map option names to strings")
    if kind == "none":
        if opts:
            raise InvalidArgument(f"unknown log opt '{sorted(opts)[0]}' for none log driver")
        return -1, 1
    unknown = sorted(set(opts) - {"max-size", "max-file", "compress", "labels", "env", "env-regex", "tag"})
    if unknown:
        raise InvalidArgument(f"unknown log opt '{unknown[0]}' for json-file log driver")
    max_size = parse_size(opts["max-size"]) if opts.get("max-size") else -1
    max_file = 1
    if opts.get("max-file"):
        try:
            max_file = int(opts["max-file"])
        except ValueError:
            raise InvalidArgument(f"invalid value for max-file: {opts['max-file']}") from None
        if max_file < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    if max_size < 0:
        max_file = 1  # as json-file in dockerd: without max-size there is no rotation, max-file is moot
    return max_size, max_file


def _check_types(obj: dict, types: dict[str, tuple[type, ...]], where: str) -> None:
    for key, allowed in types.items():
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, bool) and bool not in allowed:
            ok = False
        else:
            ok = isinstance(value, allowed)
        if not ok:
            want = {str: "a string", bool: "a boolean", int: "an integer", list: "an array",
                    dict: "an object"}[allowed[0]]
            raise InvalidArgument(f"invalid {where}{key}: {json.dumps(value)[:80]} is not {want}")


def validate_create_body(body: dict) -> tuple[dict, dict, dict]:
    """(Config, HostConfig, NetworkingConfig) of a create request, type-checked."""
    body = go_keys(body, BODY_KEYS)
    unknown = sorted(set(body) - BODY_KEYS)
    if unknown:
        raise InvalidArgument(f"unknown field \"{unknown[0]}\" in the container configuration")
    config = {k: v for k, v in body.items() if k in CONFIG_KEYS and v is not None}
    _check_types(config, _TYPES, "Config.")
    for key in ("Cmd", "Entrypoint"):
        if key in config:
            config[key] = specs.strslice(config[key], key)
    if not all(isinstance(e, str) for e in config.get("Env") or []):
        raise InvalidArgument("invalid Config.Env: want an array of strings")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in (config.get("Labels") or {}).items()):
        raise InvalidArgument("invalid Config.Labels: want an object of strings")
    host_config = body.get("HostConfig")
    if host_config is None:
        host_config = {}
    if not isinstance(host_config, dict):
        raise InvalidArgument("invalid HostConfig: want an object")
    host_config = go_keys(host_config, HOST_CONFIG_KEYS)
    unknown = sorted(set(host_config) - HOST_CONFIG_KEYS)
    if unknown:
        raise InvalidArgument(f"unknown field \"{unknown[0]}\" in HostConfig")
    host_config = {k: v for k, v in host_config.items() if v is not None}
    _check_types(host_config, _HOST_TYPES, "HostConfig.")
    networking = body.get("NetworkingConfig") or {}
    if not isinstance(networking, dict):
        raise InvalidArgument("invalid NetworkingConfig: want an object")
    return config, host_config, networking


# --- inspect shapes ------------------------------------------------------------------------------

def _host_config_view(hc: dict) -> dict:
    """HostConfig as dockerd shows it: every field, zero values where unset."""
    out = {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "none", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
        "CapAdd": None, "CapDrop": None, "CgroupnsMode": "private" if specs.cgroup_v2() else "host",
        "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
        "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
        "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None,
        "UTSMode": "", "UsernsMode": "", "ShmSize": specs.DEFAULT_SHM_SIZE, "Runtime": "runc",
        "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
        "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
        "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
        "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None,
        "Ulimits": [], "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": None, "ReadonlyPaths": None,
    }
    out.update(hc)
    return out


def _config_view(c: Container) -> dict:
    out = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
           "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
           "Cmd": None, "Image": c.image, "Volumes": None, "WorkingDir": "", "Entrypoint": None,
           "OnBuild": None, "Labels": {}}
    out.update(c.config)
    return out


def _mount_points(hc: dict) -> list[dict]:
    """MountPoints of the binds and mounts the HostConfig asks for (Docker's `Mounts`)."""
    out = []
    for bind in hc.get("Binds") or []:
        parts = str(bind).split(":")
        if len(parts) < 2:
            continue
        src, dst, mode = parts[0], parts[1], ",".join(parts[2:])
        opts = mode.split(",") if mode else []
        propagation = next((o for o in opts if o in ("private", "rprivate", "shared", "rshared",
                                                     "slave", "rslave")), "rprivate")
        out.append({"Type": "bind", "Source": src, "Destination": dst, "Mode": mode,
                    "RW": "ro" not in opts, "Propagation": propagation})
    for m in hc.get("Mounts") or []:
        if not isinstance(m, dict):
            continue
        kind = m.get("Type") or "volume"
        entry = {"Type": kind, "Source": m.get("Source") or "", "Destination": m.get("Target") or "",
                 "Mode": "", "RW": not m.get("ReadOnly"), "Propagation": ""}
        if kind == "bind":
            entry["Propagation"] = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        out.append(entry)
    return out


@dataclass
class _Waiters:
    exits: list[asyncio.Future] = field(default_factory=list)
    removed: list[asyncio.Future] = field(default_factory=list)


async def rpc(call):
    """Awaits a unary gRPC call; a failure as the dockyard error its status means."""
    import grpc
    from dockyard.containerd.daemon.errors import from_rpc_error
    try:
        return await call
    except grpc.RpcError as e:
        raise from_rpc_error(e) from None


class Containers:
    """The daemon component behind /containers (`daemon.containers`)."""

    def __init__(self, daemon):
        self.daemon = daemon
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, _Waiters] = {}
        self._watchers: dict[str, asyncio.Task] = {}
        self._oom: set[str] = set()  # containers whose current run saw an OOM kill
        self._background: set[asyncio.Task] = set()
        self._oom_task: asyncio.Task | None = None
        self._closing = False

    # -- component life ----------------------------------------------------------------------------

    @property
    def store(self):
        return self.daemon.store

    @property
    def _ctr(self):
        return self.daemon.containerd

    @property
    def _config(self):
        return self.daemon.config

    async def start(self, ref: str | None = None, restart: bool = False) -> bool | None:
        """Two callers share the name: the daemon starting its components (no arguments), and
        the plan's `await daemon.containers.start(id_or_name)` (restarts.py, the API), which is
        `start_container`."""
        if ref is not None:
            return await self.start_container(ref, restart=restart)
        await self._start_component()
        return None

    async def _start_component(self) -> None:
        os.makedirs(self._config.containers_dir, mode=0o710, exist_ok=True)
        self._oom_task = asyncio.get_running_loop().create_task(self._watch_ooms(), name="oom events")
        await self._restore()

    async def close(self) -> None:
        """Watchers stop; containers keep running (live restore)."""
        self._closing = True
        tasks = [*self._watchers.values(), *self._background]
        if self._oom_task is not None:
            tasks.append(self._oom_task)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watchers.clear()
        for w in self._waiters.values():
            for fut in (*w.exits, *w.removed):
                if not fut.done():
                    fut.cancel()

    def lock(self, cid: str) -> asyncio.Lock:
        """The container's lock: held across a change of its state (networks' connect takes it)."""
        return self._lock(cid)

    def _lock(self, cid: str) -> asyncio.Lock:
        lock = self._locks.get(cid)
        if lock is None:
            lock = self._locks[cid] = asyncio.Lock()
        return lock

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _publish(self, c: Container, action: str, **extra) -> None:
        events = getattr(self.daemon, "events", None)
        if events is not None:
            events.publish("container", action, c.id, container_attributes(c, **extra))

    def get(self, ref: str) -> Container:
        return self.store.get(ref)

    def dir_of(self, cid: str) -> str:
        return os.path.join(self._config.containers_dir, cid)

    # -- create --------------------------------------------------------------------------------------

    async def create(self, body: dict, name: str = "", platform: str = "") -> tuple[str, list[str]]:
        """POST /containers/create: the new container's id and dockerd's warnings."""
        config, host_config, networking = validate_create_body(body)
        ref = config.get("Image") or ""
        if not ref:
            raise InvalidArgument("no image specified: Config.Image is required")
        if name:
            name = names.validate_name(name)
        restarts.validate_restart_policy(host_config)
        health.validate_healthcheck(config.get("Healthcheck"))
        log_options(host_config)
        if host_config.get("NetworkMode") in (None, "", "default"):
            host_config["NetworkMode"] = self._config.default_network_mode
        self.daemon.networks.validate_create(host_config, networking)
        wanted_links = links.parse_all(host_config.get("Links"))
        for link in wanted_links:
            if self.store.find(link.target) is None:  # a 400, not a 404 (which sends the CLI pulling)
                raise InvalidArgument(f"could not get container for {link.target}: No such container: {link.target}")
        info = await self.daemon.images.resolve(ref)
        if platform:
            want_os, _, want_arch = platform.partition("/")
            want_arch = want_arch.partition("/")[0]
            if want_os != info.os or (want_arch and info.architecture and want_arch != info.architecture):
                raise NotFound(f"image with reference {ref} was found but its platform "
                               f"({info.os}/{info.architecture}) does not match the specified "
                               f"platform ({platform})")
        cid = names.new_id()
        if name:
            self.store.reserve(name, cid)
        else:
            name = self._free_name(cid)
        if wanted_links:
            host_config["Links"] = [link.stored(name) for link in wanted_links]
        try:
            return cid, await self._create(cid, name, ref, info, config, host_config, networking)
        finally:
            self.store.release(name, cid)

    def _free_name(self, cid: str) -> str:
        for candidate in names.candidate_names(cid):
            if not self.store.taken(candidate):
                self.store.reserve(candidate, cid)
                return candidate
        raise Conflict("no free container name")  # the short id is unique: not reached

    async def _create(self, cid: str, name: str, ref: str, info, config: dict, host_config: dict,
                      networking: dict) -> list[str]:
        image_config = info.config or {}
        merged = specs.merge_config(config, image_config)
        merged["Image"] = ref
        healthcheck = health.merge_healthcheck(config.get("Healthcheck"), image_config.get("Healthcheck"))
        if healthcheck:
            merged["Healthcheck"] = healthcheck  # field by field, as dockerd merges it
        merged.setdefault("Hostname", "")
        if not merged["Hostname"]:
            merged["Hostname"] = cid[:12]
        args = specs.process_args(merged)
        log_config = host_config.get("LogConfig") or {}
        host_config["LogConfig"] = {"Type": log_config.get("Type") or "json-file",
                                    "Config": log_config.get("Config") or {}}
        cdir = self.dir_of(cid)
        os.makedirs(cdir, mode=0o710)
        snapshot_made = record_made = False
        try:
            await rpc(self._ctr.snapshots.Prepare(spb.PrepareSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=cid, parent=info.top_chain_id)))
            snapshot_made = True
            c = Container(id=cid, name=name, created=timeutil.format_rfc3339(timeutil.now_ns()),
                          image=ref, image_id=info.id, path=args[0], args=args[1:], config=merged,
                          host_config=host_config, state=State(),
                          network_settings=self.daemon.networks.initial_settings(host_config, networking),
                          mounts=_mount_points(host_config),
                          log_path=("" if log_driver(host_config) == "none"
                                    else os.path.join(cdir, f"{cid}-json.log")))
            spec, warnings = await self._build_spec(c, image_config)
            if host_config.get("NetworkMode") == "host" and host_config.get("PortBindings"):
                warnings.append("Published ports are discarded when using host network mode")  # dockerd's
            await rpc(self._ctr.containers.Create(cpb.CreateContainerRequest(container=cpb.Container(
                id=cid, image=(info.names[0] if info.names else info.id), snapshotter=SNAPSHOTTER,
                snapshot_key=cid, runtime=cpb.Container.Runtime(name=RUNTIME),
                spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode())))))
            record_made = True
            self.store.add(c)
        except BaseException:
            if record_made:
                with contextlib.suppress(DockyardError):
                    await rpc(self._ctr.containers.Delete(cpb.DeleteContainerRequest(id=cid)))
            if snapshot_made:
                with contextlib.suppress(DockyardError):
                    await rpc(self._ctr.snapshots.Remove(spb.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=cid)))
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        self._publish(c, "create")
        return warnings

    async def _image_config(self, c: Container) -> dict:
        try:
            return (await self.daemon.images.resolve(c.image_id)).config or {}
        except NotFound:
            return {}  # the image is gone (rmi -f): the stored Config is already merged

    async def _build_spec(self, c: Container, image_config: dict | None = None,
                          netns_path: str | None = None) -> tuple[dict, list[str]]:
        """The OCI spec of `c` from its stored Config/HostConfig (built again at each start, so
        an update applies). Host files are written first: the spec binds them. `netns_path`:
        the network namespace networks.attach wired for this start."""
        if image_config is None:
            image_config = await self._image_config(c)
        networks = self.daemon.networks
        link_env, link_hosts = self._links(c) if netns_path else ([], [])
        written = hostfiles.write_all(self.dir_of(c.id), hostname=c.config.get("Hostname") or c.id[:12],
                                      domainname=c.config.get("Domainname") or "",
                                      host_config=c.host_config, own=[*link_hosts, *networks.hosts_entries(c)],
                                      embedded_dns=networks.uses_embedded_dns(c),
                                      gateway=networks.gateway_of(c))
        config = c.config
        if link_env:  # before the container's own: its Env wins a clash
            config = {**config, "Env": [*link_env, *(config.get("Env") or [])]}
        paths = specs.ContainerPaths(**written)
        resolve_user = None
        if not _numeric_user(c.config.get("User") or "") or c.host_config.get("GroupAdd"):
            resolve_user = await self._rootfs_user_resolver(c.id)
        try:
            return specs.build_spec(container_id=c.id, config=config, host_config=c.host_config,
                                    image_config=image_config, paths=paths,
                                    cgroup_parent=self._config.cgroup_parent,
                                    api_version=self._config.api_version, resolve_user=resolve_user,
                                    lookup_peer=self._peer, netns_path=netns_path)
        finally:
            if resolve_user is not None:
                resolve_user.close()

    def refresh_hosts(self, c: Container) -> None:
        """/etc/hosts of a running container rewritten in place after a live connect or
        disconnect (dockerd adds and drops the endpoint's line too)."""
        try:
            link_hosts = self._links(c)[1]
        except DockyardError:
            link_hosts = []  # a linked container went away since the start: its line goes
        networks = self.daemon.networks
        text = hostfiles.hosts_file(c.host_config.get("ExtraHosts") or [],
                                    own=[*link_hosts, *networks.hosts_entries(c)], gateway=networks.gateway_of(c))
        hostfiles.write_hosts(os.path.join(self.dir_of(c.id), "hosts"), text)

    def _links(self, c: Container) -> tuple[list[str], list[tuple[str, str]]]:
        """(environment, /etc/hosts lines) of c's legacy links on the default bridge (engine/links.py);
        each target must be running and on the bridge, as dockerd requires at start."""
        env, hosts = [], []
        for link in links.parse_all(c.host_config.get("Links")):
            target = self.store.find(link.target)
            settings = ((target.network_settings.get("Networks") or {}).get("bridge") or {}) if target else {}
            if target is None or not target.state.running or not settings.get("IPAddress"):
                raise Conflict(f"Cannot link to a non running container: /{link.target} AS /{c.name}/{link.alias}")
            ip = settings["IPAddress"]
            env += links.env(link, c.name, ip, target.config.get("Env"), list(target.config.get("ExposedPorts") or {}))
            hosts.append(links.hosts_entry(link, ip, target.config.get("Hostname") or ""))
        return env, hosts

    async def _rootfs_user_resolver(self, cid: str):
        """resolve_user for names: the container's snapshot mounted read-only on a private
        temporary directory while the spec is built (spec.rootfs_user_resolver reads inside it)."""
        reply = await rpc(self._ctr.snapshots.Mounts(spb.MountsRequest(snapshotter=SNAPSHOTTER, key=cid)))
        mounts = [csnapshots.Mount(m.type, m.source, [*m.options, "ro"]) for m in reply.mounts]
        return _MountedResolver(mounts, self._config.exec_root)

    def _peer(self, ref: str) -> specs.Peer:
        c = self.store.get(ref)
        return specs.Peer(id=c.id, pid=c.state.pid if c.state.running else 0,
                          restarting=c.state.restarting)

    # -- start -----------------------------------------------------------------------------------

    async def start_container(self, ref: str, restart: bool = False) -> bool:
        """Starts the container; False when it was running already (the API's 304). `restart`:
        the restart policy's start (its back-off and the user-stop mark stay)."""
        c = self.get(ref)
        restarter = getattr(self.daemon, "restarts", None)
        async with self._lock(c.id):
            st = c.state
            if st.paused:
                raise Conflict("cannot start a paused container, try unpause instead")
            if st.running and not st.restarting:
                return False
            if st.dead or st.removal_in_progress:
                raise Conflict(f"cannot start container {c.id}: container is marked for removal "
                               "and cannot be started")
            if restarter is not None and not restart:
                restarter.cancel(c.id)
                restarter.reset(c.id)
            try:
                await self._start_task(c)
            except DockyardError as e:
                await self._start_failed(c, e)
                raise _start_error(e) from None
            if not restart:
                c.manually_stopped = False
            self.store.save(c)
        self._publish(c, "start")
        return True

    async def _start_task(self, c: Container) -> None:
        # The network is wired first (dockerd resolves named networks at start, not create: a 404
        # at create would send the CLI pulling the image); undone if the start goes no further.
        netns_path = await self.daemon.networks.attach(c)
        try:
            await self._create_and_start_task(c, netns_path)
        except BaseException:
            with contextlib.suppress(DockyardError):
                await self.daemon.networks.detach(c)
            raise

    async def _create_and_start_task(self, c: Container, netns_path: str | None) -> None:
        spec, _ = await self._build_spec(c, netns_path=netns_path)
        await rpc(self._ctr.containers.Update(cpb.UpdateContainerRequest(
            container=cpb.Container(id=c.id, spec=any_pb2.Any(type_url=SPEC_TYPE_URL,
                                                              value=json.dumps(spec).encode())),
            update_mask={"paths": ["spec"]})))
        await self._delete_task(c.id)  # a stale one (a start cut short)
        max_size, max_file = log_options(c.host_config)
        # The `none` driver: the shim's output goes nowhere (inspect's LogPath is "", as dockerd's).
        options = create_options(stdin=bool(c.config.get("OpenStdin")), log_max_size=max_size,
                                 log_max_file=max_file, log_path=c.log_path or os.devnull)
        mounts = await rpc(self._ctr.snapshots.Mounts(spb.MountsRequest(snapshotter=SNAPSHOTTER, key=c.id)))
        await rpc(self._ctr.tasks.Create(tpb.CreateTaskRequest(
            container_id=c.id, rootfs=mounts.mounts, terminal=bool(c.config.get("Tty")), options=options)))
        try:
            # Attaches made before the start (docker run) connect now, before the first byte.
            await attach.before_start(self.daemon, c.id)
            reply = await rpc(self._ctr.tasks.Start(tpb.StartRequest(container_id=c.id)))
        except BaseException:
            with contextlib.suppress(DockyardError):
                await self._delete_task(c.id)
            raise
        self._oom.discard(c.id)
        c.state.set_running(reply.pid, timeutil.now_ns())
        self._watch(c.id, reply.pid)

    async def _start_failed(self, c: Container, error: DockyardError) -> None:
        """dockerd's containerStart clean-up: the error and an exit code (127/126 for a command
        that cannot be run, else 128) in the State, AutoRemove honoured."""
        text = str(error)
        code = EXIT_START_FAILED
        if "executable file not found" in text or "no such file or directory" in text:
            code = 127
        elif "permission denied" in text or "is a directory" in text:
            code = 126
        c.state.set_stopped(code, timeutil.now_ns(), error=text)
        with contextlib.suppress(DockyardError):
            self.store.save(c)
        if c.host_config.get("AutoRemove"):
            self._spawn(self._auto_remove(c.id), f"autoremove {c.id[:12]}")

    async def _delete_task(self, cid: str) -> None:
        with contextlib.suppress(NotFound):
            await rpc(self._ctr.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid)))

    # -- exits -----------------------------------------------------------------------------------

    def _watch(self, cid: str, pid: int) -> None:
        old = self._watchers.pop(cid, None)
        if old is not None and old is not asyncio.current_task():
            old.cancel()
        task = asyncio.get_running_loop().create_task(self._wait_exit(cid, pid), name=f"exit {cid[:12]}")
        self._watchers[cid] = task

    async def _wait_exit(self, cid: str, pid: int) -> None:
        while True:
            try:
                reply = await rpc(self._ctr.tasks.Wait(tpb.WaitRequest(container_id=cid)))
                code, at = reply.exit_status, _ts_ns(reply.exited_at)
                break
            except NotFound:
                code, at = UNKNOWN_EXIT, timeutil.now_ns()  # the task went without a word
                break
            except (Unavailable, SystemFailure) as e:
                if self._closing:
                    return
                log.warning("waiting for container %s: %s; trying again", cid[:12], e)
                await asyncio.sleep(WATCH_RETRY)
            except asyncio.CancelledError:
                return
        if self._watchers.get(cid) is asyncio.current_task():
            del self._watchers[cid]
        await self._exited(cid, pid, code, at)

    async def _exited(self, cid: str, pid: int, code: int, at: int) -> None:
        """Records one exit of the task started with `pid` (ignored if that run is over)."""
        c = self.store.find(cid)
        if c is None:
            return
        async with self._lock(cid):
            st = c.state
            if not st.running or st.restarting or st.pid != pid:
                return
            with contextlib.suppress(DockyardError):
                await self._delete_task(cid)
            await self._detach_network(c)
            # Stamped no earlier than the start we recorded (taken after Tasks.Start returned).
            c.state.set_stopped(code, max(at, st.started_at), oom=cid in self._oom)
            self._oom.discard(cid)
            self.store.save(c)
        self._forget_execs(cid)
        self._publish(c, "die", exitCode=code)
        self._wake_exit(cid, code, "")
        if c.host_config.get("AutoRemove") and not c.state.removal_in_progress:
            await self._auto_remove(cid)
            return
        restarter = getattr(self.daemon, "restarts", None)
        if restarter is not None and self.store.find(cid) is c:
            try:
                await restarter.on_exit(c)
            except Exception:  # noqa: BLE001 - the exit is recorded whatever the policy does
                log.exception("restart policy of %s failed", cid[:12])

    async def _detach_network(self, c: Container) -> None:
        try:
            await self.daemon.networks.detach(c)
        except DockyardError as e:  # the exit is recorded whatever the clean-up meets
            log.error("releasing the network of %s: %s", c.id[:12], e)

    async def _auto_remove(self, cid: str) -> None:
        try:
            await self.remove(cid, force=True)
        except NotFound:
            pass
        except DockyardError as e:
            log.error("auto-removing container %s: %s", cid[:12], e)

    async def _watch_ooms(self) -> None:
        """/tasks/oom of the engine's namespace: OOMKilled for the run it happened in."""
        ns = self._config.namespace
        request = epb.SubscribeRequest(filters=[f'namespace=={ns},topic=="/tasks/oom"'])
        while not self._closing:
            try:
                async for envelope in self._ctr.events.Subscribe(request):
                    event = task_pb2.TaskOOM()
                    if not envelope.event.Unpack(event):
                        continue
                    self._on_oom(event.container_id)
            except asyncio.CancelledError:
                return
            except Exception as e:  # noqa: BLE001 - containerd away: subscribe again
                log.debug("oom events: %s", e)
            if not self._closing:
                await asyncio.sleep(WATCH_RETRY)

    def _on_oom(self, cid: str) -> None:
        c = self.store.find(cid)
        if c is None:
            return
        if c.state.running and not c.state.restarting:
            self._oom.add(cid)
        else:  # the exit was recorded first: the OOM belongs to that run
            c.state.oom_killed = True
            self.store.save(c)
        self._publish(c, "oom")

    # -- waiters ---------------------------------------------------------------------------------

    def _waiters_of(self, cid: str) -> _Waiters:
        w = self._waiters.get(cid)
        if w is None:
            w = self._waiters[cid] = _Waiters()
        return w

    def _next_exit(self, cid: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiters_of(cid).exits.append(fut)
        return fut

    def _wake_exit(self, cid: str, code: int, error: str) -> None:
        w = self._waiters.get(cid)
        if w is None:
            return
        futures, w.exits = w.exits, []
        for fut in futures:
            if not fut.done():
                fut.set_result((code, error))

    def _wake_removed(self, cid: str, code: int) -> None:
        w = self._waiters.pop(cid, None)
        if w is None:
            return
        for fut in (*w.exits, *w.removed):
            if not fut.done():
                fut.set_result((code, ""))

    async def wait(self, ref: str, condition: str = "not-running") -> dict:
        """POST /containers/{id}/wait: {"StatusCode", "Error"} once the condition holds."""
        condition = condition or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(f"invalid condition: {condition!r}: want one of {', '.join(WAIT_CONDITIONS)}")
        c = self.get(ref)
        return await self.wait_for(c, condition)

    def waiter(self, c: Container, condition: str) -> asyncio.Future | dict:
        """The result now (a dict) or a future of it, registered at once: the route calls
        this before it sends its 200, so no exit can fall between."""
        running = c.state.running and not c.state.restarting
        if condition == "not-running" and not running:
            return _wait_result(c.state.exit_code, "")
        fut = asyncio.get_running_loop().create_future()
        w = self._waiters_of(c.id)
        (w.removed if condition == "removed" else w.exits).append(fut)
        return fut

    async def wait_for(self, c: Container, condition: str) -> dict:
        w = self.waiter(c, condition)
        if isinstance(w, dict):
            return w
        try:
            code, error = await w
        finally:
            self.discard_waiter(c.id, w)
        return _wait_result(code, error)

    def discard_waiter(self, cid: str, fut: asyncio.Future) -> None:
        w = self._waiters.get(cid)
        if w is not None:
            for lst in (w.exits, w.removed):
                if fut in lst:
                    lst.remove(fut)

    # -- stop, kill, restart -----------------------------------------------------------------------

    async def _signal(self, c: Container, sig: int) -> None:
        try:
            await rpc(self._ctr.tasks.Kill(tpb.KillRequest(container_id=c.id, signal=sig, all=False)))
        except NotFound:
            return  # exited meanwhile: the watcher records it
        self._publish(c, "kill", signal=sig)
        if c.state.paused and sig == signals.SIGKILL:
            # A frozen cgroup v1 holds even SIGKILL; v2 kills through the freezer.
            with contextlib.suppress(DockyardError):
                await rpc(self._ctr.tasks.Resume(tpb.ResumeTaskRequest(container_id=c.id)))

    def _cancel_restart(self, c: Container) -> bool:
        """A pending restart dropped by a user stop/kill; True if there was one (the
        container then simply stays stopped)."""
        restarter = getattr(self.daemon, "restarts", None)
        if restarter is None or not restarter.cancel(c.id):
            return False
        c.state.set_stopped(c.state.exit_code, c.state.finished_at)
        c.manually_stopped = True
        self.store.save(c)
        return True

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> bool:
        """Stop signal, up to `timeout` seconds (-1: forever), then SIGKILL. False if the
        container was not running (the API's 304)."""
        c = self.get(ref)
        stop_signal = parse_signal(signal or c.config.get("StopSignal"), signals.SIGTERM)
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            if timeout is None:
                timeout = DEFAULT_STOP_TIMEOUT
        async with self._lock(c.id):
            if self._cancel_restart(c):
                return True
            if not c.state.running:
                return False
            c.manually_stopped = True
            self.store.save(c)
            exited = self._next_exit(c.id)
        try:
            await self._signal(c, stop_signal)
            if timeout is None or timeout < 0:
                await asyncio.shield(exited)
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(exited), timeout)
                except asyncio.TimeoutError:
                    await self._signal(c, signals.SIGKILL)
                    await asyncio.wait_for(asyncio.shield(exited), KILL_WAIT)
        except asyncio.TimeoutError:
            raise SystemFailure(f"cannot stop container {c.id}: it did not exit after SIGKILL") from None
        finally:
            self.discard_waiter(c.id, exited)
        self._publish(c, "stop")
        return True

    async def kill(self, ref: str, signal: str | None = None) -> None:
        c = self.get(ref)
        sig = parse_signal(signal, signals.SIGKILL)
        exited = None
        async with self._lock(c.id):
            if self._cancel_restart(c):
                return
            if not c.state.running:
                raise Conflict(f"cannot kill container: {ref}: container {c.id} is not running")
            if sig in (signals.SIGKILL, parse_signal(c.config.get("StopSignal"), signals.SIGTERM)):
                c.manually_stopped = True
                self.store.save(c)
            if sig == signals.SIGKILL:
                exited = self._next_exit(c.id)
        try:
            await self._signal(c, sig)
            if exited is not None:
                # dockerd's Kill returns once a SIGKILLed container is down.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), KILL_WAIT)
        finally:
            if exited is not None:
                self.discard_waiter(c.id, exited)

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        c = self.get(ref)
        await self.stop(c.id, timeout, signal)
        await self.start_container(c.id)
        self._publish(c, "restart")

    # -- pause -----------------------------------------------------------------------------------

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c.id):
            if not c.state.running or c.state.restarting:
                raise Conflict(f"Container {c.id} is not running")
            if c.state.paused:
                raise Conflict(f"Container {c.id} is already paused")
            await rpc(self._ctr.tasks.Pause(tpb.PauseTaskRequest(container_id=c.id)))
            c.state.set_paused()
            self.store.save(c)
        self._publish(c, "pause")

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c.id):
            if not c.state.paused:
                raise Conflict(f"Container {c.id} is not paused")
            await rpc(self._ctr.tasks.Resume(tpb.ResumeTaskRequest(container_id=c.id)))
            c.state.set_unpaused()
            self.store.save(c)
        self._publish(c, "unpause")

    # -- remove ----------------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False, link: bool = False) -> None:
        if link:
            await self._remove_link(ref)
            return
        c = self.get(ref)
        exited = None
        async with self._lock(c.id):
            if self.store.find(c.id) is not c:
                raise NotFound(f"No such container: {ref}")
            st = c.state
            if st.removal_in_progress:
                raise Conflict(f"removal of container {c.id} is already in progress")
            # Running includes restarting (a restart policy's back-off), as in dockerd: neither
            # goes without force.
            if st.running and not force:
                if st.paused:
                    raise Conflict(f'cannot remove container "/{c.name}": container is paused '
                                   "and must be unpaused first")
                word = "restarting" if st.restarting else "running"
                raise Conflict(f'cannot remove container "/{c.name}": container is {word}: '
                               "stop the container before removing or force remove")
            restarter = getattr(self.daemon, "restarts", None)
            if restarter is not None:
                restarter.forget(c.id)
            if st.running and not st.restarting:
                exited = self._next_exit(c.id)
            c.state.set_removal_in_progress()
            self.store.save(c)
        if exited is not None:
            try:
                await self._signal(c, signals.SIGKILL)
                await asyncio.wait_for(asyncio.shield(exited), KILL_WAIT)
            except asyncio.TimeoutError:
                log.warning("container %s did not exit after SIGKILL: removing its task", c.id[:12])
            finally:
                self.discard_waiter(c.id, exited)
        async with self._lock(c.id):
            await self._destroy(c)
        self._publish(c, "destroy")
        self._wake_removed(c.id, c.state.exit_code)
        self._locks.pop(c.id, None)

    async def _remove_link(self, ref: str) -> None:
        """DELETE /containers/<me>/<alias>?link=1: the link goes from <me>'s HostConfig (the
        running container keeps what it was started with, as in dockerd)."""
        parent, _, alias = ref.lstrip("/").rpartition("/")
        if not parent or not alias:
            raise InvalidArgument(f"Conflict, cannot remove the default link name: {ref}")
        c = self.get(parent)
        async with self._lock(c.id):
            kept = [x for x in c.host_config.get("Links") or () if links.parse(x).alias != alias]
            if len(kept) == len(c.host_config.get("Links") or ()):
                raise NotFound(f"No such link: {ref}")
            c.host_config["Links"] = kept or None
            self.store.save(c)

    async def _destroy(self, c: Container) -> None:
        watcher = self._watchers.pop(c.id, None)
        if watcher is not None:
            watcher.cancel()
        await self._delete_task(c.id)
        await self._detach_network(c)
        with contextlib.suppress(NotFound):
            await rpc(self._ctr.containers.Delete(cpb.DeleteContainerRequest(id=c.id)))
        with contextlib.suppress(NotFound):
            await rpc(self._ctr.snapshots.Remove(spb.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=c.id)))
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, self.dir_of(c.id), True)
        self.store.delete(c)
        self._oom.discard(c.id)
        self._forget_execs(c.id)

    def _forget_execs(self, cid: str) -> None:
        """A container's execs end with its task (dockerd drops them at the exit)."""
        execs = getattr(self.daemon, "execs", None)
        if execs is not None:
            execs.forget(cid)

    # -- rename, update --------------------------------------------------------------------------

    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        new_name = names.validate_name(new_name)
        if new_name == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        old = c.name
        async with self._lock(c.id):
            self.store.rename(c, new_name)
            self.daemon.networks.rename_container(c, old)
            self.store.save(c)
        self._publish(c, "rename", oldName="/" + old)

    async def update(self, ref: str, body: dict) -> list[str]:
        """POST /containers/{id}/update: resources (applied to a running task at once) and the
        restart policy. Returns dockerd's warnings."""
        body = go_keys(body, UPDATE_KEYS)
        unknown = sorted(set(body) - UPDATE_KEYS)
        if unknown:
            raise InvalidArgument(f"unknown field \"{unknown[0]}\" in the update")
        changes = {k: v for k, v in body.items() if v is not None}
        _check_types(changes, _HOST_TYPES, "")
        c = self.get(ref)
        async with self._lock(c.id):
            hc = {**c.host_config}
            for key, value in changes.items():
                if key == "RestartPolicy":
                    if value.get("Name") or not c.host_config.get("RestartPolicy"):
                        hc[key] = value
                    continue
                if value in (0, "") and key not in ("PidsLimit",):
                    continue  # zero means "unchanged" in dockerd's update
                hc[key] = value
            if changes.get("RestartPolicy", {}).get("Name") not in (None, "", "no") and hc.get("AutoRemove"):
                raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled "
                                      "for the container")
            restarts.validate_restart_policy(hc)
            old, c.host_config = c.host_config, hc
            try:
                spec, warnings = await self._build_spec(c)
                if c.state.running and not c.state.restarting and set(changes) - {"RestartPolicy"}:
                    resources = (spec.get("linux") or {}).get("resources") or {}
                    await rpc(self._ctr.tasks.Update(tpb.UpdateTaskRequest(
                        container_id=c.id, resources=any_pb2.Any(
                            type_url="types.dockyard.dev/json", value=json.dumps(resources).encode()))))
                self.store.save(c)
            except DockyardError as e:
                c.host_config = old
                raise type(e)(f"Cannot update container {c.id}: {e}") from None
        self._publish(c, "update")
        return warnings

    # -- list, inspect ---------------------------------------------------------------------------

    async def _sizes(self, c: Container) -> tuple[int, int]:
        try:
            usage = await rpc(self._ctr.snapshots.Usage(spb.UsageRequest(snapshotter=SNAPSHOTTER, key=c.id)))
            rw = int(usage.size)
        except DockyardError:
            rw = 0
        try:
            image_size = int((await self.daemon.images.resolve(c.image_id)).size)
        except DockyardError:
            image_size = 0
        return rw, rw + image_size

    async def list(self, all: bool = False, limit: int = -1, size: bool = False,  # noqa: A002
                   filters: Filters | None = None) -> list[dict]:
        filters = filters or Filters()
        filters.validate(LIST_FILTERS)
        for s in filters.values("status"):
            if s not in STATUSES:
                raise InvalidArgument(f"invalid filter 'status={s}'")
        for h in filters.values("health"):
            if h not in HEALTH:
                raise InvalidArgument(f"invalid filter 'health={h}'")
        exited = []
        for e in filters.values("exited"):
            try:
                exited.append(int(e))
            except ValueError:
                raise InvalidArgument(f"invalid filter 'exited={e}'") from None
        is_task = filters.get_bool("is-task", False)
        before = self._bound(filters.values("before"), "before")
        since = self._bound(filters.values("since"), "since")
        ancestors = await self._ancestors(filters.values("ancestor"))
        show_all = all or limit > 0 or filters.contains("status") or filters.contains("exited")
        now = timeutil.now_ns()
        out = []
        for c in self.store.list():
            if before is not None and c.created >= before.created:
                continue
            if since is not None and c.created <= since.created:
                continue
            st = c.state
            if not show_all and not st.running:
                continue
            if is_task:
                continue  # no swarm tasks here
            if not filters.fuzzy_match("id", c.id) or not filters.match("name", "/" + c.name):
                continue
            if not filters.match_kv("label", c.config.get("Labels") or {}):
                continue
            if not filters.exact_match("status", st.status):
                continue
            if exited and (st.running or st.status == "created" or st.exit_code not in exited):
                continue
            if filters.contains("health"):
                health = st.health.status if st.health is not None else "none"
                if health not in filters.values("health"):
                    continue
            if ancestors is not None and c.image_id not in ancestors and c.image not in filters.values("ancestor"):
                continue
            if filters.contains("volume") and not any(
                    m.get("Destination") in filters.values("volume") or m.get("Name") in filters.values("volume")
                    for m in c.mounts):
                continue
            if filters.contains("network") and not any(
                    n in filters.values("network") for n in (c.network_settings.get("Networks") or {})):
                continue
            if filters.contains("publish") or filters.contains("expose"):
                if not self._port_match(c, filters):
                    continue
            out.append(await self.summary(c, size, now))
            if limit > 0 and len(out) >= limit:
                break
        return out

    def _port_match(self, c: Container, filters: Filters) -> bool:
        """dockerd's publish/expose filters: "80", "80/udp" or a range "8000-8080[/tcp]", against
        the published host ports (publish) or the container's exposed ports (expose)."""
        exposed = set(c.config.get("ExposedPorts") or {})
        published = {f"{b.host_port}/{b.proto}" for b in portmap.bindings_from_view(c.network_settings.get("Ports"))}
        return (any(_port_in(value, published) for value in filters.values("publish"))
                or any(_port_in(value, exposed) for value in filters.values("expose")))

    def _bound(self, refs: list[str], what: str) -> Container | None:
        if not refs:
            return None
        try:
            return self.store.get(refs[0])
        except NotFound:
            raise NotFound(f"No such container: {refs[0]}") from None

    async def _ancestors(self, refs: list[str]) -> set[str] | None:
        if not refs:
            return None
        ids = set()
        for ref in refs:
            try:
                ids.add((await self.daemon.images.resolve(ref)).id)
            except (NotFound, InvalidArgument):
                continue
        return ids

    async def summary(self, c: Container, size: bool = False, now: int | None = None) -> dict:
        ports = c.network_settings.get("Ports") or {}
        item = {
            "Id": c.id, "Names": ["/" + c.name], "Image": c.image, "ImageID": c.image_id,
            "Command": " ".join([c.path, *c.args]), "Created": timeutil.to_ns(c.created) // timeutil.SECOND,
            "Ports": portmap.summary_ports(ports, portmap.bindings_from_view(ports)),
            "Labels": c.config.get("Labels") or {}, "State": c.state.status,
            "Status": status_string(c.state, now if now is not None else timeutil.now_ns()),
            "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode") or self._config.default_network_mode},
            "NetworkSettings": {"Networks": c.network_settings.get("Networks") or {}},
            "Mounts": c.mounts,
        }
        if size:
            item["SizeRw"], item["SizeRootFs"] = await self._sizes(c)
        return item

    async def inspect(self, ref: str, size: bool = False) -> dict:
        c = self.get(ref)
        cdir = self.dir_of(c.id)
        execs = getattr(self.daemon, "execs", None)
        exec_ids = None
        if execs is not None:
            exec_ids = execs.ids_of(c.id) or None
        out = {
            "Id": c.id, "Created": c.created, "Path": c.path, "Args": c.args,
            "State": c.state.to_dict(), "Image": c.image_id,
            "ResolvConfPath": os.path.join(cdir, "resolv.conf"),
            "HostnamePath": os.path.join(cdir, "hostname"), "HostsPath": os.path.join(cdir, "hosts"),
            "LogPath": c.log_path, "Name": "/" + c.name, "RestartCount": c.restart_count,
            "Driver": SNAPSHOTTER, "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
            "AppArmorProfile": "", "ExecIDs": exec_ids, "HostConfig": _host_config_view(c.host_config),
            "GraphDriver": {"Name": SNAPSHOTTER, "Data": None}, "Mounts": c.mounts,
            "Config": _config_view(c), "NetworkSettings": c.network_settings,
        }
        if size:
            out["SizeRw"], out["SizeRootFs"] = await self._sizes(c)
        return out

    # -- prune -----------------------------------------------------------------------------------

    async def prune(self, filters: Filters | None = None) -> dict:
        filters = filters or Filters()
        filters.validate(PRUNE_FILTERS)
        until = None
        if filters.values("until"):
            until = timeutil.parse_timestamp(filters.values("until")[0])
        deleted, reclaimed = [], 0
        for c in self.store.list():
            if c.state.running or c.state.removal_in_progress:
                continue
            if until is not None and timeutil.to_ns(c.created) >= until:
                continue
            labels = c.config.get("Labels") or {}
            if not filters.match_kv("label", labels):
                continue
            if filters.values("label!") and any(_label_matches(labels, e) for e in filters.values("label!")):
                continue
            rw, _ = await self._sizes(c)
            try:
                await self.remove(c.id)
            except (Conflict, NotFound):
                continue
            deleted.append(c.id)
            reclaimed += rw
        events = getattr(self.daemon, "events", None)
        if events is not None:
            events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # -- restore ---------------------------------------------------------------------------------

    async def _restore(self) -> None:
        """Live restore: match the stored containers with their tasks (module docstring)."""
        known = set()
        for c in self.store.list():
            known.add(c.id)
            try:
                await self._restore_one(c)
            except DockyardError as e:
                log.error("restoring container %s: %s", c.id[:12], e)
        await self._remove_strays(known)

    async def _restore_one(self, c: Container) -> None:
        st = c.state
        if st.removal_in_progress:
            await self._destroy(c)
            return
        try:
            reply = await rpc(self._ctr.tasks.Get(tpb.GetRequest(container_id=c.id)))
            proc = reply.process
        except NotFound:
            proc = None
        running = st.running and not st.restarting
        if proc is not None and proc.status in (tpb.RUNNING, tpb.PAUSED, tpb.PAUSING) and running:
            if st.pid != proc.pid:
                st.set_running(proc.pid, st.started_at)
            if proc.status == tpb.RUNNING and st.paused:
                st.set_unpaused()
            elif proc.status != tpb.RUNNING and not st.paused:
                st.set_paused()
            self.store.save(c)
            self._watch(c.id, proc.pid)
            return
        if running:
            # Exited while we were away (or lost with its shim): record it now.
            stopped = proc is not None and proc.status == tpb.STOPPED
            code = proc.exit_status if stopped else UNKNOWN_EXIT
            at = _ts_ns(proc.exited_at) if stopped and proc.HasField("exited_at") else timeutil.now_ns()
            await self._exited(c.id, st.pid, code, at)
        elif proc is not None:
            await self._delete_task(c.id)  # a start cut short
        if st.restarting:
            # A restart was pending when the daemon went down: Restarts.start decides again.
            st.set_stopped(st.exit_code, st.finished_at, oom=st.oom_killed)
            self.store.save(c)

    async def _remove_strays(self, known: set[str]) -> None:
        try:
            reply = await rpc(self._ctr.containers.List(cpb.ListContainersRequest()))
        except DockyardError as e:
            log.warning("listing containerd containers: %s", e)
            return
        for rec in reply.containers:
            if rec.id in known:
                continue
            log.info("removing container %s left by an interrupted create", rec.id[:12])
            with contextlib.suppress(DockyardError):
                await self._delete_task(rec.id)
                await rpc(self._ctr.containers.Delete(cpb.DeleteContainerRequest(id=rec.id)))
            with contextlib.suppress(DockyardError):
                await rpc(self._ctr.snapshots.Remove(spb.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=rec.id)))
            shutil.rmtree(self.dir_of(rec.id), ignore_errors=True)


# --- helpers -------------------------------------------------------------------------------------

def _port_in(value: str, ports: set[str]) -> bool:
    """Whether a publish/expose filter value ("80", "80/udp", "8000-8080/tcp") names one of
    `ports` ("80/tcp" …)."""
    spec, _, proto = value.partition("/")
    proto = proto or "tcp"
    low, _, high = spec.partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        raise InvalidArgument(f"invalid port filter: {value}") from None
    for port in ports:
        number, _, p = port.partition("/")
        if (p or "tcp") == proto and number.isdigit() and first <= int(number) <= last:
            return True
    return False


def _wait_result(code: int, error: str) -> dict:
    return {"StatusCode": code, "Error": {"Message": error} if error else None}


def _ts_ns(ts) -> int:
    return ts.seconds * timeutil.SECOND + ts.nanos if ts is not None else 0


def _numeric_user(user: str) -> bool:
    name, _, group = user.partition(":")
    return (not name or name.isdigit()) and (not group or group.isdigit())


def _label_matches(labels: dict, expr: str) -> bool:
    key, eq, value = expr.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _start_error(e: DockyardError) -> DockyardError:
    """A failed start in dockerd's words: the CLI picks its exit status (127 command not found,
    126 not executable, else 125) from the message (cli run.go runStartContainerErr)."""
    text = str(e)
    if isinstance(e, (Conflict, NotFound, InvalidArgument, Unsupported)) and "exec:" not in text:
        return e
    message = f"failed to create task for container: {text}"
    if "executable file not found" in text or "no such file or directory" in text \
            or "permission denied" in text or "is a directory" in text:
        return InvalidArgument(message)
    return type(e)(message)


class _MountedResolver:
    """spec.rootfs_user_resolver over a snapshot mounted for the time of one spec build."""

    def __init__(self, mounts: list, exec_root: str):
        os.makedirs(exec_root, mode=0o711, exist_ok=True)
        self._dir = tempfile.mkdtemp(prefix="userns-", dir=exec_root)
        self._mounted = False
        try:
            csnapshots.mount_all(mounts, self._dir)
            self._mounted = True
        except DockyardError:
            os.rmdir(self._dir)
            raise
        self._resolve = specs.rootfs_user_resolver(self._dir)

    def __call__(self, user: str, group_add: list):
        return self._resolve(user, group_add)

    def close(self) -> None:
        if self._mounted:
            with contextlib.suppress(DockyardError):
                csnapshots.unmount_all(self._dir)
            self._mounted = False
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)
