"""Docker container configuration → OCI runtime spec (config.json), with Docker's secure defaults.

`build_spec` is what dockerd's `createSpec` (moby daemon/oci_linux.go) does for one container:
it merges the create request's Config with the image's config (Docker's rules for Entrypoint,
Cmd, Env, User, WorkingDir), validates the HostConfig with the messages dockerd uses, and
writes a runtime-spec 1.2 document: the default profile of /work/shared/reference/security.md §1
(14 capabilities, the default seccomp profile filtered by those capabilities, masked and
read-only paths incl. each cpu's thermal_throttle, the device cgroup, private namespaces) plus
the container's mounts, resources, namespaces and limits.

Everything that needs the host or other containers comes in as data or as a hook, so the module
stays testable without root: `paths` (the per-container hostname/hosts/resolv.conf files written
by `dockyard.engine.hostfiles`), `resolve_user` (user names live in the container's /etc/passwd;
`rootfs_user_resolver` reads them safely from a mounted rootfs), `lookup_peer` (for
`container:<id>` namespace modes). Bind sources are stat'ed on the host (devices, missing -v
sources are created as Docker does).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import glob
import json
import os
import posixpath
import re
import stat
from typing import Callable

from dockyard.errors import Conflict, InvalidArgument, Unsupported
from dockyard.oci.defaults import (
    DEFAULT_PATH_ENV,
    DOCKER_DEFAULT_CAPABILITIES,
    DOCKER_MASKED_PATHS,
    DOCKER_READONLY_PATHS,
    OCI_VERSION,
)

DEFAULT_SHM_SIZE = 64 * 1024 * 1024  # moby daemon/config: DefaultShmSize
MIN_MEMORY = 6 * 1024 * 1024  # moby daemon/daemon_unix.go: linuxMinMemory
DEFAULT_STOP_SIGNAL = "SIGTERM"
INIT_PATH = "/sbin/docker-init"  # where Docker puts its init (docker-init = tini) in the container
HOST_INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/docker-init",
                        "/usr/libexec/docker/docker-init")
SECCOMP_PROFILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "oci", "schemas",
                               "seccomp-default.json")

# Docker's device cgroup (security.md §1 "Devices"): deny everything, then allow the nodes every
# container gets, and deny /dev/fuse explicitly.
_DEFAULT_DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    *({"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
      for ma, mi in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))),
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
)

_RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
            "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_DEVICE_RULE = re.compile(r"([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})")
# Sysctls a container may set: those namespaced by ipc (kernel.msg*, kernel.sem, kernel.shm*,
# fs.mqueue.*), uts (kernel.hostname/domainname) and net (net.*) — runc refuses the others.
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


@dataclasses.dataclass(frozen=True)
class ContainerPaths:
    """Host files bound into the container (all under <data-root>/containers/<id>/); an empty
    path is not mounted. `shm` is a host directory holding a tmpfs for IpcMode shareable (and
    for containers joining it); when empty, /dev/shm is a tmpfs of the container's own."""
    hostname: str = ""
    hosts: str = ""
    resolv_conf: str = ""
    shm: str = ""


@dataclasses.dataclass(frozen=True)
class Peer:
    """Another container named in `container:<name|id>` modes, as `lookup_peer` returns it."""
    id: str
    pid: int  # 0 when not running
    shm: str = ""  # its ContainerPaths.shm, for ipc container:<id>
    restarting: bool = False


UserResolver = Callable[[str, list], "tuple[int, int, list[int]]"]
PeerLookup = Callable[[str], Peer]


def build_spec(*, container_id: str, config: dict, host_config: dict, image_config: dict,
               paths: ContainerPaths, cgroup_parent: str = "/dockyard", api_version: str = "1.45",
               resolve_user: UserResolver | None = None, lookup_peer: PeerLookup | None = None,
               netns_path: str | None = None) -> tuple[dict, list[str]]:
    """The OCI runtime spec for one container, and dockerd's warnings for it.

    `config` is the create request's Config, `host_config` its HostConfig, `image_config` the
    image config's "config" object (may be empty). `resolve_user(user, group_add)` returns
    (uid, gid, additional_gids) from the container's /etc/passwd and /etc/group; without it only
    numeric users work and names raise InvalidArgument. `lookup_peer(ref)` resolves
    `container:<ref>` modes (raising NotFound). `netns_path` is the network namespace the
    engine made and wired for the container (engine/networks.py); without it a private, empty
    one is asked of the runtime (a spec built at create, or --network none).
    Raises InvalidArgument with Docker's messages."""
    b = _Builder(container_id, config or {}, host_config or {}, image_config or {}, paths,
                 cgroup_parent, api_version, resolve_user, lookup_peer, netns_path)
    return b.build(), b.warnings


