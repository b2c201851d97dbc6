"""Bad input gets a one-line error and a non-zero exit, and leaves nothing behind: no state
dir, no cgroup, no mount, no process (runtime-spec runtime.md §Errors)."""

import json
import os

import pytest

from conftest import cgroup_dirs, mounts_under, new_id


def assert_nothing_left(rt, cid, bundle_path):
    assert rt("state", cid).returncode != 0
    assert not os.path.exists(os.path.join(rt.root, cid))
    with open(os.path.join(bundle_path, "config.json")) as f:
        try:
            cgroups_path = json.load(f)["linux"]["cgroupsPath"]
        except (ValueError, KeyError, TypeError):
            cgroups_path = None
    if cgroups_path:
        assert cgroup_dirs(cgroups_path) == []
    assert mounts_under(bundle_path) == []


def one_line_error(r):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


BROKEN_CONFIGS = {
    "args not an array": lambda c: c["process"].update(args="sh"),
    "unknown namespace": lambda c: c["linux"]["namespaces"].append({"type": "bogus"}),
    "negative uid": lambda c: c["process"]["user"].update(uid=-1),
    "mount without destination": lambda c: c["mounts"].append({"type": "tmpfs"}),
    "no root": lambda c: c.pop("root"),
    "unknown rlimit": lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]),
}


@pytest.mark.parametrize("case", list(BROKEN_CONFIGS))
def test_invalid_config_is_refused_cleanly(ours, bundle, case):
    b = bundle(["true"], BROKEN_CONFIGS[case])
    cid = new_id()
    line = one_line_error(ours("create", "--bundle", b, cid))
    assert "level=error" in line
    assert_nothing_left(ours, cid, b)


def test_invalid_json(ours, bundle):
    b = bundle(["true"])
    with open(os.path.join(b, "config.json"), "w") as f:
        f.write("{not json")
    cid = new_id()
    assert "invalid JSON" in one_line_error(ours("create", "--bundle", b, cid))
    assert_nothing_left(ours, cid, b)


def test_missing_config(ours, tmp_path):
    assert "config.json" in one_line_error(ours("create", "--bundle", str(tmp_path), new_id()))


def test_missing_rootfs(runtime, bundle):
    b = bundle(["true"], lambda c: c["root"].update(path="nowhere"))
    cid = new_id()
    r = runtime("create", "--bundle", b, cid)
    assert r.returncode != 0
    assert_nothing_left(runtime, cid, b)
    if runtime.ours:
        assert "rootfs" in one_line_error(r)


def test_failure_inside_init_leaves_nothing(runtime, bundle, tmp_path):
    """The mounts are half done when the init fails: all of it must go."""
    def edit(c):
        c["mounts"].append({"destination": "/a", "type": "tmpfs", "source": "tmpfs"})
        c["mounts"].append({"destination": "/b", "type": "bind", "source": str(tmp_path / "missing"),
                            "options": ["bind"]})
    b = bundle(["true"], edit)
    cid = new_id()
    r = runtime("create", "--bundle", b, cid)
    assert r.returncode != 0
    assert_nothing_left(runtime, cid, b)


def test_program_not_found(runtime, bundle):
    b = bundle(["/no/such/program"])
    cid = new_id()
    r = runtime("create", "--bundle", b, cid)
    assert r.returncode != 0
    assert "no such file" in r.stderr.lower() or "not found" in r.stderr.lower()
    assert_nothing_left(runtime, cid, b)


def test_duplicate_id(runtime, bundle):
    cid = new_id()
    runtime.ok("create", "--bundle", bundle(["true"]), cid)
    pid = runtime.state(cid)["pid"]
    r = runtime("create", "--bundle", bundle(["true"]), cid)
    assert r.returncode != 0
    assert runtime.state(cid)["pid"] == pid  # the first one is untouched
    if runtime.ours:
        assert "exists" in one_line_error(r)


@pytest.mark.parametrize("verb", [["state"], ["start"], ["kill"], ["delete"], ["pause"],
                                  ["resume"], ["ps"], ["exec", "--", "X", "true"], ["events", "--stats"]])
def test_unknown_id(runtime, verb):
    args = [a if a != "X" else "nope" for a in verb]
    if "X" not in verb:
        args.append("nope")
    r = runtime(*args)
    assert r.returncode != 0
    if runtime.ours:
        assert "does not exist" in one_line_error(r)


def test_delete_force_of_unknown_id_succeeds(runtime):
    assert runtime("delete", "--force", "nope").returncode == 0


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "."])
def test_invalid_container_id(runtime, bundle, bad):
    assert runtime("create", "--bundle", bundle(["true"]), bad).returncode != 0


@pytest.mark.parametrize("feature,edit", [
    ("apparmor", lambda c: c["process"].update(apparmorProfile="docker-default")),
    ("selinux", lambda c: c["process"].update(selinuxLabel="system_u:system_r:container_t:s0")),
    ("Intel RDT", lambda c: c["linux"].update(intelRdt={"closID": "x"})),
])
def test_features_this_machine_lacks_are_refused(ours, bundle, feature, edit):
    b = bundle(["true"], edit)
    cid = new_id()
    assert feature.lower() in one_line_error(ours("create", "--bundle", b, cid)).lower()
    assert_nothing_left(ours, cid, b)


def test_terminal_without_console_socket_when_detaching(runtime, bundle):
    b = bundle(["true"], lambda c: c["process"].update(terminal=True))
    cid = new_id()
    assert runtime("create", "--bundle", b, cid).returncode != 0
    assert_nothing_left(runtime, cid, b)


def test_rlimit_above_hard_limit_without_cap_sys_resource(ours, bundle):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no finite hard limit to exceed")

    def edit(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": hard + 1000, "soft": hard + 1000}]
    b = bundle(["true"], edit)
    cid = new_id()
    r = ours("create", "--bundle", b, cid)
    try:
        with open("/proc/self/status") as f:
            has_cap = "CapEff:\t000001ffffffffff" in f.read()
    except OSError:
        has_cap = False
    if has_cap:
        pytest.skip("this machine has CAP_SYS_RESOURCE")
    assert "RLIMIT_NOFILE" in one_line_error(r)
    assert_nothing_left(ours, cid, b)


def test_delete_force_clears_what_a_killed_create_left(ours, bundle):
    """A create killed before it wrote state.json leaves its directory; the id must not stay taken."""
    cid = new_id()
    os.makedirs(os.path.join(ours.root, cid))
    assert ours("create", "--bundle", bundle(["true"]), cid).returncode != 0
    ours.ok("delete", "--force", cid)
    ours.ok("create", "--bundle", bundle(["true"]), cid)
