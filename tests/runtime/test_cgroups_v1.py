"""Real cgroups on this machine: v1 hierarchies under /sys/fs/cgroup, and the hybrid host's
cgroup2 at /sys/fs/cgroup/unified for the v2 verbs (freeze, kill, eBPF device filter). Every
test removes its cgroups and processes, even when it fails."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from dockyard.runtime.cgroups import CgroupError, load_manager, new_manager
from dockyard.runtime.cgroups.common import parse_mountinfo, read_proc

pytestmark = pytest.mark.root

UNIFIED = "/sys/fs/cgroup/unified"


def v1_hierarchies():
    return {m.mountpoint for m in parse_mountinfo(read_proc("mountinfo")) if m.fstype == "cgroup"}


needs_v1 = pytest.mark.skipif(os.geteuid() != 0 or not any(p.endswith("/memory") for p in v1_hierarchies()),
                              reason="needs root and cgroup v1")


class Children:
    """Processes the test started; all killed at the end."""

    def __init__(self):
        self.procs = []

    def start(self, code: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code], **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def children():
    c = Children()
    yield c
    c.stop()


def cleanup(manager):
    try:
        if manager.exists():
            if manager.version == 2 or "freezer" in manager.paths:
                manager.thaw()
            manager.kill_all(signal.SIGKILL)
    finally:
        manager.destroy()


@pytest.fixture
def v1():
    m = new_manager("test", f"/dockyard-test-{uuid.uuid4().hex[:12]}", None)
    m.create()
    yield m
    cleanup(m)


def read(directory, name):
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


# Waits until it is in the cgroup, then tries to open /dev/null and /dev/zero.
PROBE = ("import os, sys\nsys.stdin.readline()\nfor d in ('/dev/null', '/dev/zero'):\n    try:\n        os.close(os.open(d, os.O_RDONLY)); print('ok')\n"
         "    except OSError as e:\n        print(e.errno)\n")
TICKER = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.01)"


@needs_v1
def test_create_set_apply_stats(v1, children):
    assert v1.version == 1 and v1.exists()
    v1.set({
        "memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 20},
    })
    p = v1.paths
    assert read(p["memory"], "memory.limit_in_bytes") == str(64 << 20)
    assert read(p["memory"], "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read(p["memory"], "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(p["memory"], "memory.swappiness") == "10"
    assert read(p["cpu"], "cpu.shares") == "512"
    assert read(p["cpu"], "cpu.cfs_quota_us") == "50000"
    assert read(p["cpuset"], "cpuset.cpus") == "0"
    assert read(p["pids"], "pids.max") == "20"

    # Lowering both: memsw must go first, or the kernel refuses memory > memsw.
    v1.set({"memory": {"limit": 32 << 20, "swap": 48 << 20}})
    assert read(p["memory"], "memory.memsw.limit_in_bytes") == str(48 << 20)
    v1.set({"memory": {"limit": -1, "swap": -1}, "pids": {"limit": -1}})
    assert int(read(p["memory"], "memory.limit_in_bytes")) > 1 << 60
    assert read(p["pids"], "pids.max") == "max"

    # v1 charges a process's memory where it was when it touched it: work only once inside.
    child = children.start("import sys\nsys.stdin.readline()\nb = b'x' * (8 << 20)\nsum(range(10**6))\nprint('ready', flush=True)\nsys.stdin.readline()",
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    v1.apply(child.pid)
    for directory in set(p.values()):
        assert str(child.pid) in read(directory, "cgroup.procs").split()
    assert v1.pids() == [child.pid]
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline() == "ready\n"

    stats = v1.stats()
    assert stats["pids"] == {"current": 1, "limit": 0}
    assert stats["memory"]["usage"]["usage"] > 0
    assert set(stats["memory"]) >= {"usage", "swap", "raw", "cache"}
    assert stats["cpu"]["usage"]["total"] > 0
    assert set(stats["cpu"]["throttling"]) == {"periods", "throttledPeriods", "throttledTime"}
    assert "ioServiceBytesRecursive" in stats["blkio"]


@needs_v1
def test_cpuset_copied_from_parent_on_create(v1, children):
    parent = os.path.dirname(v1.paths["cpuset"])
    assert read(parent, "cpuset.cpus") and read(parent, "cpuset.cpus") == read(v1.paths["cpuset"], "cpuset.cpus")
    assert read(v1.paths["cpuset"], "cpuset.mems") == read(parent, "cpuset.mems")
    v1.apply(children.start("import time; time.sleep(60)").pid)  # ENOSPC if they were empty


@needs_v1
def test_memory_limit_below_usage_is_a_clear_error(v1, children):
    v1.set({"memory": {"limit": 256 << 20, "swap": 256 << 20, "swappiness": 0}})
    child = children.start("import sys\nsys.stdin.readline()\nb = b'x' * (32 << 20)\nprint('ready', flush=True)\nsys.stdin.readline()",
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    v1.apply(child.pid)
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline() == "ready\n"
    with pytest.raises(CgroupError, match=r"cannot set memory.limit_in_bytes to 4096: Device or resource busy \(current usage \d+"):
        v1.set({"memory": {"limit": 4096, "swap": 4096}})
    with pytest.raises(CgroupError, match="current usage"):
        v1.set({"memory": {"limit": 1 << 20, "checkBeforeUpdate": True}})
    assert read(v1.paths["memory"], "memory.limit_in_bytes") == str(256 << 20)


@needs_v1
def test_freeze_stops_the_process_and_thaw_resumes_it(v1, children):
    child = children.start(TICKER, stdout=subprocess.PIPE)
    v1.apply(child.pid)
    child.stdout.readline()
    v1.freeze()
    assert v1.is_frozen()
    assert read(v1.paths["freezer"], "freezer.state") == "FROZEN"
    os.set_blocking(child.stdout.fileno(), False)
    while child.stdout.read1():  # what it printed before it froze
        pass
    time.sleep(0.2)
    assert child.stdout.read1() in (None, b"")  # a frozen process prints nothing
    v1.thaw()
    assert not v1.is_frozen()
    os.set_blocking(child.stdout.fileno(), True)
    assert child.stdout.readline() == b"tick\n"


@needs_v1
def test_kill_all_devices_and_state(v1, children):
    v1.set({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    assert read(v1.paths["devices"], "devices.list") == "c 1:3 rwm"
    probe = children.start(PROBE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    v1.apply(probe.pid)
    out, _ = probe.communicate("go\n")
    assert out.split() == ["ok", "1"]  # /dev/null allowed, /dev/zero EPERM

    a, b = children.start("import time; time.sleep(60)"), children.start("import time; time.sleep(60)")
    v1.apply(a.pid)
    v1.apply(b.pid)
    again = load_manager(v1.state())
    assert again.paths == v1.paths
    assert again.mount_sources() == v1.mount_sources()
    again.kill_all(signal.SIGKILL)
    assert a.wait() == -signal.SIGKILL and b.wait() == -signal.SIGKILL
    again.destroy()
    assert not v1.exists()


@needs_v1
def test_mount_sources_and_unified_rejected(v1):
    names = dict(v1.mount_sources())
    assert "memory" in names and names["memory"] == v1.paths["memory"]
    with pytest.raises(CgroupError, match="cgroup v2"):
        v1.set({"unified": {"memory.high": "1"}})
    with pytest.raises(CgroupError, match="systemd"):
        new_manager("x", "system.slice:dockyard:x", None)


@needs_v1
def test_destroy_with_a_live_process_fails_clearly(v1, children):
    v1.apply(children.start("import time; time.sleep(60)").pid)
    with pytest.raises(CgroupError, match="cannot remove cgroup .*busy"):
        v1.destroy()


# --- cgroup v2, on the hybrid host's unified hierarchy ----------------------------------------

needs_unified = pytest.mark.skipif(
    os.geteuid() != 0 or UNIFIED not in {m.mountpoint for m in parse_mountinfo(read_proc("mountinfo")) if m.fstype == "cgroup2"},
    reason="needs root and cgroup2 at /sys/fs/cgroup/unified",
)


@pytest.fixture
def v2():
    before = read(UNIFIED, "cgroup.subtree_control").split()
    m = new_manager("test", f"/dockyard-test-{uuid.uuid4().hex[:12]}", None, root=UNIFIED)
    m.create()
    yield m
    cleanup(m)
    for controller in set(read(UNIFIED, "cgroup.subtree_control").split()) - set(before):
        with open(os.path.join(UNIFIED, "cgroup.subtree_control"), "w") as f:
            f.write(f"-{controller}")


@needs_unified
def test_v2_device_filter_freeze_and_kill(v2, children):
    assert v2.version == 2
    v2.set({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]})
    probe = children.start(PROBE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    v2.apply(probe.pid)
    out, _ = probe.communicate("go\n")
    assert out.split() == ["ok", "1"]  # /dev/null allowed, /dev/zero EPERM

    child = children.start(TICKER, stdout=subprocess.PIPE)
    v2.apply(child.pid)
    child.stdout.readline()
    v2.freeze()
    assert v2.is_frozen()
    v2.thaw()
    assert not v2.is_frozen()
    assert child.stdout.readline() == b"tick\n"
    assert v2.pids() == [child.pid]
    v2.kill_all(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
