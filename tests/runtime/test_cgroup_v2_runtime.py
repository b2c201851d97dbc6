"""The runtime on a pure cgroup v2 host, for real: each runtime command runs in a private mount
namespace where this machine's (otherwise idle) cgroup2 hierarchy is mounted at /sys/fs/cgroup,
which is what a v2-only host looks like to a runtime. Freezing, device rules (eBPF) and the
container's own cgroup2 mount are core v2 features that need no controller."""

import json
import os
import time

import pytest

from conftest import CGROUP_PARENT, PEERS, Runtime, new_id, unavailable
from tests.fixtures.host import cgroup_roots

V2_ROOT = next((r for r in cgroup_roots() if r.endswith("/unified")), None)
MOUNT_V2 = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"', "sh"]

pytestmark = pytest.mark.skipif(V2_ROOT is None, reason="no cgroup2 hierarchy on this host")


@pytest.fixture(scope="module", autouse=True)
def _restore_v2_root():
    """Runtimes enable controllers in their cgroup's ancestors (as they must); put the
    hierarchy's root back as it was, once our cgroups are gone."""
    control = os.path.join(V2_ROOT, "cgroup.subtree_control")
    with open(control) as f:
        before = set(f.read().split())
    yield
    parent = os.path.join(V2_ROOT, CGROUP_PARENT)
    if os.path.isdir(parent):
        for child in os.listdir(parent):
            if os.path.isdir(os.path.join(parent, child)):
                os.rmdir(os.path.join(parent, child))
        os.rmdir(parent)
    with open(control) as f:
        added = set(f.read().split()) - before
    for controller in added:
        with open(control, "w") as f:
            f.write(f"-{controller}")


@pytest.fixture(params=["dockyard-runc", "runc"])
def v2runtime(request, tmp_path):
    if unavailable(request.param):
        pytest.skip(unavailable(request.param))
    rt = Runtime(request.param, PEERS[request.param], str(tmp_path / "state"), prefix=MOUNT_V2)
    yield rt
    rt.cleanup()


def cgroup_dir(b):
    with open(os.path.join(b, "config.json")) as f:
        return os.path.join(V2_ROOT, json.load(f)["linux"]["cgroupsPath"].lstrip("/"))


def test_run_in_a_v2_cgroup(v2runtime, bundle):
    # The kernel still lists this host's v1 hierarchies; the v2 line is the one that counts.
    out = v2runtime.output(bundle(["sh", "-c", "grep '^0::' /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/mounts | cut -d' ' -f3"]))
    assert out.split() == ["0::/", "cgroup2"]


def test_pause_resume_with_cgroup_freeze(v2runtime, bundle):
    b = bundle(["sh", "-c", "while true; do date +%s%N > /tmp/tick; sleep 0.05; done"])
    cid = new_id()
    v2runtime.ok("run", "-d", "--bundle", b, cid)
    assert os.path.isdir(cgroup_dir(b))
    v2runtime.ok("pause", cid)
    assert v2runtime.state(cid)["status"] == "paused"
    with open(os.path.join(cgroup_dir(b), "cgroup.freeze")) as f:
        assert f.read().strip() == "1"
    tick = open(os.path.join(b, "rootfs/tmp/tick")).read()
    time.sleep(0.3)
    assert open(os.path.join(b, "rootfs/tmp/tick")).read() == tick  # frozen: no progress
    v2runtime.ok("resume", cid)
    assert v2runtime.state(cid)["status"] == "running"
    v2runtime.ok("delete", "--force", cid)
    assert not os.path.exists(cgroup_dir(b))


def test_device_rules_by_ebpf(v2runtime, bundle):
    def edit(c):
        caps = c["process"]["capabilities"]
        for key in ("bounding", "effective", "permitted"):
            caps[key].append("CAP_MKNOD")
    out = v2runtime.output(bundle(["sh", "-c", "cat /dev/null && echo null-ok; mknod /tmp/mem c 1 1 && (head -c1 /tmp/mem >/dev/null 2>&1 && echo mem-open || echo mem-denied)"], edit))
    assert out.split() == ["null-ok", "mem-denied"]


def test_hugetlb_limit(v2runtime, bundle):
    """This host's cgroup2 hierarchy holds the hugetlb controller: a real v2 resource limit."""
    with open(os.path.join(V2_ROOT, "cgroup.controllers")) as f:
        if "hugetlb" not in f.read().split():
            pytest.skip("no hugetlb controller on the cgroup2 hierarchy")
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("no 2MB huge pages on this host")
    b = bundle(["sleep", "60"], lambda c: c["linux"]["resources"].update(
        hugepageLimits=[{"pageSize": "2MB", "limit": 4 << 20}]))
    cid = new_id()
    v2runtime.ok("run", "-d", "--bundle", b, cid)
    with open(os.path.join(cgroup_dir(b), "hugetlb.2MB.max")) as f:
        assert int(f.read()) == 4 << 20
