"""build_spec and hostfiles without root: Docker's rules for merging the image config, the
default security profile, HostConfig translation and validation messages, and every generated
spec valid against the OCI runtime-spec schema."""

import json
import os

import pytest

from dockyard.engine import hostfiles
from dockyard.engine.spec import (
    INIT_PATH,
    ContainerPaths,
    Peer,
    build_spec,
    merge_config,
    rootfs_user_resolver,
    swap_limit_supported,
    tweak_capabilities,
)
from dockyard.errors import Conflict, InvalidArgument, NotFound, Unsupported
from dockyard.oci.defaults import DOCKER_DEFAULT_CAPABILITIES, DOCKER_MASKED_PATHS, DOCKER_READONLY_PATHS
from dockyard.oci.schema import validate_runtime_config

CID = "0123456789ab" + "c" * 52
IMAGE = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "IMG=1"],
         "Cmd": ["sh"], "WorkingDir": "", "User": ""}


def spec_of(config=None, host_config=None, image=IMAGE, **kw):
    spec, warnings = build_spec(container_id=CID, config=config or {}, host_config=host_config or {},
                                image_config=image, paths=kw.pop("paths", ContainerPaths()), **kw)
    validate_runtime_config(spec)
    return spec, warnings


def mount(spec, dest):
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) <= 1
    return found[0] if found else None


# --- Config merge ----------------------------------------------------------------------------

ENTRYPOINT_CASES = [
    ({}, {"Cmd": ["sh"]}, ["sh"]),
    ({"Cmd": ["echo", "hi"]}, {"Cmd": ["sh"]}, ["echo", "hi"]),
    ({}, {"Entrypoint": ["/ep"], "Cmd": ["-x"]}, ["/ep", "-x"]),
    ({"Cmd": ["-y"]}, {"Entrypoint": ["/ep"], "Cmd": ["-x"]}, ["/ep", "-y"]),
    # An entrypoint given at create drops the image's Cmd.
    ({"Entrypoint": ["/new"]}, {"Entrypoint": ["/ep"], "Cmd": ["-x"]}, ["/new"]),
    # --entrypoint "" clears the image entrypoint; the Cmd must come with it (dockerd).
    ({"Entrypoint": [""], "Cmd": ["ls"]}, {"Entrypoint": ["/ep"], "Cmd": ["sh"]}, ["ls"]),
    ({"Entrypoint": "", "Cmd": "ls"}, {"Entrypoint": ["/ep"]}, ["ls"]),
    ({"Entrypoint": [], "Cmd": ["ls"]}, {"Entrypoint": ["/ep"], "Cmd": ["sh"]}, ["ls"]),
    ({"Entrypoint": []}, {"Entrypoint": ["/ep"], "Cmd": ["sh"]}, ["sh"]),
    ({"Cmd": "true"}, {}, ["true"]),
]


@pytest.mark.parametrize("config, image, args", ENTRYPOINT_CASES)
def test_entrypoint_and_cmd(config, image, args):
    spec, _ = spec_of(config, image=image)
    assert spec["process"]["args"] == args


@pytest.mark.parametrize("config, image, args", ENTRYPOINT_CASES)
def test_entrypoint_and_cmd_merge_is_idempotent(config, image, args):
    # The engine stores the merged Config and builds the spec from it again at each start.
    merged = merge_config(config, image)
    assert merge_config(merged, image) == merged
    spec, _ = spec_of(merged, image=image)
    assert spec["process"]["args"] == args


def test_no_command():
    with pytest.raises(InvalidArgument, match="No command specified"):
        spec_of({}, image={})
    with pytest.raises(InvalidArgument, match="No command specified"):
        spec_of({"Entrypoint": [""]}, image={"Entrypoint": ["/ep"], "Cmd": ["sh"]})


def test_env_order_and_overrides():
    spec, _ = spec_of({"Env": ["A=1", "IMG=2", "PATH=/bin"], "Tty": True, "Hostname": "box"})
    env = spec["process"]["env"]
    assert env[:3] == ["PATH=/bin", "HOSTNAME=box", "TERM=xterm"]
    assert "A=1" in env and "IMG=2" in env and "IMG=1" not in env
    spec, _ = spec_of({"Env": ["HOSTNAME"]})  # a bare name removes the variable
    assert not any(e.startswith("HOSTNAME=") for e in spec["process"]["env"])


