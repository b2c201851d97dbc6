"""Capabilities, user change and rlimits as the container init applies them (root only).

Each capability case runs in a forked child, which reports /proc/self/status through a pipe,
so the test process keeps its own credentials."""

import errno
import json
import os
import re
import socket
import subprocess
import traceback

import pytest

from dockyard.errors import InvalidArgument, SystemFailure
from dockyard.linux import capabilities, prctl, rlimits, user

pytestmark = pytest.mark.root
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def in_child(func):
    """Run func() in a forked child; return its JSON-able result or raise its error text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                result = {"ok": func()}
            except BaseException:
                result = {"error": traceback.format_exc()}
            with os.fdopen(w, "w") as f:
                json.dump(result, f)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result = json.loads(data)
    if "error" in result:
        pytest.fail("in child:\n" + result["error"])
    return result["ok"]


def sets():
    return {k: sorted(v) for k, v in capabilities.current().items()}


def caps_of_exec():
    """The capability sets of a freshly exec'd program (what the container process gets)."""
    status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True,
                            check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    masks = dict(re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M))
    return {key: sorted(capabilities.NAMES[n] for n in range(41) if int(value, 16) >> n & 1)
            for key, value in masks.items()}



def apply_both_phases(caps):
    """What the init does for a process that keeps its user: both phases, one warning list."""
    warnings = capabilities.drop_bounding(caps)
    return warnings + [w for w in capabilities.set_capabilities(caps) if w not in warnings]

def test_name_table():
    assert capabilities.NUMBERS["CAP_CHOWN"] == 0
    assert capabilities.NUMBERS["CAP_NET_BIND_SERVICE"] == 10
    assert capabilities.NUMBERS["CAP_SYS_ADMIN"] == 21
    assert capabilities.NUMBERS["CAP_AUDIT_READ"] == 37
    assert capabilities.NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40
    assert len(capabilities.NAMES) == 41
    assert capabilities.NAMES[capabilities.NUMBERS["CAP_BPF"]] == "CAP_BPF"


def test_parse_unknown_and_above_last_cap(monkeypatch):
    assert capabilities.parse(["CAP_KILL", "CAP_FOO", "chown", "CAP_KILL"]) == \
        ({5}, ["CAP_FOO", "chown"])
    monkeypatch.setattr(capabilities, "last_cap", lambda: 38)
    assert capabilities.parse(["CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]) == \
        ({38}, ["CAP_BPF", "CAP_CHECKPOINT_RESTORE"])


def test_last_cap_matches_kernel():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert capabilities.last_cap() == int(f.read())


@needs_root
def test_sets_as_root_without_user_change():
    caps = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_KILL"],
        "ambient": [],
    }

    def child():
        warnings = apply_both_phases(caps)
        return warnings, sets(), prctl.prctl(prctl.PR_CAPBSET_READ, 21)

    warnings, got, has_sys_admin = in_child(child)
    assert warnings == []
    assert got == {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_KILL"],
        "ambient": [],
    }
    assert has_sys_admin == 0


@needs_root
def test_setuid_keeps_ambient_net_bind_service_across_exec():
    net = ["CAP_NET_BIND_SERVICE"]
    caps = {"bounding": net, "effective": net, "permitted": net, "inheritable": net,
            "ambient": net}

    def child():
        warnings = capabilities.drop_bounding(caps)
        user.set_user(1000, 1000, [])
        warnings += capabilities.set_capabilities(caps)
        with socket.socket() as s:  # the effective cap really works as uid 1000
            try:
                s.bind(("127.0.0.1", 81))
            except OSError as e:  # in use is fine: the permission check came first
                if e.errno != errno.EADDRINUSE:
                    raise
        return warnings, os.getresuid(), os.getresgid(), os.getgroups(), sets(), caps_of_exec()

    warnings, uids, gids, groups, got, after_exec = in_child(child)
    assert warnings == []
    assert uids == [1000, 1000, 1000] and gids == [1000, 1000, 1000] and groups == []
    assert got == {k: net for k in got}
    # ambient is what carries the cap through execve of a non-setuid program as non-root
    assert after_exec == {"CapInh": net, "CapPrm": net, "CapEff": net, "CapBnd": net,
                          "CapAmb": net}


@needs_root
def test_setuid_without_capabilities_object_leaves_nothing():
    def child():
        warnings = capabilities.drop_bounding(None)
        user.set_user(1000, 1000, [], umask=0o027)
        warnings += capabilities.set_capabilities(None)
        return warnings, sets(), caps_of_exec(), os.umask(0)

    warnings, got, after_exec, umask = in_child(child)
    assert warnings == []
    assert got == {k: [] for k in got}
    assert after_exec == {k: [] for k in after_exec}
    assert umask == 0o027


@needs_root
def test_root_with_no_capabilities_object_gets_none():
    def child():
        apply_both_phases(None)
        return sets(), caps_of_exec()

    got, after_exec = in_child(child)
    assert got == {k: [] for k in got}
    assert after_exec == {k: [] for k in after_exec}


@needs_root
def test_unknown_caps_and_ambient_not_inheritable_are_warnings():
    caps = {
        "bounding": ["CAP_KILL", "CAP_NET_RAW", "CAP_NOT_A_CAP"],
        "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL", "CAP_NET_RAW"],
        "inheritable": ["CAP_KILL", "CAP_NOT_A_CAP"],
        "ambient": ["CAP_KILL", "CAP_NET_RAW"],  # NET_RAW is not inheritable
    }

    def child():
        return apply_both_phases(caps), sets()

    warnings, got = in_child(child)
    assert warnings == [
        "ignoring unknown or unavailable capabilities: ['CAP_NOT_A_CAP']",
        "cannot raise ambient capability CAP_NET_RAW: "
        "not in the permitted and inheritable sets",
    ]
    assert got["bounding"] == ["CAP_KILL", "CAP_NET_RAW"]
    assert got["ambient"] == ["CAP_KILL"]


