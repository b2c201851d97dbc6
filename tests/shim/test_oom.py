"""OOM notifications: the shim watches its container's memory cgroup and sends an `oom` event
to subscribers (before the init's exit is announced) and counts it in `state`."""

import json
import os
import subprocess

import pytest

from dockyard.errors import InvalidArgument
from dockyard.shim import protocol as P
from tests.shim.conftest import Shim

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="shim tests run containers: they need root")

LIMIT = 8 << 20
# A 50 MB shell variable: far more than the limit, in the init itself.
HOG = ["sh", "-c", "a=$(yes | head -c 50000000); echo survived ${#a}"]
MEMSW_V1 = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"


def memory_limited(harness, args) -> Shim:
    """harness.start, with linux.resources.memory limit (and no swap where that can be said)."""
    bundle = harness.bundle(args)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    memory = {"limit": LIMIT}
    if os.path.exists(MEMSW_V1) or os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        memory["swap"] = LIMIT  # memory+swap: the same as memory, so it cannot swap
    config["linux"].setdefault("resources", {})["memory"] = memory
    with open(path, "w") as f:
        json.dump(config, f)
    cid = "oom" + os.urandom(4).hex()
    log_path = os.path.join(harness.base, f"{cid}-json.log")
    harness.ids.append(cid)
    r = subprocess.run(harness.start_argv(cid, bundle, "--log-path", log_path),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    shim = Shim(harness, cid, bundle, r.stdout.strip(), log_path)
    harness.shims.append(shim)
    return shim


def memory_cgroup_available() -> bool:
    return os.path.exists("/sys/fs/cgroup/memory/memory.oom_control") or \
        os.path.exists("/sys/fs/cgroup/cgroup.controllers")


@pytest.mark.skipif(not memory_cgroup_available(), reason="no memory cgroup controller")
def test_oom_kill_is_an_event_before_the_exit(harness):
    shim = memory_limited(harness, HOG)
    with shim.client() as c:
        c.create()
        assert c.state()["oom_kills"] == 0
        with c.subscribe() as events:
            assert events.oom_kills == 0
            waiter = shim.client(timeout=60)
            try:
                c.start()
                assert events.read() == {"event": "oom", "oom_kills": 1}
                result = waiter.wait()  # v1 may notify more than once for one kill
            finally:
                waiter.close()
            state = c.state()
            assert state["oom_kills"] >= 1
            with open(shim.log_path) as f:
                output = f.read()
            assert result["exit_status"] == 137 or "survived" not in output, (result, output)
            # A late subscriber learns the count.
            with c.subscribe() as late:
                assert late.oom_kills == state["oom_kills"]
    shim.stop()
    assert not os.path.exists(shim.dir)


def test_no_oom_without_memory_pressure_and_streams_take_no_requests(harness):
    shim = harness.start(["true"])
    with shim.client() as c:
        c.create()
        with c.subscribe() as events:
            c.start()
            assert c.wait()["exit_status"] == 0
            assert c.state()["oom_kills"] == 0
            events._conn.send(P.encode_request(9, "state"))
            with pytest.raises(InvalidArgument, match="event stream"):
                events.read()
    shim.stop()
