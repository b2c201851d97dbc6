"""System routes: `/_ping` (GET and HEAD), `/version` (SystemVersion), `/info` (SystemInfo),
as moby's api/server/router/system serves them (engine-api.md §1.1; the schema's SystemVersion
and SystemInfo). `/system/df` and `/events` belong to api/df.py and api/events.py."""

from __future__ import annotations

import os
import platform
import socket

from aiohttp import web

import dockyard
from dockyard.errors import Unavailable

from . import DAEMON
from .httputil import json_response

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def routes() -> list[web.RouteDef]:
    return [
        web.get("/_ping", ping),  # HEAD too (allow_head)
        web.get("/version", version),
        web.get("/info", info),
        web.post("/swarm/leave", swarm_leave),
    ]


async def swarm_leave(request: web.Request) -> web.Response:
    """dockerd's answer off swarm mode (clients such as docker-py's tests leave "just in case")."""
    raise Unavailable("This node is not part of a swarm")


async def ping(request: web.Request) -> web.Response:
    headers = {"Builder-Version": "1", "Swarm": "inactive",
               "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}
    if request.method == "HEAD":
        return web.Response(headers={**headers, "Content-Type": "text/plain; charset=utf-8",
                                     "Content-Length": "0"})
    return web.Response(text="OK", headers=headers)


def _arch() -> str:
    machine = platform.machine()
    return _GOARCH.get(machine, machine)


def _os_release() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip('"')
    except OSError:
        pass
    return "Linux"


async def version(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    config = daemon.config
    components = [{"Name": "Engine", "Version": dockyard.__version__,
                   "Details": {"ApiVersion": config.api_version, "MinAPIVersion": config.min_api_version,
                               "Os": "linux", "Arch": _arch(), "KernelVersion": platform.release(),
                               "Experimental": "false", "GitCommit": daemon.revision,
                               "GoVersion": f"python{platform.python_version()}"}}]
    containerd_version = await daemon.containerd_version()
    if containerd_version:
        components.append({"Name": "dockyard-containerd", "Version": containerd_version,
                           "Details": {"GitCommit": daemon.revision}})
    components.append({"Name": "dockyard-runc", "Version": dockyard.__version__,
                       "Details": {"GitCommit": daemon.revision}})
    return json_response({
        "Platform": {"Name": "Dockyard Engine"},
        "Components": components,
        "Version": dockyard.__version__,
        "ApiVersion": config.api_version,
        "MinAPIVersion": config.min_api_version,
        "GitCommit": daemon.revision,
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": platform.release(),
        "BuildTime": "",
    })


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


async def _counts(daemon) -> tuple[int, int, int, int, int]:
    """(containers, running, paused, stopped, images)."""
    running = paused = stopped = 0
    for c in daemon.store.list():
        if c.state.paused:
            paused += 1
        elif c.state.running:
            running += 1
        else:
            stopped += 1
    images = len(await daemon.images.all())
    return running + paused + stopped, running, paused, stopped, images


async def info(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    config = daemon.config
    total, running, paused, stopped, images = await _counts(daemon)
    cgroup_version = _cgroup_version()
    warnings = list(daemon.warnings)
    return json_response({
        "ID": daemon.id,
        "Containers": total,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlayfs",
        "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
        "Plugins": {"Volume": [], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": cgroup_version == "2" or os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "OomKillDisable": cgroup_version == "1",
        "IPv4Forwarding": False,
        "BridgeNfIptables": False,
        "BridgeNfIp6tables": False,
        "Debug": config.effective_log_level == "debug",
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": _now(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "NEventsListener": daemon.events_listeners(),
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_release(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None,
                           "AllowNondistributableArtifactsHostnames": None,
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                           "Mirrors": None},
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": config.data_root,
        "HttpProxy": os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy", "")),
        "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": dockyard.__version__,
        "Runtimes": {"runc": {"path": "dockyard-runc"}},
        "DefaultRuntime": "runc",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": config.live_restore,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": daemon.revision},
        "RuncCommit": {"ID": daemon.revision},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"] + (["name=cgroupns"] if cgroup_version == "2" else []),
        "DefaultAddressPools": [p.to_dict() for p in config.default_address_pools],
        "Warnings": warnings,
    })


def _now() -> str:
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="microseconds")