def merge_config(config: dict, image_config: dict) -> dict:
    """The container's effective Config: the create request's with the image's defaults, as
    dockerd stores it (moby daemon/commit.go merge, then the [""] reset). The image's Cmd is
    used only when neither Entrypoint nor Cmd was given. Entrypoint `[""]` (`--entrypoint ""`)
    takes nothing from the image, not even its Cmd, and is stored as `[]`: unlike dockerd's
    null, an empty list keeps a second merge with the same image a no-op, so callers may pass
    a stored Config and the image config to `build_spec` again."""
    merged = copy.deepcopy(config)
    image = image_config or {}
    entrypoint = strslice(merged.get("Entrypoint"), "Entrypoint")
    cmd = strslice(merged.get("Cmd"), "Cmd")
    if not entrypoint:
        if not cmd:
            cmd = strslice(image.get("Cmd"), "Cmd")
        if entrypoint is None:
            entrypoint = strslice(image.get("Entrypoint"), "Entrypoint")
    if entrypoint == [""]:
        entrypoint = []
    merged["Entrypoint"] = entrypoint
    merged["Cmd"] = cmd
    if not merged.get("User"):
        merged["User"] = image.get("User") or ""
    if not merged.get("WorkingDir"):
        merged["WorkingDir"] = image.get("WorkingDir") or ""
    env = list(merged.get("Env") or [])
    keys = {e.split("=", 1)[0] for e in env}
    merged["Env"] = env + [e for e in image.get("Env") or [] if e.split("=", 1)[0] not in keys]
    labels = dict(image.get("Labels") or {})
    labels.update(merged.get("Labels") or {})
    merged["Labels"] = labels
    ports = dict(image.get("ExposedPorts") or {})
    ports.update(merged.get("ExposedPorts") or {})
    if ports:
        merged["ExposedPorts"] = ports
    volumes = dict(image.get("Volumes") or {})
    volumes.update(merged.get("Volumes") or {})
    if volumes:
        merged["Volumes"] = volumes
    for key in ("Healthcheck", "StopSignal", "OnBuild", "Shell"):
        if not merged.get(key) and image.get(key):
            merged[key] = copy.deepcopy(image[key])
    return merged


def process_args(config: dict) -> list[str]:
    """Path + Args of a merged Config (Entrypoint then Cmd); InvalidArgument when empty."""
    args = (strslice(config.get("Entrypoint"), "Entrypoint") or []) + \
        (strslice(config.get("Cmd"), "Cmd") or [])
    if not args:
        raise InvalidArgument("No command specified")
    return args


