"""The create/start split, the state machine and the verbs around it (runtime-spec runtime.md)."""

import json
import os
import signal
import time

from conftest import new_id


def wait_for(predicate, timeout=10.0):
    """Poll until predicate() is true: containers start at their own pace on a busy machine."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the container"
        time.sleep(0.02)


def ready_file(b):
    return os.path.join(b, "rootfs/tmp/ready")


def wait_status(rt, cid, status, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rt.state(cid)["status"] == status:
            return
        time.sleep(0.02)
    assert rt.state(cid)["status"] == status


def test_run_prints_output(runtime, bundle):
    assert runtime.output(bundle(["echo", "hello"])) == "hello\n"


def test_run_returns_exit_status(runtime, bundle):
    assert runtime.run(bundle(["sh", "-c", "exit 7"])).returncode == 7


def test_create_start_state_delete(runtime, bundle, tmp_path):
    b = bundle(["sh", "-c", "echo started > /tmp/flag; sleep 60"])
    cid = new_id()
    pid_file = tmp_path / "init.pid"
    runtime.ok("create", "--bundle", b, "--pid-file", str(pid_file), cid)
    state = runtime.state(cid)
    assert state["status"] == "created"
    assert state["id"] == cid
    assert state["pid"] == int(pid_file.read_text())
    assert os.path.realpath(state["bundle"]) == os.path.realpath(b)
    # Created: the init exists but the user's program has not run yet.
    assert not os.path.exists(os.path.join(b, "rootfs/tmp/flag"))
    runtime.ok("start", cid)
    assert runtime.state(cid)["status"] == "running"
    runtime.ok("kill", cid, "KILL")
    wait_status(runtime, cid, "stopped")
    runtime.ok("delete", cid)
    assert runtime("state", cid).returncode != 0


def test_start_twice_fails(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    assert runtime("start", cid).returncode != 0


def test_kill_positional_signal(runtime, bundle):
    cid = new_id()
    b = bundle(["sh", "-c", "trap 'echo got-usr1 > /tmp/sig; exit 0' USR1; : > /tmp/ready; while true; do sleep 0.1; done"])
    runtime.ok("run", "-d", "--bundle", b, cid)
    wait_for(lambda: os.path.exists(ready_file(b)))
    runtime.ok("kill", cid, "USR1")
    wait_status(runtime, cid, "stopped")
    with open(os.path.join(b, "rootfs/tmp/sig")) as f:
        assert f.read() == "got-usr1\n"


def test_kill_default_is_sigterm(runtime, bundle):
    cid = new_id()
    b = bundle(["sh", "-c", "trap 'exit 0' TERM; : > /tmp/ready; while true; do sleep 0.1; done"])
    runtime.ok("run", "-d", "--bundle", b, cid)
    wait_for(lambda: os.path.exists(ready_file(b)))
    runtime.ok("kill", cid)
    wait_status(runtime, cid, "stopped")


def test_kill_all_reaches_every_process(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sh", "-c", "sleep 100 & sleep 100 & wait"]), cid)
    wait_for(lambda: len(json.loads(runtime.ok("ps", "--format", "json", cid))) == 3)
    runtime.ok("kill", "--all", cid, "KILL")
    wait_status(runtime, cid, "stopped")


def test_kill_stopped_container_fails(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["true"]), cid)
    wait_status(runtime, cid, "stopped")
    assert runtime("kill", cid, "KILL").returncode != 0


def test_delete_created_without_force(runtime, bundle):
    """runc deletes a created container without --force (it kills the waiting init)."""
    cid = new_id()
    runtime.ok("create", "--bundle", bundle(["true"]), cid)
    pid = runtime.state(cid)["pid"]
    runtime.ok("delete", cid)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_delete_running_needs_force(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    assert runtime("delete", cid).returncode != 0
    assert runtime.state(cid)["status"] == "running"
    runtime.ok("delete", "--force", cid)
    assert runtime("state", cid).returncode != 0


def test_list(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    listed = json.loads(runtime.ok("list", "--format", "json"))
    assert [(c["id"], c["status"]) for c in listed] == [(cid, "running")]
    assert runtime.ok("list", "-q").split() == [cid]


def test_pause_resume(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    runtime.ok("pause", cid)
    assert runtime.state(cid)["status"] == "paused"
    assert runtime("resume", new_id()).returncode != 0
    runtime.ok("resume", cid)
    assert runtime.state(cid)["status"] == "running"
    assert runtime("resume", cid).returncode != 0


def test_ps_json_lists_container_processes(runtime, bundle):
    cid = new_id()
    b = bundle(["sh", "-c", "sleep 60 & : > /tmp/ready; wait"])
    runtime.ok("run", "-d", "--bundle", b, cid)
    wait_for(lambda: os.path.exists(ready_file(b)))
    pids = json.loads(runtime.ok("ps", "--format", "json", cid))
    assert runtime.state(cid)["pid"] in pids
    assert len(pids) == 2


def test_exec_runs_in_the_container(runtime, bundle):
    cid = new_id()
    b = bundle(["sh", "-c", "echo marker > /tmp/m; sleep 60"])
    runtime.ok("run", "-d", "--bundle", b, cid)
    wait_for(lambda: os.path.exists(os.path.join(b, "rootfs/tmp/m")))
    assert runtime.ok("exec", cid, "cat", "/tmp/m") == "marker\n"
    # Same pid namespace: the init is pid 1 there.
    # busybox sh execs its last command, so pid 1 is now `sleep 60`.
    assert runtime.ok("exec", cid, "cat", "/proc/1/cmdline") == "sleep\0" "60\0"


def test_exec_exit_status(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    assert runtime("exec", cid, "sh", "-c", "exit 5").returncode == 5


def test_exec_process_json(runtime, bundle, tmp_path):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    process = {"args": ["sh", "-c", "echo $FOO $(id -u) $(pwd)"], "env": ["FOO=bar", "PATH=/bin"],
               "cwd": "/tmp", "user": {"uid": 1000, "gid": 1000}}
    (tmp_path / "p.json").write_text(json.dumps(process))
    assert runtime.ok("exec", "-p", str(tmp_path / "p.json"), cid) == "bar 1000 /tmp\n"


def test_exec_detached_pid_file(runtime, bundle, tmp_path):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    pid_file = tmp_path / "exec.pid"
    runtime.ok("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "30")
    pid = int(pid_file.read_text())
    assert pid in json.loads(runtime.ok("ps", "--format", "json", cid))


def test_exec_in_stopped_container_fails(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["true"]), cid)
    wait_status(runtime, cid, "stopped")
    assert runtime("exec", cid, "true").returncode != 0


def test_events_stats(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    event = json.loads(runtime.ok("events", "--stats", cid))
    assert event["type"] == "stats" and event["id"] == cid
    assert event["data"]["pids"]["current"] >= 1
    assert event["data"]["memory"]["usage"]["usage"] > 0


def test_update_memory_and_pids(runtime, bundle):
    cid = new_id()
    b = bundle(["sleep", "60"])
    runtime.ok("run", "-d", "--bundle", b, cid)
    runtime.ok("update", "--memory", "64m", "--pids-limit", "42", cid)
    with open(os.path.join(b, "config.json")) as f:
        path = json.load(f)["linux"]["cgroupsPath"].lstrip("/")
    with open(f"/sys/fs/cgroup/memory/{path}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 64 << 20
    with open(f"/sys/fs/cgroup/pids/{path}/pids.max") as f:
        assert f.read().strip() == "42"


def test_spec_writes_a_valid_config(runtime, tmp_path):
    runtime.ok("spec", "--bundle", str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["process"]["args"] == ["sh"]
    assert runtime("spec", "--bundle", str(tmp_path)).returncode != 0  # never overwrites


def test_features(runtime):
    features = json.loads(runtime.ok("features"))
    assert "pid" in features["linux"]["namespaces"]
    assert "poststop" in features["hooks"]
    assert features["linux"]["seccomp"]["enabled"] is True


def test_state_of_init_killed_from_outside(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    os.kill(runtime.state(cid)["pid"], signal.SIGKILL)
    wait_status(runtime, cid, "stopped")


def test_state_is_creating_while_hooks_run(ours, bundle, tmp_path):
    """While create runs (here: stuck in a createRuntime hook), state says "creating".
    (Debian's runc 1.1.5 says the container does not exist until create is done.)"""
    runtime = ours
    import subprocess
    gate = tmp_path / "gate"

    def edit(c):
        c["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"]}]}
    cid = new_id()
    proc = subprocess.Popen([runtime.path, "--root", runtime.root, "create", "--bundle", bundle(["true"], edit), cid],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while runtime("state", cid).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.state(cid)["status"] == "creating"
    finally:
        gate.touch()
        assert proc.wait(20) == 0
    assert runtime.state(cid)["status"] == "created"