def test_merge_config_keeps_image_defaults():
    merged = merge_config({"Labels": {"a": "1"}}, {"Labels": {"a": "0", "b": "2"},
                                                   "User": "nobody", "WorkingDir": "/w",
                                                   "StopSignal": "SIGINT"})
    assert merged["Labels"] == {"a": "1", "b": "2"}
    assert merged["User"] == "nobody" and merged["WorkingDir"] == "/w"
    assert merged["StopSignal"] == "SIGINT"


def test_cwd_hostname_terminal():
    spec, _ = spec_of({"WorkingDir": "/a/../b/", "Tty": True, "Domainname": "example.org"},
                      {"ConsoleSize": [30, 100]})
    assert spec["process"]["cwd"] == "/b"
    assert spec["hostname"] == CID[:12] and spec["domainname"] == "example.org"
    assert spec["process"]["terminal"] is True
    assert spec["process"]["consoleSize"] == {"height": 30, "width": 100}
    with pytest.raises(InvalidArgument, match="needs to be an absolute path"):
        spec_of({"WorkingDir": "rel"})


# --- users ----------------------------------------------------------------------------------

def test_numeric_user_without_rootfs():
    spec, _ = spec_of({"User": "1000:1000"}, {"GroupAdd": ["44"]})
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [44]}
    with pytest.raises(InvalidArgument, match="unable to find user nobody"):
        spec_of({"User": "nobody"})