def rootfs_user_resolver(rootfs: str) -> UserResolver:
    """A `resolve_user` reading /etc/passwd and /etc/group inside a mounted rootfs, with every
    path component resolved inside it (openat2 RESOLVE_IN_ROOT: a symlinked /etc/passwd cannot
    point at the host's) and never through NSS (security.md, CVE-2019-14271)."""
    from dockyard.linux import fs
    from dockyard.linux.user import parse_user_spec

    def read(name: str) -> str:
        root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = fs.open_in_root(root, name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return ""
        finally:
            os.close(root)
        with os.fdopen(fd, "rb") as f:
            return f.read(4 << 20).decode("utf-8", "replace")

    def resolve(user: str, group_add: list) -> tuple[int, int, list[int]]:
        passwd, group = read("/etc/passwd"), read("/etc/group")
        return _with_group_add(parse_user_spec(user or "0", passwd, group), group_add, group)

    return resolve


def numeric_user(user: str, group_add: list) -> tuple[int, int, list[int]]:
    """The fallback `resolve_user`: "uid[:gid]" in numbers only, no supplementary groups."""
    from dockyard.linux.user import parse_user_spec

    name, _, group = (user or "0").partition(":")
    if not name.isdigit() or (group and not group.isdigit()):
        raise InvalidArgument(f"unable to find user {name}: the container's /etc/passwd is not available")
    return _with_group_add(parse_user_spec(user or "0", "", ""), group_add, "")


def _with_group_add(ids: tuple[int, int, list[int]], group_add: list, group_text: str):
    from dockyard.linux.user import parse_user_spec

    uid, gid, extra = ids
    extra = list(extra)
    for g in group_add or []:
        # "0:<group>" resolves the group part alone, by number or by name in /etc/group.
        _, number, _ = parse_user_spec(f"0:{g}", "", group_text)
        if number not in extra:
            extra.append(number)
    return uid, gid, extra


# --- the builder ---------------------------------------------------------------------------


class _Builder:
    def __init__(self, cid, config, hc, image, paths, cgroup_parent, api_version, resolve_user,
                 lookup_peer, netns_path):
        self.id, self.hc, self.paths = cid, hc, paths
        self.config = merge_config(config, image)
        self.cgroup_parent = hc.get("CgroupParent") or cgroup_parent
        self.api_version = api_version
        self.resolve_user = resolve_user or numeric_user
        self.lookup_peer = lookup_peer
        self.netns_path = netns_path
        self.warnings: list[str] = []
        self.privileged = bool(hc.get("Privileged"))
        self.spec: dict = {}

    def build(self) -> dict:
        self.security = _security_opts(self.hc.get("SecurityOpt") or [])
        linux: dict = {"resources": {}, "namespaces": [], "cgroupsPath": self._cgroups_path()}
        self.spec = {"ociVersion": OCI_VERSION, "root": {"path": "rootfs"}, "mounts": [],
                     "linux": linux}
        if self.hc.get("ReadonlyRootfs"):
            self.spec["root"]["readonly"] = True
        self._process()
        self._namespaces()
        self._hostname()
        self._resources()
        self._devices()
        self._mounts()
        self._security_paths()
        self._sysctls()
        self._seccomp()
        if not linux["resources"]:
            del linux["resources"]
        return self.spec

    # process ---------------------------------------------------------------------------

    def _process(self) -> None:
        c, hc = self.config, self.hc
        args = process_args(c)
        if hc.get("Init"):
            args = [INIT_PATH, "--", *args]
        cwd = c.get("WorkingDir") or "/"
        if not cwd.startswith("/"):
            raise InvalidArgument(
                f"the working directory '{cwd}' is invalid, it needs to be an absolute path")
        cwd = posixpath.normpath(cwd)
        uid, gid, gids = self.resolve_user(c.get("User") or "", list(hc.get("GroupAdd") or []))
        user: dict = {"uid": uid, "gid": gid}
        if gids:
            user["additionalGids"] = gids
        process: dict = {
            "terminal": bool(c.get("Tty")),
            "user": user,
            "args": args,
            "env": self._env(),
            "cwd": cwd,
            "capabilities": self._capabilities(),
            "noNewPrivileges": self.security["no-new-privileges"],
        }
        size = hc.get("ConsoleSize") or [0, 0]
        if c.get("Tty") and len(size) == 2 and size[0] and size[1]:
            process["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
        rlimits = self._rlimits()
        if rlimits:
            process["rlimits"] = rlimits
        oom = hc.get("OomScoreAdj") or 0
        if not isinstance(oom, int) or not -1000 <= oom <= 1000:
            raise InvalidArgument(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
        process["oomScoreAdj"] = oom
        self.spec["process"] = process

    def _env(self) -> list[str]:
        # dockerd CreateDaemonEnvironment: PATH, HOSTNAME, TERM (tty), then the Config's Env
        # replacing same-named entries; a bare NAME (no "=") removes it.
        env = [DEFAULT_PATH_ENV, f"HOSTNAME={self._hostname_value()}"]
        if self.config.get("Tty"):
            env.append("TERM=xterm")
        for entry in self.config.get("Env") or []:
            if not isinstance(entry, str) or not entry or entry.startswith("="):
                raise InvalidArgument(f"invalid environment variable: {entry!r}")
            key, has_value, _ = entry.partition("=")
            at = next((i for i, e in enumerate(env) if e.partition("=")[0] == key), None)
            if not has_value:
                if at is not None:
                    del env[at]
            elif at is None:
                env.append(entry)
            else:
                env[at] = entry
        return env

    def _capabilities(self) -> dict:
        caps = tweak_capabilities(DOCKER_DEFAULT_CAPABILITIES, self.hc.get("CapAdd") or [],
                                  self.hc.get("CapDrop") or [], self.privileged)
        self.caps = caps
        # Inheritable and ambient stay empty (CVE-2022-24769).
        return {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)}

    def _rlimits(self) -> list[dict]:
        out: dict[str, dict] = {}
        for u in self.hc.get("Ulimits") or []:
            name = str(u.get("Name", "")).lower()
            if name not in _RLIMITS:
                raise InvalidArgument(f"invalid ulimit type: {u.get('Name')}")
            soft, hard = u.get("Soft"), u.get("Hard")
            if not isinstance(soft, int) or not isinstance(hard, int):
                raise InvalidArgument(f"invalid ulimit {name}: soft and hard must be numbers")
            if soft > hard and hard != -1:
                raise InvalidArgument(
                    f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
            unlimited = 2**64 - 1
            out[name] = {"type": f"RLIMIT_{name.upper()}",
                         "hard": unlimited if hard < 0 else hard,
                         "soft": unlimited if soft < 0 else soft}
        return list(out.values())

    # namespaces and hostname -------------------------------------------------------------

    def _namespaces(self) -> None:
        hc, ns = self.hc, self.spec["linux"]["namespaces"]
        ns.append({"type": "mount"})
        # network: the host's, another container's, or the one the engine wired for it.
        net = hc.get("NetworkMode") or "default"
        self.net_mode = net
        if net == "host":
            pass
        elif net.startswith("container:"):
            ns.append({"type": "network", "path": self._peer_ns(net, "net", "network")})
        elif self.netns_path:
            ns.append({"type": "network", "path": self.netns_path})
        else:
            ns.append({"type": "network"})
        uts = hc.get("UTSMode") or ""
        if uts not in ("", "host"):
            raise InvalidArgument(f"invalid UTS mode: {uts}")
        if uts != "host":
            ns.append({"type": "uts"})
        ipc = hc.get("IpcMode") or "private"
        self.ipc_mode = ipc
        if ipc.startswith("container:"):
            ns.append({"type": "ipc", "path": self._peer_ns(ipc, "ipc", "IPC")})
        elif ipc in ("private", "shareable", "none"):
            ns.append({"type": "ipc"})
        elif ipc != "host":
            raise InvalidArgument(f"invalid IPC mode: {ipc}")
        pid = hc.get("PidMode") or ""
        if pid.startswith("container:"):
            ns.append({"type": "pid", "path": self._peer_ns(pid, "pid", "PID")})
        elif pid == "":
            ns.append({"type": "pid"})
        elif pid != "host":
            raise InvalidArgument(f"invalid PID mode: {pid}")
        userns = hc.get("UsernsMode") or ""
        if userns not in ("", "host"):
            raise Unsupported(f"user namespace mode {userns!r} is not supported")
        cgroupns = hc.get("CgroupnsMode") or ("private" if cgroup_v2() else "host")
        if cgroupns not in ("private", "host"):
            raise InvalidArgument(f"invalid cgroup namespace mode: {cgroupns}")
        if cgroupns == "private":
            ns.append({"type": "cgroup"})

    def _peer_ns(self, mode: str, proc_name: str, what: str) -> str:
        ref = mode.partition(":")[2]
        if not ref:
            raise InvalidArgument(f"invalid {what} mode: {mode}")
        if self.lookup_peer is None:
            raise Unsupported(f"joining another container's {what} namespace is not available here")
        peer = self.lookup_peer(ref)
        if peer.id == self.id:
            raise InvalidArgument(f"cannot join own {what} namespace")
        if peer.restarting:
            raise Conflict(f"Container {peer.id} is restarting, wait until the container is running")
        if not peer.pid:
            raise Conflict(f"cannot join {what} of a non running container: {peer.id}")
        if proc_name == "ipc":
            self.ipc_peer = peer
        return f"/proc/{peer.pid}/ns/{proc_name}"

    def _hostname_value(self) -> str:
        return self.config.get("Hostname") or self.id[:12]

    def _hostname(self) -> None:
        if (self.hc.get("UTSMode") or "") == "host":
            return
        hostname = self._hostname_value()
        if len(hostname) > 64:
            raise InvalidArgument(f"invalid hostname format: {hostname}")
        self.spec["hostname"] = hostname
        if self.config.get("Domainname"):
            self.spec["domainname"] = self.config["Domainname"]

    # resources -----------------------------------------------------------------------------

    def _cgroups_path(self) -> str:
        parent = self.cgroup_parent
        if not parent.startswith("/"):
            parent = "/" + parent
        return posixpath.join(parent, self.id)

    def _resources(self) -> None:
        hc = self.hc
        r = self.spec["linux"]["resources"]
        memory: dict = {}
        mem = hc.get("Memory") or 0
        reservation = hc.get("MemoryReservation") or 0
        swap = hc.get("MemorySwap") or 0
        if mem and mem < MIN_MEMORY:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        if mem and swap > 0 and swap < mem:
            raise InvalidArgument(
                "Minimum memoryswap limit should be larger than memory limit, see usage")
        if not mem and swap > 0:
            raise InvalidArgument(
                "You should always set the Memory limit when using Memoryswap limit, see usage")
        if reservation and reservation < MIN_MEMORY:
            raise InvalidArgument("Minimum memory reservation allowed is 6MB")
        if mem and reservation and mem < reservation:
            raise InvalidArgument(
                "Minimum memory limit can not be less than memory reservation limit, see usage")
        if mem:
            memory["limit"] = mem
            # dockerd: no MemorySwap with a Memory limit means swap = twice the memory, where
            # the kernel accounts swap at all.
            if swap or swap_limit_supported():
                memory["swap"] = -1 if swap == -1 else (swap or 2 * mem)
        if reservation:
            memory["reservation"] = reservation
        swappiness = hc.get("MemorySwappiness")
        if swappiness is not None and swappiness != -1:
            if not 0 <= swappiness <= 100:
                raise InvalidArgument(
                    f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
            if cgroup_v2():
                self.warnings.append("Your kernel does not support memory swappiness capabilities "
                                     "or the cgroup is not mounted. Memory swappiness discarded.")
            else:
                memory["swappiness"] = swappiness
        if hc.get("OomKillDisable"):
            if cgroup_v2():
                self.warnings.append("Your kernel does not support OomKillDisable. "
                                     "OomKillDisable discarded.")
            else:
                memory["disableOOMKiller"] = True
                if not mem:
                    self.warnings.append(
                        "OOM killer is disabled for the container, but no memory limit is set, "
                        "this can result in the system running out of resources.")
        if memory:
            r["memory"] = memory

        cpu: dict = {}
        nano = hc.get("NanoCpus") or 0
        period, quota = hc.get("CpuPeriod") or 0, hc.get("CpuQuota") or 0
        if nano:
            if period:
                raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
            if quota:
                raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
            ncpu = os.cpu_count() or 1
            if nano < 0 or nano > ncpu * 10**9:
                raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                                      f"{ncpu} CPUs available")
            period, quota = 100000, nano * 100000 // 10**9
        if period and not 1000 <= period <= 1000000:
            raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                                  "than 1s (i.e. 1000000)")
        if quota and 0 < quota < 1000:
            raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        if period:
            cpu["period"] = period
        if quota:
            cpu["quota"] = quota
        shares = hc.get("CpuShares") or 0
        if shares < 0:
            raise InvalidArgument(f"invalid CPU shares: {shares}")
        if shares:
            cpu["shares"] = shares
        for key, field in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
            value = hc.get(key) or ""
            if value:
                if not re.fullmatch(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*", value):
                    what = "cpuset cpus" if field == "cpus" else "cpuset mems"
                    raise InvalidArgument(f"Invalid value {value} for {what}")
                cpu[field] = value
        for key, field in (("CpuRealtimePeriod", "realtimePeriod"),
                           ("CpuRealtimeRuntime", "realtimeRuntime")):
            if hc.get(key):
                cpu[field] = hc[key]
        if cpu:
            r["cpu"] = cpu

        pids = hc.get("PidsLimit")
        if pids:  # 0 and null: unset; negative: unlimited
            r["pids"] = {"limit": pids if pids > 0 else -1}

        blkio: dict = {}
        weight = hc.get("BlkioWeight") or 0
        if weight and not 10 <= weight <= 1000:
            raise InvalidArgument("Range of blkio weight is from 10 to 1000")
        if weight:
            blkio["weight"] = weight
        weights = []
        for wd in hc.get("BlkioWeightDevice") or []:
            w = wd.get("Weight", 0)
            if not 10 <= w <= 1000:
                raise InvalidArgument("Range of blkio weight is from 10 to 1000")
            major, minor = _block_device(wd.get("Path", ""))
            weights.append({"major": major, "minor": minor, "weight": w})
        if weights:
            blkio["weightDevice"] = weights
        for key, field in (("BlkioDeviceReadBps", "throttleReadBpsDevice"),
                           ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
                           ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
                           ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice")):
            rates = []
            for td in hc.get(key) or []:
                major, minor = _block_device(td.get("Path", ""))
                rates.append({"major": major, "minor": minor, "rate": int(td.get("Rate", 0))})
            if rates:
                blkio[field] = rates
        if blkio:
            r["blockIO"] = blkio

    # devices -------------------------------------------------------------------------------

    def _devices(self) -> None:
        linux = self.spec["linux"]
        devices: list[dict] = []
        if self.privileged:
            rules = [{"allow": True, "access": "rwm"}]
            devices.extend(_host_devices("/dev"))
        else:
            rules = [dict(rule) for rule in _DEFAULT_DEVICE_RULES]
        for mapping in self.hc.get("Devices") or []:
            host = mapping.get("PathOnHost") or ""
            inside = mapping.get("PathInContainer") or host
            perms = mapping.get("CgroupPermissions") or "rwm"
            if not perms or set(perms) - set("rwm"):
                raise InvalidArgument(f"invalid device mode: {perms}")
            if not host.startswith("/") or not inside.startswith("/"):
                raise InvalidArgument(f"invalid device mapping: {host}:{inside}")
            for dev in _devices_at(host, inside):
                devices.append(dev)
                rules.append({"allow": True, "type": dev["type"], "major": dev["major"],
                              "minor": dev["minor"], "access": perms})
        for text in self.hc.get("DeviceCgroupRules") or []:
            m = _DEVICE_RULE.fullmatch(text.strip())
            if not m:
                raise InvalidArgument(f"invalid device cgroup format '{text}'")
            rule: dict = {"allow": True, "type": m[1], "access": m[4]}
            if m[2] != "*":
                rule["major"] = int(m[2])
            if m[3] != "*":
                rule["minor"] = int(m[3])
            rules.append(rule)
        if devices:
            seen: dict[str, dict] = {}
            for dev in devices:
                seen[dev["path"]] = dev
            linux["devices"] = list(seen.values())
        linux["resources"]["devices"] = rules

    # mounts --------------------------------------------------------------------------------

    def _mounts(self) -> None:
        user = self._user_mounts()
        dests = {m["destination"] for m in user}
        mounts = [m for m in self._default_mounts() if m["destination"] not in dests
                  and not ("/dev" in dests and m["destination"].startswith("/dev/"))]
        if self.hc.get("ReadonlyRootfs"):
            # Docker: a read-only rootfs makes every default mount read-only but the ones a
            # process needs to write (/dev, /dev/pts, /dev/shm, /dev/mqueue, /proc).
            for m in mounts:
                if m["destination"] not in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue") \
                        and "ro" not in m.get("options", []):
                    m.setdefault("options", []).append("ro")
        mounts.extend(self._host_file_mounts(dests))
        if self.hc.get("Init"):
            mounts.append({"destination": INIT_PATH, "type": "bind", "source": init_binary(),
                           "options": ["bind", "ro"]})
        mounts.extend(user)
        # Parents before children (moby sortMounts): fewer path components first, stable.
        mounts.sort(key=lambda m: posixpath.normpath(m["destination"]).count("/")
                    if m["destination"] != "/" else 0)
        self.spec["mounts"] = mounts

    def _default_mounts(self) -> list[dict]:
        ro_sys = [] if self.privileged else ["ro"]
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", *ro_sys]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", *ro_sys]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
        ]
        shm = self._shm_mount()
        if shm:
            mounts.append(shm)
        return mounts

    def _shm_mount(self) -> dict | None:
        size = self.hc.get("ShmSize") or 0
        if size < 0:
            raise InvalidArgument("SHM size can not be less than 0")
        size = size or DEFAULT_SHM_SIZE
        ipc = self.ipc_mode
        if ipc == "none":
            return None
        if ipc == "host":
            return {"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                    "options": ["rbind", "rprivate"]}
        if ipc.startswith("container:"):
            peer = getattr(self, "ipc_peer", None)
            if peer is not None and peer.shm:
                return {"destination": "/dev/shm", "type": "bind", "source": peer.shm,
                        "options": ["rbind", "rprivate"]}
        if ipc == "shareable" and self.paths.shm:
            return {"destination": "/dev/shm", "type": "bind", "source": self.paths.shm,
                    "options": ["rbind", "rprivate"]}
        return {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]}

    def _host_file_mounts(self, dests: set[str]) -> list[dict]:
        mounts = []
        for dest, source in (("/etc/resolv.conf", self.paths.resolv_conf),
                             ("/etc/hostname", self.paths.hostname),
                             ("/etc/hosts", self.paths.hosts)):
            if source and dest not in dests:
                options = ["rbind", "rprivate"]
                if self.hc.get("ReadonlyRootfs"):
                    options.append("ro")
                mounts.append({"destination": dest, "type": "bind", "source": source,
                               "options": options})
        return mounts

    def _user_mounts(self) -> list[dict]:
        mounts: list[dict] = []
        for text in self.hc.get("Binds") or []:
            mounts.append(_parse_bind(text))
        for m in self.hc.get("Mounts") or []:
            mounts.append(_parse_mount(m))
        for dest, opts in (self.hc.get("Tmpfs") or {}).items():
            mounts.append(_tmpfs(dest, [o for o in (opts or "").split(",") if o]))
        seen = set()
        for m in mounts:
            if m["destination"] in seen:
                raise InvalidArgument(f"Duplicate mount point: {m['destination']}")
            seen.add(m["destination"])
        for m in mounts:
            prop = next((o for o in m.get("options", []) if o in _PROPAGATIONS), "")
            if prop in ("shared", "rshared"):
                self.spec["linux"]["rootfsPropagation"] = "shared"
            elif prop in ("slave", "rslave") and \
                    self.spec["linux"].get("rootfsPropagation") != "shared":
                # Docker writes "rslave"/"rshared"; the runtime-spec schema names them
                # "slave"/"shared" (applied recursively to the root by the runtime).
                self.spec["linux"]["rootfsPropagation"] = "slave"
        return mounts

    # masked and read-only paths, sysctls, seccomp ----------------------------------------------

    def _security_paths(self) -> None:
        linux = self.spec["linux"]
        if self.privileged:
            return
        masked = self.hc.get("MaskedPaths")
        readonly = self.hc.get("ReadonlyPaths")
        masked = list(DOCKER_MASKED_PATHS) + thermal_throttle_paths() if masked is None else list(masked)
        readonly = list(DOCKER_READONLY_PATHS) if readonly is None else list(readonly)
        if masked:
            linux["maskedPaths"] = masked
        if readonly:
            linux["readonlyPaths"] = readonly

    def _sysctls(self) -> None:
        sysctls: dict[str, str] = {}
        private_net = self.net_mode in ("none", "default", "bridge")
        if private_net:
            # Docker: ping without CAP_NET_RAW and low ports without CAP_NET_BIND_SERVICE.
            sysctls["net.ipv4.ping_group_range"] = "0 2147483647"
            sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
        for key, value in (self.hc.get("Sysctls") or {}).items():
            _check_sysctl(key, self.net_mode, self.ipc_mode, self.hc.get("UTSMode") or "")
            sysctls[key] = str(value)
        if sysctls:
            self.spec["linux"]["sysctl"] = sysctls

    def _seccomp(self) -> None:
        profile = self.security["seccomp"]
        if self.privileged or profile == "unconfined":
            return
        from dockyard.runtime.seccomp import docker_profile_to_oci

        if profile in ("", "builtin"):
            source = default_seccomp_profile()
        else:
            try:
                source = json.loads(profile)
            except ValueError as e:
                raise InvalidArgument(f"Decoding seccomp profile failed: {e}") from None
            if not isinstance(source, dict):
                raise InvalidArgument("Decoding seccomp profile failed: not a JSON object")
        self.spec["linux"]["seccomp"] = docker_profile_to_oci(source, list(self.caps),
                                                              arch=os.uname().machine)


# --- capabilities --------------------------------------------------------------------------


def all_capabilities() -> list[str]:
    """Every capability this kernel knows (Docker's GetAllCapabilities) that the engine itself
    may hand out: a process cannot grant what its bounding set lacks (a capset would fail)."""
    from dockyard.linux.capabilities import NAMES, last_cap

    top = last_cap()
    bounding = _own_bounding_set()
    return [name for number, name in sorted(NAMES.items())
            if number <= top and bounding >> number & 1]


def _own_bounding_set() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return (1 << 64) - 1


def _normalize_caps(names: list, what: str) -> list[str]:
    from dockyard.linux.capabilities import NUMBERS

    out = []
    for name in names:
        if not isinstance(name, str):
            raise InvalidArgument(f"invalid {what} capability: {name!r}")
        upper = name.strip().upper()
        if upper != "ALL" and not upper.startswith("CAP_"):
            upper = "CAP_" + upper
        if upper != "ALL" and upper not in NUMBERS:
            raise InvalidArgument(f'unknown capability: "{upper}"')
        if upper not in out:
            out.append(upper)
    return out


def tweak_capabilities(basics, adds: list, drops: list, privileged: bool) -> list[str]:
    """Docker's capability arithmetic (moby daemon/pkg/oci/caps TweakCapabilities): privileged
    gets every capability; CapAdd ALL = everything but CapDrop; CapDrop ALL = only CapAdd;
    otherwise the defaults minus CapDrop plus CapAdd. Names are case-insensitive, CAP_ optional."""
    adds, drops = _normalize_caps(adds, "add"), _normalize_caps(drops, "drop")
    if privileged:
        return all_capabilities()
    if "ALL" in adds:
        return [c for c in all_capabilities() if c not in drops]
    if "ALL" in drops:
        return [c for c in adds if c != "ALL"]
    caps = [c for c in basics if c not in drops]
    return caps + [c for c in adds if c not in caps]


# --- security options ------------------------------------------------------------------------


def _security_opts(opts: list) -> dict:
    """HostConfig.SecurityOpt as dockerd parses it (moby daemon parseSecurityOpt): "key=value"
    (or the deprecated "key:value"), plus bare "no-new-privileges". The docker CLI sends
    `seccomp=<file>` as the file's JSON content."""
    out = {"no-new-privileges": False, "seccomp": "", "apparmor": "", "label": []}
    for opt in opts:
        if not isinstance(opt, str):
            raise InvalidArgument(f"invalid --security-opt 1: {opt!r}")
        if opt == "no-new-privileges":
            out["no-new-privileges"] = True
            continue
        if opt == "disable":
            out["label"].append("disable")
            continue
        if "=" in opt:
            key, _, value = opt.partition("=")
        elif ":" in opt:
            key, _, value = opt.partition(":")
        else:
            raise InvalidArgument(f'invalid --security-opt 1: "{opt}"')
        if key == "label":
            out["label"].append(value)
        elif key == "apparmor":
            out["apparmor"] = value  # no AppArmor support: recorded, not applied
        elif key == "seccomp":
            out["seccomp"] = value
        elif key == "no-new-privileges":
            parsed = _parse_bool(value)
            if parsed is None:
                raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
            out["no-new-privileges"] = parsed
        else:
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    return out


def _parse_bool(text: str) -> bool | None:
    # Go's strconv.ParseBool
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


@functools.cache
def _default_profile_text() -> str:
    with open(SECCOMP_PROFILE) as f:
        return f.read()


def default_seccomp_profile() -> dict:
    """Docker's default seccomp profile (moby/profiles seccomp/default.json), a fresh copy."""
    return json.loads(_default_profile_text())


# --- mounts ----------------------------------------------------------------------------------


def _check_destination(dest: str, kind: str) -> str:
    if not isinstance(dest, str) or not dest:
        raise InvalidArgument(f'invalid mount config for type "{kind}": field Target must not be empty')
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid mount path: "
                              f"'{dest}' mount path must be absolute")
    dest = posixpath.normpath(dest)
    if dest == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return dest


def _parse_bind(text: str) -> dict:
    """One HostConfig.Binds entry "src:dst[:opts]" (docker run -v)."""
    if not isinstance(text, str):
        raise InvalidArgument(f"invalid volume specification: '{text}'")
    parts = text.split(":")
    if len(parts) == 2 and not parts[1].startswith("/"):
        raise InvalidArgument(f"invalid volume specification: '{text}'")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        if len(parts) == 1 and parts[0].startswith("/"):
            raise Unsupported(f"anonymous volumes are not supported yet: '{text}'")
        raise InvalidArgument(f"invalid volume specification: '{text}'")
    source, dest = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    if not source.startswith("/"):
        raise Unsupported(f"named volumes are not supported yet: '{text}'")
    dest = _check_destination(dest, "bind")
    writable, propagation = True, "rprivate"
    for mode in modes:
        if mode in ("ro", "rw"):
            writable = mode == "rw"
        elif mode in _PROPAGATIONS:
            propagation = mode
        elif mode in ("z", "Z", "nocopy", "consistent", "cached", "delegated", ""):
            pass  # SELinux relabel (no SELinux here), volume-only and macOS-only modes
        else:
            raise InvalidArgument(f"invalid mode: {mode}")
    if not os.path.exists(source):
        # docker run -v creates a missing bind source as a directory (Mounts type=bind doesn't).
        os.makedirs(source, mode=0o755, exist_ok=True)
    options = ["rbind", propagation]
    if not writable:
        options.append("ro")
    return {"destination": dest, "type": "bind", "source": os.path.normpath(source),
            "options": options}


def _parse_mount(m: dict) -> dict:
    """One HostConfig.Mounts entry (docker run --mount)."""
    if not isinstance(m, dict):
        raise InvalidArgument("invalid mount config: not an object")
    kind = m.get("Type") or ""
    dest = _check_destination(m.get("Target") or "", kind)
    readonly = bool(m.get("ReadOnly"))
    if kind == "bind":
        source = m.get("Source") or ""
        if not source:
            raise InvalidArgument('invalid mount config for type "bind": field Source must not be empty')
        if not source.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: "
                                  f"'{source}' mount path must be absolute")
        if not os.path.exists(source):
            if (m.get("BindOptions") or {}).get("CreateMountpoint"):
                os.makedirs(source, mode=0o755, exist_ok=True)
            else:
                raise InvalidArgument(
                    f'invalid mount config for type "bind": bind source path does not exist: {source}')
        opts = m.get("BindOptions") or {}
        if m.get("TmpfsOptions") or m.get("VolumeOptions"):
            raise InvalidArgument('invalid mount config for type "bind": '
                                  "only BindOptions may be given for a bind mount")
        propagation = opts.get("Propagation") or "rprivate"
        if propagation not in _PROPAGATIONS:
            raise InvalidArgument(f"invalid propagation mode: {propagation}")
        options = ["bind" if opts.get("NonRecursive") else "rbind", propagation]
        if readonly:
            options.append("ro")
            if opts.get("ReadOnlyForceRecursive"):
                options.append("rro")
        return {"destination": dest, "type": "bind", "source": os.path.normpath(source),
                "options": options}
    if kind == "tmpfs":
        if m.get("Source"):
            raise InvalidArgument('invalid mount config for type "tmpfs": field Source must not be specified')
        opts = m.get("TmpfsOptions") or {}
        extra = []
        if readonly:
            extra.append("ro")
        size = opts.get("SizeBytes") or 0
        if size < 0:
            raise InvalidArgument(f'invalid mount config for type "tmpfs": invalid tmpfs size {size}')
        if size:
            extra.append(f"size={size}")
        if opts.get("Mode"):
            extra.append(f"mode={int(opts['Mode']) & 0o7777:o}")
        for option in opts.get("Options") or []:
            if isinstance(option, list) and option:
                extra.append("=".join(str(x) for x in option))
        return _tmpfs(dest, extra)
    if kind == "volume":
        raise Unsupported("volume mounts are not supported yet")
    if kind in ("npipe",):
        raise InvalidArgument(f'invalid mount config for type "{kind}": mount type unknown')
    if kind in ("image", "cluster"):
        raise Unsupported(f"{kind} mounts are not supported")
    raise InvalidArgument(f'invalid mount config for type "{kind}": mount type unknown')


