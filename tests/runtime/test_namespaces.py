"""Every namespace type, new or joined by path."""

import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import build, new_id


def ns_inode(pid, kind):
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def test_pid_namespace(runtime, bundle):
    assert runtime.output(bundle(["sh", "-c", "echo $$"])) == "1\n"


def test_network_namespace_has_only_loopback(runtime, bundle):
    assert runtime.output(bundle(["sh", "-c", "ls /sys/class/net"])).split() == ["lo"]


def test_new_namespaces_differ_from_host(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    pid = runtime.state(cid)["pid"]
    for kind in ("pid", "net", "ipc", "uts", "mnt", "cgroup"):
        assert ns_inode(pid, kind) != ns_inode(os.getpid(), kind), kind
    assert ns_inode(pid, "user") == ns_inode(os.getpid(), "user")


def test_user_namespace_with_mappings(runtime, busybox_rootfs):
    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    # The mapped root (host uid 100000) must be able to reach the rootfs: pytest's own temp
    # dirs are private to host root, so this bundle lives in a world-traversable one.
    top = tempfile.mkdtemp(prefix="dy-test-userns-")
    try:
        os.chmod(top, 0o755)
        b = build(top, busybox_rootfs, ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u"], edit)
        os.chmod(b, 0o755)
        subprocess.run(["chown", "-R", "100000:100000", os.path.join(b, "rootfs")], check=True)
        out = runtime.output(b)
    finally:
        shutil.rmtree(top)
    assert out.split() == ["0", "100000", "65536", "0", "100000", "65536", "0"]


def test_join_network_namespace_by_path(runtime, bundle):
    """A second container joins the first one's network namespace through its /proc path."""
    first = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), first)
    pid = runtime.state(first)["pid"]

    def edit(c):
        for n in c["linux"]["namespaces"]:
            if n["type"] == "network":
                n["path"] = f"/proc/{pid}/ns/net"
    second = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"], edit), second)
    assert ns_inode(runtime.state(second)["pid"], "net") == ns_inode(pid, "net")


def test_join_missing_namespace_path_fails(runtime, bundle):
    def edit(c):
        for n in c["linux"]["namespaces"]:
            if n["type"] == "ipc":
                n["path"] = "/proc/999999999/ns/ipc"
    assert runtime.run(bundle(["true"], edit)).returncode != 0


def test_no_network_namespace_shares_the_host(runtime, bundle):
    def edit(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
        # sysfs can only be mounted in a network namespace of our own; bind the host's.
        for m in c["mounts"]:
            if m["destination"] == "/sys":
                m.update(type="bind", source="/sys", options=["rbind", "nosuid", "noexec", "nodev", "ro"])
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"], edit), cid)
    assert ns_inode(runtime.state(cid)["pid"], "net") == ns_inode(os.getpid(), "net")


def test_time_namespace_offsets(runtime, bundle):
    if runtime.name == "runc":
        pytest.skip("Debian's runc 1.1.5 predates time namespaces (runtime-spec 1.2)")

    def edit(c):
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0}}
    uptime = float(runtime.output(bundle(["cut", "-d.", "-f1", "/proc/uptime"], edit)))
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    assert uptime >= host + 86400 * 365 - 5


def test_ipc_namespace_is_private(runtime, bundle):
    out = runtime.output(bundle(["sh", "-c", "cat /proc/sysvipc/shm | wc -l"]))
    assert out.strip() == "1"  # only the header line: none of the host's segments
