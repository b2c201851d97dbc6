"""Pure parts of the cgroup code: v1→v2 value conversions, path resolution, mountinfo parsing
and the eBPF device program (checked by running it in a tiny interpreter)."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.runtime.cgroups import CgroupError, detect_version
from dockyard.runtime.cgroups.common import (
    Mount,
    cgroup_subpath,
    page_size_name,
    parse_mountinfo,
    parse_proc_cgroup,
    place,
)
from dockyard.runtime.cgroups.v1.devices import rule_line
from dockyard.runtime.cgroups.v2 import devices
from dockyard.runtime.cgroups.v2.cpu import cpu_max, shares_to_weight
from dockyard.runtime.cgroups.v2.io import blkio_weight_to_io_weight
from dockyard.runtime.cgroups.v2.memory import swap_to_v2


@pytest.mark.parametrize("shares,weight", [(0, 0), (1, 1), (2, 1), (1024, 100), (262144, 10000), (10**6, 10000)])
def test_shares_to_weight_fixed_points(shares, weight):
    assert shares_to_weight(shares) == weight


@given(st.integers(2, 262144), st.integers(2, 262144))
def test_shares_to_weight_is_monotonic_and_in_range(a, b):
    lo, hi = sorted((a, b))
    assert 1 <= shares_to_weight(lo) <= shares_to_weight(hi) <= 10000


@pytest.mark.parametrize("blkio,io", [(0, 0), (10, 1), (1000, 10000), (500, 4950)])
def test_blkio_weight_to_io_weight(blkio, io):
    assert blkio_weight_to_io_weight(blkio) == io


@pytest.mark.parametrize(
    "swap,limit,expected",
    [(0, 0, 0), (0, -1, -1), (-1, 100, -1), (0, 100, 0), (300, 100, 200), (100, 100, 0)],
)
def test_swap_to_v2(swap, limit, expected):
    assert swap_to_v2(swap, limit) == expected


@pytest.mark.parametrize("swap,limit", [(300, 0), (50, 100), (300, -2)])
def test_swap_to_v2_rejects(swap, limit):
    with pytest.raises(CgroupError):
        swap_to_v2(swap, limit)


@pytest.mark.parametrize(
    "quota,period,current,line",
    [(50000, 100000, None, "50000 100000"), (-1, 100000, None, "max 100000"), (20000, 0, None, "20000"),
     (0, 50000, "30000 100000", "30000 50000"), (0, 50000, "max 100000", "max 50000")],
)
def test_cpu_max(quota, period, current, line):
    assert cpu_max(quota, period, current) == line


@pytest.mark.parametrize("kib,name", [(2048, "2MB"), (1048576, "1GB"), (64, "64KB"), (512 * 1024, "512MB")])
def test_page_size_name(kib, name):
    assert page_size_name(kib) == name


def test_cgroup_subpath():
    assert cgroup_subpath(None, "abc") == ("/dockyard/abc", False)
    assert cgroup_subpath("/a/b", "abc") == ("/a/b", False)
    assert cgroup_subpath("a/b", "abc") == ("/a/b", True)
    # '..' cannot climb out of the base
    assert cgroup_subpath("/../../etc", "abc") == ("/etc", False)
    assert cgroup_subpath("//a", "abc") == ("/a", False)
    with pytest.raises(CgroupError, match="systemd cgroup driver is not supported"):
        cgroup_subpath("system.slice:docker:abc", "abc")
    with pytest.raises(CgroupError):
        cgroup_subpath("/..", "abc")


MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /kube /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:39 / /mnt/with\\040space rw - ext4 /dev/sda1 rw
"""


def test_parse_mountinfo_and_detect():
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts[1] == Mount("/", "/sys/fs/cgroup/cpu,cpuacct", "cgroup", ("rw", "cpu", "cpuacct"))
    assert mounts[2].root == "/kube"
    assert mounts[5].mountpoint == "/mnt/with space"
    assert detect_version("/sys/fs/cgroup", MOUNTINFO) == 1
    assert detect_version("/sys/fs/cgroup/unified", MOUNTINFO) == 2
    pure_v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    assert detect_version("/sys/fs/cgroup", pure_v2) == 2


def test_parse_proc_cgroup_and_place():
    own = parse_proc_cgroup("4:memory:/kube/pod1\n2:cpu,cpuacct:/user\n1:name=systemd:/init.scope\n0::/user.slice\n")
    assert own == {"memory": "/kube/pod1", "cpu": "/user", "cpuacct": "/user", "name=systemd": "/init.scope", "": "/user.slice"}
    memory = Mount("/kube", "/sys/fs/cgroup/memory", "cgroup", ())
    # Absolute paths start at the mount; relative ones at our own cgroup, seen through the mount.
    assert place(memory, own["memory"], "/c1", False) == "/sys/fs/cgroup/memory/c1"
    assert place(memory, own["memory"], "/c1", True) == "/sys/fs/cgroup/memory/pod1/c1"
    cpu = Mount("/", "/sys/fs/cgroup/cpu,cpuacct", "cgroup", ())
    assert place(cpu, own["cpu"], "/c1", True) == "/sys/fs/cgroup/cpu,cpuacct/user/c1"


