"""Specs from `dockyard.engine.spec.build_spec` run by dockyard-runc in the busybox rootfs (root
only): what a process inside a Docker-configured container sees — the 14 default capabilities,
seccomp filtering, masked and read-only paths, the /dev listing, read-only mounts, ulimits,
user, env, hostname, --init, --privileged, resource limits."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

from dockyard.engine import hostfiles
from dockyard.engine.spec import (ContainerPaths, all_capabilities, build_spec, cgroup_v2,
                                  rootfs_user_resolver)
from dockyard.linux.capabilities import NUMBERS
from dockyard.oci.defaults import DOCKER_DEFAULT_CAPABILITIES
from dockyard.oci.schema import validate_runtime_config
from tests.fixtures.host import cgroup_roots

pytestmark = pytest.mark.root
if os.geteuid() != 0:
    pytest.skip("running containers needs root", allow_module_level=True)

RUNC = os.path.join(os.path.dirname(sys.executable), "dockyard-runc")
CGROUP_PARENT = "/dockyard-test-spec"


class Harness:
    """One busybox rootfs copy for the module; each `run` writes a fresh bundle config around
    it (the rootfs is shared: containers only write to tmpfs and binds)."""

    def __init__(self, base: str, rootfs_src: str):
        self.base = base
        self.rootfs = os.path.join(base, "rootfs")
        shutil.copytree(rootfs_src, self.rootfs, symlinks=True)
        self.state = os.path.join(base, "state")

    def spec(self, config=None, host_config=None, image=None, cid=None):
        cid = cid or uuid.uuid4().hex + uuid.uuid4().hex
        cdir = os.path.join(self.base, "containers", cid)
        os.makedirs(cdir)
        config = dict(config or {})
        hc = dict(host_config or {})
        files = hostfiles.write_all(cdir, hostname=config.get("Hostname") or cid[:12],
                                    host_config=hc)
        spec, warnings = build_spec(
            container_id=cid, config=config, host_config=hc,
            image_config=image if image is not None else {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"]},
            paths=ContainerPaths(**files), cgroup_parent=CGROUP_PARENT,
            resolve_user=rootfs_user_resolver(self.rootfs))
        validate_runtime_config(spec)
        spec["root"]["path"] = self.rootfs
        return cid, spec

    def run(self, script: str, config=None, host_config=None) -> str:
        """Run `sh -c script` in a container built from these settings; its stdout."""
        config = dict(config or {})
        config.setdefault("Cmd", ["sh", "-c", script])
        cid, spec = self.spec(config, host_config)
        return self.run_spec(cid, spec)

    def run_spec(self, cid: str, spec: dict) -> str:
        bundle = os.path.join(self.base, "containers", cid)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run([RUNC, "--root", self.state, "run", "--bundle", bundle, cid[:32]],
                               stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=60)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        assert r.returncode == 0, f"rc={r.returncode}\nstdout:{stdout}\nstderr:{stderr}"
        return stdout


@pytest.fixture(scope="module")
def harness(tmp_path_factory, busybox_rootfs):
    h = Harness(str(tmp_path_factory.mktemp("spec-runtime")), busybox_rootfs)
    yield h
    r = subprocess.run([RUNC, "--root", h.state, "list", "-q"], capture_output=True, text=True)
    for cid in r.stdout.split():
        subprocess.run([RUNC, "--root", h.state, "delete", "--force", cid], capture_output=True)
    for root in cgroup_roots():
        parent = os.path.join(root, CGROUP_PARENT.lstrip("/"))
        if os.path.isdir(parent):
            for child in os.listdir(parent):
                if os.path.isdir(os.path.join(parent, child)):
                    try:
                        os.rmdir(os.path.join(parent, child))
                    except OSError:
                        pass
            try:
                os.rmdir(parent)
            except OSError:
                pass


def status_fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+):\s+(.*)$", text, re.M))


def mask(names) -> int:
    return sum(1 << NUMBERS[n] for n in names)


def test_default_profile_from_inside(harness):
    out = harness.run("cat /proc/self/status")
    status = status_fields(out)
    want = mask(DOCKER_DEFAULT_CAPABILITIES)
    for key in ("CapBnd", "CapEff", "CapPrm"):
        assert int(status[key], 16) == want, key
    assert int(status["CapInh"], 16) == 0 and int(status["CapAmb"], 16) == 0
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "0"


def test_masked_and_readonly_paths(harness):
    masked = [p for p in ("/proc/interrupts", "/proc/keys", "/proc/timer_list", "/proc/kcore")
              if os.path.exists(p)]
    out = harness.run(
        "".join(f"echo {p}=$(cat {p} | wc -c);" for p in masked) +
        "echo firmware=$(ls -A /sys/firmware | wc -l);"
        "echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo sys-writable || echo sys-ro;"
        "echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable || echo sysrq-ro")
    for p in masked:
        assert f"{p}=0" in out
    assert "firmware=0" in out
    assert "sys-ro" in out and "sysrq-ro" in out


def test_dev_listing_and_mounts(harness):
    out = harness.run("ls -A /dev; echo ---; cat /proc/mounts")
    listing, mounts = out.split("---\n")
    names = set(listing.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
            "mqueue", "fd", "stdin", "stdout", "stderr"} <= names
    # No host devices leak in: nothing beyond the default set.
    assert not names - {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
                        "mqueue", "fd", "stdin", "stdout", "stderr", "core", "console"}
    table = {fields[1]: fields for fields in (line.split() for line in mounts.splitlines())}
    assert table["/sys"][3].split(",")[0] == "ro"
    assert table["/proc"][2] == "proc"
    shm = table["/dev/shm"]
    assert shm[2] == "tmpfs" and "size=65536k" in shm[3]
    for f in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
        assert f in table


def test_hostname_env_hosts(harness):
    out = harness.run("hostname; cat /etc/hostname; echo HN=$HOSTNAME; echo FOO=$FOO; cat /etc/hosts",
                      config={"Hostname": "spec-box", "Env": ["FOO=bar"]},
                      host_config={"ExtraHosts": ["db:10.1.2.3"]})
    lines = out.splitlines()
    assert lines[0] == "spec-box" and lines[1] == "spec-box"
    assert "HN=spec-box" in lines and "FOO=bar" in lines
    assert "10.1.2.3\tdb" in lines and "127.0.0.1\tlocalhost" in lines


def test_user_and_groups(harness):
    assert harness.run("id -u; id -g").split() == ["0", "0"]
    # GroupAdd by name, resolved in the container's /etc/group.
    assert "5" in harness.run("id -G", host_config={"GroupAdd": ["tty"]}).split()
    out = harness.run("id -u; id -g; id -G", config={"User": "nobody"})
    assert out.split() == ["65534", "65534", "65534"]
    assert harness.run("id -u; id -g", config={"User": "1234:4321"}).split() == ["1234", "4321"]
    # A non-root user keeps no effective capabilities.
    status = status_fields(harness.run("cat /proc/self/status", config={"User": "1234"}))
    assert int(status["CapEff"], 16) == 0


def test_ulimits_and_oom_score(harness):
    out = harness.run("ulimit -n; ulimit -c; cat /proc/self/oom_score_adj",
                      host_config={"Ulimits": [{"Name": "nofile", "Soft": 512, "Hard": 1024},
                                               {"Name": "core", "Soft": 0, "Hard": 0}],
                                   "OomScoreAdj": 123})
    assert out.split() == ["512", "0", "123"]


def test_cap_add_drop_and_no_new_privileges(harness):
    status = status_fields(harness.run("cat /proc/self/status", host_config={
        "CapAdd": ["NET_ADMIN"], "CapDrop": ["chown", "CAP_KILL"],
        "SecurityOpt": ["no-new-privileges"]}))
    want = mask([c for c in DOCKER_DEFAULT_CAPABILITIES if c not in ("CAP_CHOWN", "CAP_KILL")]
                + ["CAP_NET_ADMIN"])
    assert int(status["CapBnd"], 16) == want
    assert status["NoNewPrivs"] == "1"


def test_seccomp_profiles(harness):
    # The default profile refuses what the default capabilities would allow anyway, and the
    # inline custom profile the docker CLI sends can deny a harmless syscall.
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    out = harness.run("mkdir /dev/shm/d 2>&1 && echo made || echo refused",
                      host_config={"SecurityOpt": ["seccomp=" + json.dumps(profile)]})
    assert "refused" in out and "Operation not permitted" in out
    status = status_fields(harness.run("cat /proc/self/status",
                                       host_config={"SecurityOpt": ["seccomp=unconfined"]}))
    assert status["Seccomp"] == "0"


def test_privileged(harness):
    out = harness.run("cat /proc/self/status; echo ---; cat /proc/mounts; echo ---; ls /dev",
                      host_config={"Privileged": True})
    status_text, mounts, dev = out.split("---\n")
    status = status_fields(status_text)
    assert int(status["CapBnd"], 16) == mask(all_capabilities())
    assert int(status["CapBnd"], 16) & mask(["CAP_SYS_ADMIN", "CAP_NET_ADMIN"])
    assert status["Seccomp"] == "0"
    sys_options = next(line.split()[3] for line in mounts.splitlines() if line.split()[1] == "/sys")
    assert sys_options.split(",")[0] == "rw"
    assert len(dev.split()) > 14  # the host's devices


def test_readonly_rootfs_tmpfs_and_binds(harness, tmp_path):
    src = tmp_path / "shared"
    src.mkdir()
    (src / "f").write_text("from host\n")
    out = harness.run(
        "touch /x 2>/dev/null && echo root-rw || echo root-ro;"
        "touch /dev/shm/ok && echo shm-rw;"
        "touch /run/ok && echo tmpfs-rw;"
        "cat /data/f; touch /data/g 2>/dev/null && echo bind-rw || echo bind-ro",
        host_config={"ReadonlyRootfs": True, "Tmpfs": {"/run": "size=1m"},
                     "Binds": [f"{src}:/data:ro"]})
    assert out.split("\n")[:5] == ["root-ro", "shm-rw", "tmpfs-rw", "from host", "bind-ro"]
    assert not (src / "g").exists()


def test_init_is_pid_one(harness):
    out = harness.run("cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
                      host_config={"Init": True})
    first, second = out.splitlines()[:2]
    assert first.startswith("/sbin/docker-init -- sh -c")
    assert second != "1"


def test_memory_pids_cpu_limits(harness):
    if cgroup_v2():
        script = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max"
    else:
        script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                  "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us")
    out = harness.run(script, host_config={"Memory": 64 << 20, "PidsLimit": 50,
                                           "NanoCpus": 500_000_000})
    values = out.split()
    assert values[0] == str(64 << 20) and values[1] == "50"
    if cgroup_v2():
        assert values[2:4] == ["50000", "100000"]
    else:
        assert values[2:4] == ["50000", "100000"]


def test_private_cgroup_namespace(harness):
    out = harness.run("cat /proc/self/cgroup", host_config={"CgroupnsMode": "private"})
    # Inside its own cgroup namespace the container's cgroup is the root of every hierarchy.
    for line in out.splitlines():
        assert line.rsplit(":", 1)[1] == "/", line


def test_unprivileged_port_sysctl(harness):
    if not os.path.exists("/proc/sys/net/ipv4/ip_unprivileged_port_start"):
        pytest.skip("kernel without net.ipv4.ip_unprivileged_port_start")
    out = harness.run("cat /proc/sys/net/ipv4/ip_unprivileged_port_start "
                      "/proc/sys/net/ipv4/ping_group_range")
    assert out.split() == ["0", "0", "2147483647"]
