"""All six hook kinds (runtime-spec config.md §POSIX-platform Hooks): when they run, where,
with the state on stdin; a failing or slow hook fails create and leaves nothing behind."""

import json
import os

from conftest import cgroup_dirs, new_id


def logging_hook(kind, log, timeout=None):
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f'printf "%s %s\\n" {kind} "$(cat)" >> {log}']}
    if timeout:
        hook["timeout"] = timeout
    return hook


def read_log(path):
    with open(path) as f:
        return [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1])) for line in f]


def test_all_hooks_run_in_order_with_state(runtime, bundle, tmp_path):
    log = tmp_path / "hooks.log"
    kinds = ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]

    def edit(c):
        c["hooks"] = {k: [logging_hook(k, log)] for k in kinds}
        # startContainer runs inside the container: its path and log are the container's.
        c["hooks"]["startContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /start.json"]}]
    b = bundle(["true"], edit)
    cid = new_id()
    runtime.ok("create", "--bundle", b, cid)
    pid = runtime.state(cid)["pid"]
    runtime.ok("start", cid)
    runtime.ok("delete", "--force", cid)
    entries = read_log(log)
    assert [k for k, _ in entries] == kinds
    for kind, state in entries:
        assert state["id"] == cid
        assert os.path.realpath(state["bundle"]) == os.path.realpath(b)
        if kind == "createContainer":
            assert state["pid"] == 1  # runs in the container's pid namespace, as with runc
        elif kind != "poststop":
            assert state["pid"] == pid, (kind, state)
    with open(os.path.join(b, "rootfs/start.json")) as f:
        assert json.load(f)["id"] == cid


def test_failing_prestart_hook_fails_create_and_cleans_up(runtime, bundle):
    def edit(c):
        c["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    b = bundle(["true"], edit)
    cid = new_id()
    assert runtime("create", "--bundle", b, cid).returncode != 0
    assert runtime("state", cid).returncode != 0
    with open(os.path.join(b, "config.json")) as f:
        assert cgroup_dirs(json.load(f)["linux"]["cgroupsPath"]) == []


def test_hook_timeout(runtime, bundle):
    def edit(c):
        c["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}
    cid = new_id()
    r = runtime("create", "--bundle", bundle(["true"], edit), cid, timeout=20)
    assert r.returncode != 0
    assert runtime("state", cid).returncode != 0


def test_failing_poststop_hook_is_only_a_warning(runtime, bundle):
    def edit(c):
        c["hooks"] = {"poststop": [{"path": "/bin/false"}]}
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["true"], edit), cid)
    runtime.ok("delete", "--force", cid)
    assert runtime("state", cid).returncode != 0
