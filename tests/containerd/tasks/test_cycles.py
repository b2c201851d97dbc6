"""Many create/delete cycles through the daemon leave nothing behind: no zombie, no fd the
daemon keeps, no mount, no cgroup, no shim (issue: "200 create/delete cycles"). Slow: run by
`make test-slow`."""

import os

import pytest

from dockyard.api.services.containers.v1 import containers_pb2 as cpb
from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from tests.fixtures.host import cgroup_roots, mounts_under
from tests.shim.conftest import reap, zombie_children

CYCLES = 200


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def zombies_of(parent: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == parent:
            found.append(int(name))
    return found


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def cycle(env) -> None:
    cid = env.container(["true"])
    env.create_task(cid)
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 0
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    env.containers.Delete(cpb.DeleteContainerRequest(id=cid))
    env.assert_clean(cid)


@pytest.mark.slow
def test_create_delete_cycles_leak_nothing(env):
    for _ in range(10):  # the daemon's pools and caches settle first
        cycle(env)
    baseline = fd_count(env.proc.pid)
    for _ in range(CYCLES):
        cycle(env)
    assert fd_count(env.proc.pid) <= baseline
    assert zombies_of(env.proc.pid) == []
    # Exited shims are re-parented to the test, the subreaper here: only shims may wait there,
    # a container's init never (its shim reaps it).
    ours = zombie_children()
    assert {comm(pid) for pid in ours} <= {"dockyard-shim"}
    for pid in ours:
        reap(pid, 1)
    assert mounts_under(env.base) == []
    assert [c for c in env.cgroups for root in cgroup_roots()
            if os.path.isdir(os.path.join(root, c.lstrip("/")))] == []