def test_user_names_from_rootfs(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (etc / "group").write_text("root:x:0:\nwheel:x:10:root\naudio:x:29:\nnogroup:x:65534:\n")
    resolver = rootfs_user_resolver(str(tmp_path))
    spec, _ = spec_of({}, resolve_user=resolver)
    assert spec["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [10]}
    spec, _ = spec_of({"User": "nobody"}, {"GroupAdd": ["audio"]}, resolve_user=resolver)
    assert spec["process"]["user"] == {"uid": 65534, "gid": 65534, "additionalGids": [29]}
    with pytest.raises(InvalidArgument, match="unable to find user ghost"):
        spec_of({"User": "ghost"}, resolve_user=resolver)


def test_user_resolver_stays_in_rootfs(tmp_path):
    # /etc/passwd as an absolute symlink must resolve inside the rootfs, not to the host's.
    etc = tmp_path / "etc"
    etc.mkdir()
    (tmp_path / "fake").write_text("ghost:x:4242:4242::/:/bin/sh\n")
    os.symlink("/fake", etc / "passwd")
    uid, gid, _ = rootfs_user_resolver(str(tmp_path))("ghost", [])
    assert (uid, gid) == (4242, 4242)


# --- capabilities, seccomp, paths ------------------------------------------------------------

def test_default_security_profile():
    spec, _ = spec_of()
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == list(DOCKER_DEFAULT_CAPABILITIES)
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert "inheritable" not in caps and "ambient" not in caps
    assert spec["process"]["noNewPrivileges"] is False
    linux = spec["linux"]
    assert linux["maskedPaths"][:len(DOCKER_MASKED_PATHS)] == list(DOCKER_MASKED_PATHS)
    assert linux["readonlyPaths"] == list(DOCKER_READONLY_PATHS)
    seccomp = linux["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for rule in seccomp["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
               for n in rule["names"]}
    assert "read" in allowed and "mount" not in allowed and "keyctl" not in allowed
    rules = linux["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"} in rules
    types = [ns["type"] for ns in linux["namespaces"]]
    assert {"mount", "network", "uts", "ipc", "pid"} <= set(types) and "user" not in types
    assert linux["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    assert linux["cgroupsPath"] == f"/dockyard/{CID}"


def test_cap_add_drop():
    spec, _ = spec_of(host_config={"CapAdd": ["sys_admin", "CAP_NET_ADMIN"], "CapDrop": ["chown"]})
    caps = spec["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in caps and "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps
    # CAP_SYS_ADMIN turns on the capability-gated seccomp rules (mount, unshare, ...).
    allowed = {n for rule in spec["linux"]["seccomp"]["syscalls"]
               if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]}
    assert "mount" in allowed
    assert tweak_capabilities(DOCKER_DEFAULT_CAPABILITIES, ["kill"], ["ALL"], False) == ["CAP_KILL"]
    every = tweak_capabilities(DOCKER_DEFAULT_CAPABILITIES, ["ALL"], ["MKNOD"], False)
    assert "CAP_SYS_ADMIN" in every and "CAP_MKNOD" not in every
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_NOPE"'):
        spec_of(host_config={"CapAdd": ["nope"]})


def test_privileged():
    spec, _ = spec_of(host_config={"Privileged": True})
    linux = spec["linux"]
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]
    assert "seccomp" not in linux and "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert any(d["path"] == "/dev/null" for d in linux.get("devices", []))
    assert "ro" not in mount(spec, "/sys")["options"]
    assert "ro" not in mount(spec, "/sys/fs/cgroup")["options"]


@pytest.mark.parametrize("opts, nnp, seccomp", [
    (["no-new-privileges"], True, True),
    (["no-new-privileges:true"], True, True),
    (["no-new-privileges=false"], False, True),
    (["seccomp=unconfined"], False, False),
    (["seccomp:unconfined", "label=disable", "apparmor=unconfined"], False, False),
])
def test_security_opts(opts, nnp, seccomp):
    spec, _ = spec_of(host_config={"SecurityOpt": opts})
    assert spec["process"]["noNewPrivileges"] is nnp
    assert ("seccomp" in spec["linux"]) is seccomp


def test_custom_seccomp_profile_inline():
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    spec, _ = spec_of(host_config={"SecurityOpt": ["seccomp=" + json.dumps(profile)]})
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    assert spec["linux"]["seccomp"]["syscalls"][0]["names"] == ["mkdir"]
    with pytest.raises(InvalidArgument, match="Decoding seccomp profile failed"):
        spec_of(host_config={"SecurityOpt": ["seccomp={not json"]})


@pytest.mark.parametrize("opt, message", [
    ("bogus", 'invalid --security-opt 1: "bogus"'),
    ("foo=bar", 'invalid --security-opt 2: "foo=bar"'),
    ("no-new-privileges=maybe", 'invalid --security-opt 2: "no-new-privileges=maybe"'),
])
def test_bad_security_opts(opt, message):
    with pytest.raises(InvalidArgument) as e:
        spec_of(host_config={"SecurityOpt": [opt]})
    assert str(e.value) == message


def test_systempaths_unconfined():
    # The CLI sends --security-opt systempaths=unconfined as empty lists.
    spec, _ = spec_of(host_config={"MaskedPaths": [], "ReadonlyPaths": []})
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]


# --- mounts ----------------------------------------------------------------------------------

def test_default_mounts_and_host_files(tmp_path):
    paths = ContainerPaths(hostname=str(tmp_path / "hostname"), hosts=str(tmp_path / "hosts"),
                           resolv_conf=str(tmp_path / "resolv.conf"))
    spec, _ = spec_of(paths=paths)
    dests = [m["destination"] for m in spec["mounts"]]
    for d in ("/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
              "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
        assert d in dests
    assert dests.index("/dev") < dests.index("/dev/pts")
    assert "size=67108864" in mount(spec, "/dev/shm")["options"]
    assert mount(spec, "/etc/hosts")["source"] == str(tmp_path / "hosts")
    assert "gid=5" in mount(spec, "/dev/pts")["options"]


def test_readonly_rootfs(tmp_path):
    paths = ContainerPaths(hosts=str(tmp_path / "hosts"))
    spec, _ = spec_of(host_config={"ReadonlyRootfs": True}, paths=paths)
    assert spec["root"]["readonly"] is True
    assert "ro" in mount(spec, "/etc/hosts")["options"]
    assert "ro" not in mount(spec, "/dev/shm")["options"]


def test_binds(tmp_path):
    src = tmp_path / "data"
    spec, _ = spec_of(host_config={"Binds": [f"{src}:/data:ro,rslave", f"{tmp_path}:/t"]})
    assert src.is_dir()  # -v creates a missing source directory
    data = mount(spec, "/data")
    assert data["type"] == "bind" and data["source"] == str(src)
    assert data["options"] == ["rbind", "rslave", "ro"]
    assert mount(spec, "/t")["options"] == ["rbind", "rprivate"]
    assert spec["linux"]["rootfsPropagation"] == "slave"


@pytest.mark.parametrize("binds, error, message", [
    (["/a"], Unsupported, "anonymous volumes"),
    (["vol:/a"], Unsupported, "named volumes"),
    (["/a:rel"], InvalidArgument, "invalid volume specification: '/a:rel'"),
    (["/tmp:/a:bogus"], InvalidArgument, "invalid mode: bogus"),
    (["/tmp:/"], InvalidArgument, "destination can't be '/'"),
    (["/tmp:/a", "/tmp:/a/"], InvalidArgument, "Duplicate mount point: /a"),
])
def test_bad_binds(binds, error, message):
    with pytest.raises(error, match=message):
        spec_of(host_config={"Binds": binds})


def test_mounts_api(tmp_path):
    spec, _ = spec_of(host_config={"Mounts": [
        {"Type": "bind", "Source": str(tmp_path), "Target": "/b", "ReadOnly": True,
         "BindOptions": {"NonRecursive": True}},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o1700}},
    ]})
    assert mount(spec, "/b")["options"] == ["bind", "rprivate", "ro"]
    t = mount(spec, "/t")
    assert t["type"] == "tmpfs" and "size=1048576" in t["options"] and "mode=1700" in t["options"]
    with pytest.raises(InvalidArgument, match="bind source path does not exist: /nonexistent-x"):
        spec_of(host_config={"Mounts": [{"Type": "bind", "Source": "/nonexistent-x", "Target": "/b"}]})
    with pytest.raises(InvalidArgument, match="mount path must be absolute"):
        spec_of(host_config={"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "b"}]})
    with pytest.raises(Unsupported):
        spec_of(host_config={"Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"}]})


