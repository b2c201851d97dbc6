"""The v2 manager against a fake cgroup2 tree in a temp directory. A plain directory does not
grow interface files, so the tests create the files the kernel would."""

import os
import signal

import pytest

from dockyard.runtime.cgroups import CgroupError, load_manager, new_manager

CONTROLLERS = "cpuset cpu io memory hugetlb pids"


def populate(directory, **files):
    os.makedirs(directory, exist_ok=True)
    defaults = {
        "cgroup.controllers": CONTROLLERS,
        "cgroup.subtree_control": "",
        "cgroup.procs": "",
        "cgroup.events": "populated 0\nfrozen 0",
        "cgroup.freeze": "0",
        "cgroup.kill": "",
        "memory.max": "max",
        "memory.low": "0",
        "memory.current": "4096",
        "memory.peak": "8192",
        "memory.swap.max": "max",
        "memory.swap.current": "0",
        "memory.events": "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0",
        "memory.stat": "anon 1024\nfile 2048",
        "cpu.weight": "100",
        "cpu.max": "max 100000",
        "cpu.max.burst": "0",
        "cpu.idle": "0",
        "cpu.stat": "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7",
        "cpuset.cpus": "",
        "cpuset.mems": "",
        "pids.max": "max",
        "pids.current": "2",
        "io.weight": "default 100",
        "io.max": "",
        "io.stat": "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0",
    }
    defaults.update(files)
    for name, content in defaults.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(content + "\n")


def read(directory, name):
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


@pytest.fixture
def root(tmp_path):
    populate(tmp_path)
    populate(tmp_path / "dockyard")
    return str(tmp_path)


@pytest.fixture
def manager(root):
    m = new_manager("c1", None, None, root=root)
    m.create()
    populate(m.paths[""])
    return m


def test_new_manager_detects_fake_v2_tree(root):
    m = new_manager("c1", None, None, root=root)
    assert m.version == 2
    assert m.paths == {"": os.path.join(root, "dockyard", "c1")}
    assert m.mount_sources() == [("", m.paths[""])]
    assert not m.exists()


def test_create_enables_controllers_in_ancestors(root):
    m = new_manager("c1", "/dockyard/c1", None, root=root)
    m.create()
    assert m.exists()
    expected = " ".join(f"+{c}" for c in CONTROLLERS.split())
    assert read(root, "cgroup.subtree_control") == expected
    assert read(os.path.join(root, "dockyard"), "cgroup.subtree_control") == expected
    m.create()  # idempotent


def test_create_skips_controllers_already_enabled(root):
    populate(os.path.join(root, "dockyard"), **{"cgroup.subtree_control": "cpuset cpu io memory hugetlb pids"})
    new_manager("c1", None, None, root=root).create()
    assert read(os.path.join(root, "dockyard"), "cgroup.subtree_control") == "cpuset cpu io memory hugetlb pids"