@needs_root
def test_keep_for_setuid_runs_phase_one_only():
    kill = ["CAP_KILL"]
    caps = {"bounding": kill, "effective": kill, "permitted": kill, "inheritable": kill}

    def child():
        capabilities.drop_bounding(caps)
        before = sets()
        user.set_user(1000, 1000, [])
        after_setuid = sets()
        capabilities.set_capabilities(caps)
        return before, after_setuid, sets()

    before, after_setuid, final = in_child(child)
    assert before["bounding"] == kill and before["effective"] != []
    # keepcaps: the permitted set survives the uid change, effective does not
    assert after_setuid["permitted"] == before["permitted"] and after_setuid["effective"] == []
    assert final == {"bounding": kill, "effective": kill, "permitted": kill,
                     "inheritable": kill, "ambient": []}


@needs_root
def test_set_user_groups_and_inherited_umask():
    def child():
        os.umask(0o077)
        user.set_user(1234, 4321, [5, 6, 7])
        return os.getresuid(), os.getresgid(), sorted(os.getgroups()), os.umask(0)

    uids, gids, groups, umask = in_child(child)
    assert uids == [1234] * 3 and gids == [4321] * 3 and groups == [5, 6, 7]
    assert umask == 0o077  # no umask in the config: the inherited one stays, as in runc


# rlimits: set by the parent on a child pid, checked through /proc/<pid>/limits.

def limits_of(pid: int) -> dict[str, tuple[str, str]]:
    with open(f"/proc/{pid}/limits") as f:
        lines = f.read().splitlines()[1:]
    return {line[:26].strip(): tuple(line[26:].split()[:2]) for line in lines}


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_rlimits_table():
    import resource
    assert len(rlimits.RLIMITS) == 16
    assert rlimits.RLIMITS["RLIMIT_LOCKS"] == 10  # the one Python's resource module lacks
    for name, number in rlimits.RLIMITS.items():
        assert getattr(resource, name, 10) == number


@needs_root
def test_rlimits_applied_to_a_child(sleeper):
    before = limits_of(sleeper)
    # lowering is always allowed; an unlimited hard limit may be asked for again as uint64 max
    stack_hard = before["Max stack size"][1]
    rlimits.apply(sleeper, [
        {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": int(before["Max open files"][1]) - 1},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600},
        {"type": "RLIMIT_STACK", "soft": 1 << 20,
         "hard": rlimits.RLIM_INFINITY if stack_hard == "unlimited" else int(stack_hard)},
    ])
    got = limits_of(sleeper)
    assert got["Max open files"] == ("1000", str(int(before["Max open files"][1]) - 1))
    assert got["Max core file size"] == ("0", "0")
    assert got["Max processes"] == ("500", "600")
    assert got["Max stack size"] == (str(1 << 20), stack_hard)


@needs_root
def test_rlimit_above_hard_limit_is_a_clear_error(sleeper):
    # No CAP_SYS_RESOURCE here, so the hard limit cannot be raised.
    if "CAP_SYS_RESOURCE" in capabilities.current()["effective"]:
        pytest.skip("this machine has CAP_SYS_RESOURCE")
    more = int(limits_of(sleeper)["Max open files"][1]) + 1000
    with pytest.raises(SystemFailure) as e:
        rlimits.apply(sleeper, [{"type": "RLIMIT_NOFILE", "soft": more, "hard": more}])
    assert str(e.value) == \
        f"cannot set RLIMIT_NOFILE to {more}/{more}: Operation not permitted"


def test_rlimit_on_a_missing_pid():
    with pytest.raises(SystemFailure, match="No such process"):
        rlimits.apply(2**22 + 1, [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}])


@pytest.mark.parametrize("entries, message", [
    ([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}], "unknown rlimit type 'RLIMIT_BOGUS'"),
    ([{"soft": 1, "hard": 1}], "unknown rlimit type None"),
    ([{"type": "RLIMIT_CORE", "soft": 2, "hard": 1}], "soft limit 2 is above hard limit 1"),
    ([{"type": "RLIMIT_CORE", "soft": -1, "hard": 1}], "is not a uint64"),
    ([{"type": "RLIMIT_CORE", "soft": 0, "hard": 2**64}], "is not a uint64"),
    ([{"type": "RLIMIT_CORE", "soft": 0}], "is not a uint64"),
    ([{"type": "RLIMIT_CORE", "soft": 1.5, "hard": 2}], "is not a uint64"),
    ([{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}] * 2, "duplicate rlimit type RLIMIT_CORE"),
])
def test_invalid_rlimits_are_rejected_before_any_is_set(entries, message):
    # pid 1 would be refused by the kernel; validation must come first
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        rlimits.apply(1, [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}] + entries)