def test_tmpfs_map_and_shm_override():
    spec, _ = spec_of(host_config={"Tmpfs": {"/run": "size=1m,exec", "/dev/shm": "size=2m"}})
    run = mount(spec, "/run")
    assert "exec" in run["options"] and "noexec" not in run["options"] and "nosuid" in run["options"]
    assert mount(spec, "/dev/shm")["options"] == ["noexec", "nosuid", "nodev", "size=2m"]


def test_shm_size_and_ipc_modes(tmp_path):
    spec, _ = spec_of(host_config={"ShmSize": 1 << 20})
    assert "size=1048576" in mount(spec, "/dev/shm")["options"]
    spec, _ = spec_of(host_config={"IpcMode": "none"})
    assert mount(spec, "/dev/shm") is None
    spec, _ = spec_of(host_config={"IpcMode": "host"})
    assert "ipc" not in [n["type"] for n in spec["linux"]["namespaces"]]
    assert mount(spec, "/dev/shm")["source"] == "/dev/shm"
    spec, _ = spec_of(host_config={"IpcMode": "shareable"}, paths=ContainerPaths(shm=str(tmp_path)))
    assert mount(spec, "/dev/shm")["source"] == str(tmp_path)
    with pytest.raises(InvalidArgument, match="SHM size can not be less than 0"):
        spec_of(host_config={"ShmSize": -1})


def test_init(tmp_path):
    spec, _ = spec_of({"Cmd": ["sleep", "1"]}, {"Init": True})
    assert spec["process"]["args"] == [INIT_PATH, "--", "sleep", "1"]
    init = mount(spec, INIT_PATH)
    assert init["type"] == "bind" and "ro" in init["options"] and os.path.isfile(init["source"])


# --- namespaces --------------------------------------------------------------------------------

def test_network_modes():
    spec, _ = spec_of(host_config={"NetworkMode": "host"})
    assert "network" not in [n["type"] for n in spec["linux"]["namespaces"]]
    assert "net.ipv4.ping_group_range" not in spec["linux"].get("sysctl", {})
    # Without a wired namespace (a spec built at create) the runtime makes an empty one; at
    # start the engine's netns is joined by path.
    spec, _ = spec_of(host_config={"NetworkMode": "mynet"})
    assert {"type": "network"} in spec["linux"]["namespaces"]
    spec, _ = spec_of(host_config={"NetworkMode": "mynet"}, netns_path="/run/x/netns/abc")
    assert {"type": "network", "path": "/run/x/netns/abc"} in spec["linux"]["namespaces"]


def test_container_modes():
    peers = {"web": Peer(id="f" * 64, pid=4242, shm="/x/shm"), "dead": Peer(id="d" * 64, pid=0)}

    def lookup(ref):
        if ref not in peers:
            raise NotFound(f"No such container: {ref}")
        return peers[ref]

    spec, _ = spec_of(host_config={"NetworkMode": "container:web", "IpcMode": "container:web",
                                   "PidMode": "container:web"}, lookup_peer=lookup)
    paths = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert paths["network"] == "/proc/4242/ns/net"
    assert paths["ipc"] == "/proc/4242/ns/ipc" and paths["pid"] == "/proc/4242/ns/pid"
    assert mount(spec, "/dev/shm")["source"] == "/x/shm"
    with pytest.raises(Conflict, match="cannot join network of a non running container"):
        spec_of(host_config={"NetworkMode": "container:dead"}, lookup_peer=lookup)
    with pytest.raises(NotFound, match="No such container: nope"):
        spec_of(host_config={"PidMode": "container:nope"}, lookup_peer=lookup)


