import os

from dockyard.oci.defaults import (
    DEFAULT_DEVICES,
    DOCKER_DEFAULT_CAPABILITIES,
    DOCKER_MASKED_PATHS,
    DOCKER_READONLY_PATHS,
    default_spec,
)
from dockyard.oci.schema import validate_runtime_config


def namespaces(spec):
    return [ns["type"] for ns in spec["linux"]["namespaces"]]


def mounts(spec):
    return {m["destination"]: m for m in spec["mounts"]}


def test_default_spec_validates():
    validate_runtime_config(default_spec())


def test_rootless_spec_validates():
    validate_runtime_config(default_spec(rootless=True))


def test_default_spec_matches_runc_spec():
    spec = default_spec()
    assert spec["ociVersion"] == "1.2.0"
    process = spec["process"]
    assert process["terminal"] is True
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["args"] == ["sh"]
    assert process["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                              "TERM=xterm"]
    assert process["cwd"] == "/"
    assert process["noNewPrivileges"] is True
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert process["capabilities"] == {"bounding": caps, "effective": caps, "permitted": caps}
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert spec["hostname"] == "dockyard"
    assert list(mounts(spec)) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                                  "/sys/fs/cgroup"]
    assert mounts(spec)["/sys"]["type"] == "sysfs"
    assert "ro" in mounts(spec)["/sys/fs/cgroup"]["options"]
    assert namespaces(spec) == ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert spec["linux"]["readonlyPaths"] == list(DOCKER_READONLY_PATHS)
    assert spec["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}


def test_args_are_copied():
    args = ["echo", "hi"]
    spec = default_spec(args)
    assert spec["process"]["args"] == args
    spec["process"]["args"].append("x")
    assert args == ["echo", "hi"]


def test_specs_are_independent():
    a, b = default_spec(), default_spec()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"][1]["options"].append("ro")
    assert b == default_spec()


def test_rootless_spec():
    spec = default_spec(rootless=True)
    linux = spec["linux"]
    assert "network" not in namespaces(spec)
    assert namespaces(spec)[-1] == "user"
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    by_dest = mounts(spec)
    assert by_dest["/sys"] == {"destination": "/sys", "type": "none", "source": "/sys",
                               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    assert "/sys/fs/cgroup" not in by_dest
    assert not any(o.startswith(("uid=", "gid=")) for m in spec["mounts"]
                   for o in m.get("options", ()))
    assert "newinstance" in by_dest["/dev/pts"]["options"]


def test_default_devices():
    assert {d["path"]: (d["major"], d["minor"]) for d in DEFAULT_DEVICES} == {
        "/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7),
        "/dev/random": (1, 8), "/dev/urandom": (1, 9), "/dev/tty": (5, 0),
    }
    assert all(d["type"] == "c" and d["fileMode"] == 0o666 for d in DEFAULT_DEVICES)
    spec = default_spec()
    spec["linux"]["devices"] = list(DEFAULT_DEVICES)
    validate_runtime_config(spec)


def test_docker_defaults():
    assert len(DOCKER_DEFAULT_CAPABILITIES) == 14 == len(set(DOCKER_DEFAULT_CAPABILITIES))
    assert all(c.startswith("CAP_") for c in DOCKER_DEFAULT_CAPABILITIES)
    assert "CAP_SYS_ADMIN" not in DOCKER_DEFAULT_CAPABILITIES
    assert {"/proc/kcore", "/proc/interrupts", "/sys/firmware"} <= set(DOCKER_MASKED_PATHS)
    assert "/proc/sys" in DOCKER_READONLY_PATHS
    spec = default_spec()
    spec["process"]["capabilities"] = {k: list(DOCKER_DEFAULT_CAPABILITIES)
                                       for k in ("bounding", "effective", "permitted")}
    spec["linux"]["maskedPaths"] = list(DOCKER_MASKED_PATHS)
    validate_runtime_config(spec)
