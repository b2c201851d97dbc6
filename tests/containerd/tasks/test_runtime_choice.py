"""The runtime is chosen per container: dockyard-runc by default, or another OCI runtime by path."""

import json
import os

import pytest

from dockyard.api.services.containers.v1 import containers_pb2 as cpb
from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb

RUNC = "/usr/sbin/runc"


@pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="Debian's runc is not installed")
def test_task_runs_under_runc_by_path(env):
    cid = env.container(["sh", "-c", "echo from-runc; exit 4"], runtime=RUNC)
    env.create_task(cid)
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 4
    assert env.log_lines(cid) == ["from-runc\n"]
    # runc wrote this container's state, in its own format (ours records init_start_time)
    with open(os.path.join(env.state, "runc", "tasktest", cid, "state.json")) as f:
        state = json.load(f)
    assert "init_process_pid" in state and "init_start_time" not in state
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    env.containers.Delete(cpb.DeleteContainerRequest(id=cid))
    env.assert_clean(cid)