def test_uts_host_and_cgroupns():
    spec, _ = spec_of(host_config={"UTSMode": "host"})
    assert "hostname" not in spec
    spec, _ = spec_of(host_config={"CgroupnsMode": "private"})
    assert "cgroup" in [n["type"] for n in spec["linux"]["namespaces"]]
    spec, _ = spec_of(host_config={"CgroupnsMode": "host"})
    assert "cgroup" not in [n["type"] for n in spec["linux"]["namespaces"]]
    with pytest.raises(InvalidArgument, match="invalid cgroup namespace mode"):
        spec_of(host_config={"CgroupnsMode": "bogus"})


# --- resources and limits -----------------------------------------------------------------------

def test_resources():
    spec, _ = spec_of(host_config={"Memory": 64 << 20, "MemoryReservation": 32 << 20,
                                   "NanoCpus": 500_000_000, "CpuShares": 512, "PidsLimit": 100,
                                   "CpusetCpus": "0", "BlkioWeight": 300})
    r = spec["linux"]["resources"]
    want = {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20}
    if not swap_limit_supported():
        del want["swap"]
    assert r["memory"] == want
    assert r["cpu"] == {"period": 100000, "quota": 50000, "shares": 512, "cpus": "0"}
    assert r["pids"] == {"limit": 100}
    assert r["blockIO"] == {"weight": 300}
    spec, _ = spec_of(host_config={"Memory": 64 << 20, "MemorySwap": -1, "PidsLimit": -1})
    assert spec["linux"]["resources"]["memory"]["swap"] == -1
    assert spec["linux"]["resources"]["pids"] == {"limit": -1}


@pytest.mark.parametrize("hc, message", [
    ({"Memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "Minimum memoryswap limit should be larger"),
    ({"MemorySwap": 64 << 20}, "You should always set the Memory limit when using Memoryswap"),
    ({"Memory": 8 << 20, "MemoryReservation": 16 << 20}, "can not be less than memory reservation"),
    ({"NanoCpus": 1, "CpuQuota": 5000}, "Nano CPUs and CPU Quota cannot both be set"),
    ({"NanoCpus": 10**15}, "Range of CPUs is from 0.01"),
    ({"CpuPeriod": 10}, "CPU cfs period can not be less than 1ms"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"OomScoreAdj": 5000}, "range for oom score adj is \\[-1000, 1000\\]"),
    ({"MemorySwappiness": 200}, "valid memory swappiness range is 0-100"),
    ({"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: bogus"),
    ({"DeviceCgroupRules": ["x 1:2 rwm"]}, "invalid device cgroup format 'x 1:2 rwm'"),
    ({"Devices": [{"PathOnHost": "/dev/nonexistent-dev", "CgroupPermissions": "rwm"}]},
     'error gathering device information while adding custom device "/dev/nonexistent-dev"'),
    ({"Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rwx"}]}, "invalid device mode: rwx"),
    ({"Sysctls": {"kernel.panic": "1"}}, "not namespaced"),
    ({"NetworkMode": "host", "Sysctls": {"net.core.somaxconn": "1"}}, "host network namespace"),
])
def test_invalid_host_config(hc, message):
    with pytest.raises(InvalidArgument, match=message):
        spec_of(host_config=hc)