def _tmpfs(dest: str, options: list[str]) -> dict:
    """A tmpfs with Docker's defaults (noexec,nosuid,nodev) merged with the user's options: a
    user's exec/suid/dev replaces the matching default (moby MergeTmpfsOptions)."""
    dest = _check_destination(dest, "tmpfs")
    opposite = {"exec": "noexec", "suid": "nosuid", "dev": "nodev"}
    defaults = ["noexec", "nosuid", "nodev"]
    for option in options:
        if option in opposite and opposite[option] in defaults:
            defaults.remove(opposite[option])
        if not re.fullmatch(r"[a-z_0-9]+(=[^,]*)?", option):
            raise InvalidArgument(f"invalid tmpfs option {option!r}")
    merged = defaults + [o for o in options if o not in defaults]
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": merged}


# --- host probes -----------------------------------------------------------------------------


@functools.cache
def cgroup_v2() -> bool:
    """True on a unified (cgroup v2 only) host."""
    try:
        return os.statvfs("/sys/fs/cgroup") is not None and \
            os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    except OSError:
        return False


@functools.cache
def swap_limit_supported() -> bool:
    """Whether the memory cgroup limits swap (v1 memsw files; v2 memory.swap.max)."""
    if cgroup_v2():
        return any(os.path.exists(f"/sys/fs/cgroup/{d}/memory.swap.max")
                   for d in ("init.scope", "system.slice", "user.slice"))
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