def test_set_writes_converted_values(manager):
    d = manager.paths[""]
    populate(d, **{"hugetlb.2MB.max": "max"})
    manager.set({
        "memory": {"limit": 100 << 20, "swap": 300 << 20, "reservation": 50 << 20},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0", "burst": 1000, "idle": 1},
        "pids": {"limit": 0},
        "blockIO": {"weight": 1000, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
    })
    assert read(d, "memory.max") == str(100 << 20)
    assert read(d, "memory.swap.max") == str(200 << 20)
    assert read(d, "memory.low") == str(50 << 20)
    assert read(d, "cpu.weight") == "100"
    assert read(d, "cpu.max") == "50000 100000"
    assert read(d, "cpu.max.burst") == "1000"
    assert read(d, "cpu.idle") == "1"
    assert read(d, "cpuset.cpus") == "0-1"
    assert read(d, "cpuset.mems") == "0"
    assert read(d, "pids.max") == "max"
    assert read(d, "io.weight") == "10000"
    assert read(d, "io.max") == "8:0 rbps=1048576"
    assert read(d, "hugetlb.2MB.max") == str(4 << 20)


def test_set_unlimited_and_update(manager):
    d = manager.paths[""]
    manager.set({"memory": {"limit": -1}, "pids": {"limit": 42}, "cpu": {"quota": -1}})
    assert read(d, "memory.max") == "max"
    assert read(d, "memory.swap.max") == "max"  # unlimited memory, swap unset: swap unlimited too
    assert read(d, "pids.max") == "42"
    assert read(d, "cpu.max") == "max"
    populate(d, **{"cpu.max": "20000 100000"})
    manager.set({"cpu": {"period": 50000}})  # update keeps the quota in force
    assert read(d, "cpu.max") == "20000 50000"


def test_io_prefers_bfq_weight_unconverted(manager):
    populate(manager.paths[""], **{"io.bfq.weight": "default 100"})
    manager.set({"blockIO": {"weight": 500}})
    assert read(manager.paths[""], "io.bfq.weight") == "500"


def test_unified_keys_override(manager):
    populate(manager.paths[""], **{"memory.high": "max"})
    manager.set({"cpu": {"shares": 1024}, "unified": {"cpu.weight": "42", "memory.high": "1000000"}})
    assert read(manager.paths[""], "cpu.weight") == "42"
    assert read(manager.paths[""], "memory.high") == "1000000"
    with pytest.raises(CgroupError, match="invalid"):
        manager.set({"unified": {"../escape": "1"}})


def test_errors_name_file_and_value(manager):
    with pytest.raises(CgroupError, match=r"cannot set rdma.max to 1: No such file or directory"):
        manager.set({"unified": {"rdma.max": "1"}})
    with pytest.raises(CgroupError, match="current usage 4096 is above it"):
        manager.set({"memory": {"limit": 1024, "checkBeforeUpdate": True}})
    assert read(manager.paths[""], "memory.max") == "max"
    with pytest.raises(CgroupError, match="real-time"):
        manager.set({"cpu": {"realtimeRuntime": 1000}})
    with pytest.raises(CgroupError, match="swap limit without a memory limit"):
        manager.set({"memory": {"swap": 1000}})


def test_stats(manager):
    stats = manager.stats()
    assert stats["cpu"] == {
        "usage": {"total": 10000, "kernel": 4000, "user": 6000},
        "throttling": {"periods": 5, "throttledPeriods": 2, "throttledTime": 7000},
    }
    assert stats["memory"]["usage"] == {"limit": 2**64 - 1, "usage": 4096, "max": 8192, "failcnt": 3}
    assert stats["memory"]["swap"]["usage"] == 4096
    assert stats["memory"]["raw"] == {"anon": 1024, "file": 2048}
    assert stats["memory"]["cache"] == 2048
    assert stats["pids"] == {"current": 2, "limit": 0}
    assert stats["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 100},
        {"major": 8, "minor": 0, "op": "Write", "value": 200},
    ]


def test_freeze_and_thaw(manager):
    d = manager.paths[""]
    populate(d, **{"cgroup.events": "populated 1\nfrozen 1"})  # what the kernel reports once frozen
    manager.freeze()
    assert read(d, "cgroup.freeze") == "1"
    assert manager.is_frozen()
    manager.thaw()
    assert read(d, "cgroup.freeze") == "0"


def test_freeze_times_out_and_thaws(manager, monkeypatch):
    monkeypatch.setattr("dockyard.runtime.cgroups.common.time.sleep", lambda _: None)
    with pytest.raises(CgroupError, match="timed out"):
        manager.freeze()
    assert read(manager.paths[""], "cgroup.freeze") == "0"


def test_kill_all_uses_cgroup_kill_for_sigkill(manager):
    manager.kill_all(signal.SIGKILL)
    assert read(manager.paths[""], "cgroup.kill") == "1"


def test_pids_are_recursive(manager):
    d = manager.paths[""]
    populate(d, **{"cgroup.procs": "10\n11"})
    populate(os.path.join(d, "sub"), **{"cgroup.procs": "12"})
    assert manager.pids() == [10, 11, 12]


def test_state_round_trip(manager, root):
    again = load_manager(manager.state(), root=root)
    assert again.version == 2 and again.paths == manager.paths
    with pytest.raises(CgroupError, match="not below"):
        load_manager({"version": 2, "paths": {"": "/etc"}}, root=root)


def test_destroy_removes_the_cgroup(root):
    m = new_manager("c2", "/dockyard/c2", None, root=root)
    m.create()
    os.makedirs(os.path.join(m.paths[""], "child"))
    m.destroy()
    assert not m.exists()
    m.destroy()  # idempotent
    assert os.path.isdir(os.path.join(root, "dockyard"))  # parents stay


def test_ignored_resources_warn_through_the_runtime_log(manager, capsys):
    manager.set({"memory": {"limit": 1 << 20, "kernel": 1 << 20, "swappiness": 10}, "network": {"classID": 1}})
    err = capsys.readouterr().err
    assert "warning" in err
    assert "cgroup v2 network resources are not supported; ignoring them" in err
    assert "cgroup v2 has no equivalent of memory.kernel; ignoring it" in err
    assert "cgroup v2 has no equivalent of memory.swappiness; ignoring it" in err
    assert read(manager.paths[""], "memory.max") == str(1 << 20)