def test_ulimits_oom_devices_sysctls():
    spec, _ = spec_of(host_config={
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}, {"Name": "core", "Soft": -1, "Hard": -1}],
        "OomScoreAdj": 100,
        "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "rw"}],
        "DeviceCgroupRules": ["c 42:* rmw"],
        "Sysctls": {"net.core.somaxconn": "1024", "kernel.shmmax": "100000"}})
    p = spec["process"]
    assert {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048} in p["rlimits"]
    assert {"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1} in p["rlimits"]
    assert p["oomScoreAdj"] == 100
    dev = spec["linux"]["devices"][0]
    assert dev["path"] == "/dev/mynull" and (dev["type"], dev["major"], dev["minor"]) == ("c", 1, 3)
    rules = spec["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"} in rules
    assert {"allow": True, "type": "c", "major": 42, "access": "rmw"} in rules
    assert spec["linux"]["sysctl"]["net.core.somaxconn"] == "1024"


def test_oom_kill_disable_warns_without_memory():
    _, warnings = spec_of(host_config={"OomKillDisable": True})
    assert warnings and ("no memory limit" in warnings[0] or "OomKillDisable discarded" in warnings[0])


def test_cgroup_parent():
    spec, _ = spec_of(host_config={"CgroupParent": "custom"})
    assert spec["linux"]["cgroupsPath"] == f"/custom/{CID}"
    spec, _ = spec_of(cgroup_parent="/elsewhere")
    assert spec["linux"]["cgroupsPath"] == f"/elsewhere/{CID}"


# --- hostfiles ---------------------------------------------------------------------------------

def test_hosts_file():
    text = hostfiles.hosts_file(["db:10.0.0.5", "v6=::1", "br:[fe80::1]"])
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[1] == "::1\tlocalhost ip6-localhost ip6-loopback"
    assert lines[-3:] == ["10.0.0.5\tdb", "::1\tv6", "fe80::1\tbr"]
    with pytest.raises(InvalidArgument, match='invalid IP address in add-host: "nope"'):
        hostfiles.hosts_file(["x:nope"])
    with pytest.raises(InvalidArgument, match="host-gateway"):
        hostfiles.hosts_file(["x:host-gateway"])
    assert "172.17.0.1\thost.docker.internal" in hostfiles.hosts_file(
        ["host.docker.internal:host-gateway"], gateway="172.17.0.1")
    own = hostfiles.hosts_file([], own=[("10.1.0.2", "abc123")])
    assert own.splitlines()[-1] == "10.1.0.2\tabc123"
    with pytest.raises(InvalidArgument, match="bad format for add-host"):
        hostfiles.hosts_file(["nohost"])


def test_resolv_conf():
    host = "# comment\nnameserver 127.0.0.1\nnameserver 10.1.1.1\nsearch a.example\noptions ndots:2\n"
    assert hostfiles.resolv_conf(host, dns=[], search=[], options=[]) == \
        "nameserver 10.1.1.1\nsearch a.example\noptions ndots:2\n"
    # Only loopback servers: Docker falls back to public DNS.
    assert hostfiles.resolv_conf("nameserver ::1\n", dns=[], search=[], options=[]).startswith(
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    out = hostfiles.resolv_conf(host, dns=["1.1.1.1"], search=["."], options=["debug"])
    assert out == "nameserver 1.1.1.1\noptions debug\n"
    assert "127.0.0.1" in hostfiles.resolv_conf(host, dns=[], search=[], options=[], network="host")
    # A user-defined network: only the embedded server, the host's search domains kept.
    assert hostfiles.resolv_conf(host, dns=["1.1.1.1"], search=[], options=[], embedded_dns=True) == \
        "nameserver 127.0.0.11\nsearch a.example\noptions ndots:2\n"
    assert hostfiles.resolv_conf("nameserver 10.1.1.1\n", dns=[], search=[], options=[],
                                 embedded_dns=True) == "nameserver 127.0.0.11\noptions ndots:0\n"
    with pytest.raises(InvalidArgument, match="bad is not an ip address"):
        hostfiles.resolv_conf(host, dns=["bad"], search=[], options=[])


def test_write_all(tmp_path):
    host_resolv = tmp_path / "host-resolv"
    host_resolv.write_text("nameserver 10.9.9.9\n")
    paths = hostfiles.write_all(str(tmp_path), hostname="box", host_config={"ExtraHosts": ["a:1.2.3.4"]},
                                host_resolv_conf=str(host_resolv))
    assert open(paths["hostname"]).read() == "box\n"
    assert "1.2.3.4\ta" in open(paths["hosts"]).read()
    assert open(paths["resolv_conf"]).read() == "nameserver 10.9.9.9\n"
    assert oct(os.stat(paths["hosts"]).st_mode & 0o777) == "0o644"
    # Written again (a restart with an address): hosts keeps its inode (a bind mount holds it).
    inode = os.stat(paths["hosts"]).st_ino
    hostfiles.write_all(str(tmp_path), hostname="box", host_config={}, host_resolv_conf=str(host_resolv),
                        own=[("10.1.0.2", "box")])
    assert os.stat(paths["hosts"]).st_ino == inode
    assert open(paths["hosts"]).read().endswith("10.1.0.2\tbox\n")
    # The returned keys are ContainerPaths' fields.
    ContainerPaths(**paths)