def thermal_throttle_paths() -> list[str]:
    """Every /sys/devices/system/cpu/cpu<N>/thermal_throttle on this host; Docker masks them
    (GHSA-6fw5-f8r9-fgfm)."""
    return sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle"))


def init_binary() -> str:
    """The host's static init bound as /sbin/docker-init (Debian's tini-static)."""
    for path in HOST_INIT_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise Unsupported("--init needs a static init on the host: install Debian's tini package "
                      "(/usr/bin/tini-static)")


def _device(path: str, inside: str) -> dict | None:
    st = os.stat(path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return {"path": inside, "type": kind, "major": os.major(st.st_rdev),
            "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid, "gid": st.st_gid}


def _devices_at(host: str, inside: str) -> list[dict]:
    """The device at `host`, or every device under it when it is a directory (docker run
    --device /dev/snd)."""
    try:
        st = os.stat(host)
    except OSError as e:
        raise InvalidArgument(f'error gathering device information while adding custom device '
                              f'"{host}": {os.strerror(e.errno).lower()}') from None
    if stat.S_ISDIR(st.st_mode):
        found = []
        for dirpath, _, files in os.walk(host):
            for name in sorted(files):
                full = os.path.join(dirpath, name)
                try:
                    dev = _device(full, os.path.join(inside, os.path.relpath(full, host)))
                except OSError:
                    continue
                if dev:
                    found.append(dev)
        return found
    dev = _device(host, inside)
    if dev is None:
        raise InvalidArgument(f'error gathering device information while adding custom device '
                              f'"{host}": not a device node')
    return [dev]


_SKIP_HOST_DEV_DIRS = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}


def _host_devices(root: str) -> list[dict]:
    """Every device node under the host's /dev, for privileged containers (runc's
    HostDevices: skips pts, shm, mqueue, console and ptmx which the runtime sets up itself)."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (dirpath == root and d in _SKIP_HOST_DEV_DIRS)]
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            if full in ("/dev/console", "/dev/ptmx"):
                continue
            try:
                dev = _device(full, full)
            except OSError:
                continue
            if dev and (dev["major"], dev["minor"]) != (0, 0):
                found.append(dev)
    return found


def _block_device(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"{path}: {os.strerror(e.errno)}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidArgument(f"{path} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _check_sysctl(key: str, net_mode: str, ipc_mode: str, uts_mode: str) -> None:
    if not isinstance(key, str) or not re.fullmatch(r"[a-z0-9_]+(\.[a-zA-Z0-9_\-/]+)+", key):
        raise InvalidArgument(f"invalid sysctl: {key!r}")
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if ipc_mode == "host" or ipc_mode.startswith("container:"):
            raise InvalidArgument(f"sysctl {key!r} is not allowed with IPC mode {ipc_mode}")
        return
    if key in ("kernel.domainname", "kernel.hostname"):
        raise InvalidArgument(f"sysctl {key!r} is not allowed: use --hostname/--domainname")
    if key.startswith("net."):
        if net_mode == "host":
            raise InvalidArgument(f"sysctl {key!r} is not allowed in host network namespace")
        if net_mode.startswith("container:"):
            raise InvalidArgument(
                f"sysctl {key!r} is not allowed: the network namespace belongs to another container")
        return
    raise InvalidArgument(f"sysctl {key!r} is not allowed: it is not namespaced")


def strslice(value, what: str) -> list[str] | None:
    """Docker's StrSlice: a JSON string or an array of strings; None when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgument(f"invalid {what}: want a string or an array of strings")