def test_v1_device_rule_lines():
    assert rule_line({"allow": False, "access": "rwm"}) == "a *:* rwm"
    assert rule_line({"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}) == "c 1:3 rw"
    assert rule_line({"allow": True, "type": "b", "major": 8, "access": "m"}) == "b 8:* m"
    with pytest.raises(CgroupError):
        rule_line({"type": "x", "access": "r"})
    with pytest.raises(CgroupError):
        rule_line({"type": "c", "access": "rx"})


# --- the eBPF device program ----------------------------------------------------------------

ACCESS_BITS = {"m": 1, "r": 2, "w": 4}


def run_bpf(program: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """Interpret the few opcodes devices.compile emits."""
    ctx = struct.pack("<III", (access << 16) | dev_type, major, minor)
    regs, pc, mask = [0] * 11, 0, 2**64 - 1
    while True:
        code, regbyte, off, imm = struct.unpack_from("<BBhi", program, pc * 8)
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if code == 0x61:
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x54:
            regs[dst] = (regs[dst] & imm) & 0xFFFFFFFF
        elif code == 0x74:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xB7:
            regs[dst] = imm & mask
        elif code == 0xBF:
            regs[dst] = regs[src]
        elif code == 0x57:
            regs[dst] &= imm & mask
        elif code == 0x15:
            pc += off if regs[dst] == imm & mask else 0
        elif code == 0x55:
            pc += off if regs[dst] != imm & mask else 0
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def reference(rules, dev_type, access, major, minor) -> int:
    """Last matching rule wins; an allow covers the request only if it grants every bit,
    a deny matches if it denies any; nothing matching means allowed."""
    for rule in reversed(rules):
        kind = rule.get("type") or "a"
        bits = sum(ACCESS_BITS[c] for c in set(rule.get("access") or "rwm"))
        if kind != "a" and {"b": 1, "c": 2}[kind] != dev_type:
            continue
        if rule.get("major") is not None and rule["major"] != major:
            continue
        if rule.get("minor") is not None and rule["minor"] != minor:
            continue
        if rule["allow"] and access & ~bits == 0:
            return 1
        if not rule["allow"] and access & bits:
            return 0
    return 1


rule_strategy = st.fixed_dictionaries(
    {"allow": st.booleans(), "type": st.sampled_from(["a", "b", "c"]), "access": st.sampled_from(["r", "w", "m", "rw", "rwm", "wm"])},
    optional={"major": st.integers(0, 3), "minor": st.integers(0, 3)},
)


@given(
    st.lists(rule_strategy, max_size=6),
    st.sampled_from([1, 2]),
    st.integers(1, 7),
    st.integers(0, 3),
    st.integers(0, 3),
)
def test_device_program_matches_reference(rules, dev_type, access, major, minor):
    program = devices.compile(rules)
    assert run_bpf(program, dev_type, access, major, minor) == reference(rules, dev_type, access, major, minor)


def test_device_program_docker_defaults():
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    program = devices.compile(rules)
    assert run_bpf(program, 2, ACCESS_BITS["r"] | ACCESS_BITS["w"], 1, 3) == 1  # /dev/null
    assert run_bpf(program, 2, ACCESS_BITS["r"], 1, 5) == 0  # /dev/zero
    assert run_bpf(program, 1, ACCESS_BITS["m"], 8, 0) == 0  # mknod a disk


def test_device_program_stops_after_catch_all():
    # Instructions after an unconditional rule would be unreachable, which the verifier rejects.
    only_allow_all = devices.compile([{"allow": True, "access": "rwm"}])
    assert len(only_allow_all) == 8 * (6 + 2)


def test_mount_is_an_immutable_value():
    a = Mount("/", "/sys/fs/cgroup/memory", "cgroup", ("rw", "memory"))
    b = Mount(root="/", mountpoint="/sys/fs/cgroup/memory", fstype="cgroup", super_options=("rw", "memory"))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Mount("/kube", "/sys/fs/cgroup/memory", "cgroup", ("rw", "memory"))
    assert repr(a) == "Mount(root='/', mountpoint='/sys/fs/cgroup/memory', fstype='cgroup', super_options=('rw', 'memory'))"
    with pytest.raises(AttributeError):
        a.root = "/other"


def test_page_size_check():
    from dockyard.runtime.cgroups.common import check_page_size

    assert check_page_size("2MB") == "2MB" and check_page_size("1GB") == "1GB"
    for bad in ("", "0MB", "2mb", "2 MB", "2TB", None):
        with pytest.raises(CgroupError, match="invalid hugepage size"):
            check_page_size(bad)


def test_manager_protocol_and_classes_are_still_exported():
    import dockyard.runtime.cgroups as cgroups
    from dockyard.runtime.cgroups import Manager, common
    from dockyard.runtime.cgroups.v1.manager import V1Manager
    from dockyard.runtime.cgroups.v2.manager import V2Manager

    assert common.Manager is Manager and "create" in dir(Manager)
    assert cgroups.V1Manager is V1Manager and cgroups.V2Manager is V2Manager
    with pytest.raises(AttributeError):
        cgroups.NoSuchThing  # noqa: B018


def _modules_after(code: str) -> set[str]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_loading_a_manager_imports_only_its_version():
    """Every dockyard-runc verb is a fresh interpreter: `state`/`kill`/`delete` load the saved
    manager, and should not pay for the other version, the controller modules or heavy stdlib."""
    v1_state = {"version": 1, "paths": {"memory": "/sys/fs/cgroup/memory/x"}, "mountpoints": {"memory": "/sys/fs/cgroup/memory"}}
    loaded = _modules_after(f"from dockyard.runtime.cgroups import load_manager\nload_manager({v1_state!r}).is_frozen()")
    assert "dockyard.runtime.cgroups.v1.manager" in loaded
    unwanted = {"dataclasses", "typing", "logging", "inspect", "signal", "ctypes", "dockyard.linux.bpf",
                "dockyard.runtime.cgroups.v2", "dockyard.runtime.cgroups.v2.manager", "dockyard.runtime.cgroups.protocol"}
    unwanted |= {f"dockyard.runtime.cgroups.v1.{m}" for m in ("blkio", "cpu", "cpuset", "devices", "freezer", "hugetlb", "memory", "pids")}
    assert not loaded & unwanted
