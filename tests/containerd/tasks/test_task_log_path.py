"""The `log_path` create option (tasks/manager.py create_options): the shim writes the json-file
log at the given path instead of the bundle's json.log, the path is announced in the
`dockyard-log-path` header, the log outlives the task (Delete removes the bundle, not the log),
a second task of the same container appends to it, rotation applies there, and a daemon restart
keeps the path (it is in the bundle's record). Bad paths are refused before anything starts."""

import json
import os

import grpc
import pytest

from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from dockyard.containerd.daemon.services.tasks import LOG_PATH_KEY
from dockyard.containerd.tasks import create_options
from tests.containerd.tasks.conftest import pytestmark  # noqa: F401
from tests.shim.conftest import wait_for


def entries(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def create(env, cid: str, log_path: str, **options):
    """Tasks.Create with the option; (pid, the dockyard-log-path header)."""
    response, call = env.tasks.Create.with_call(tpb.CreateTaskRequest(
        container_id=cid, options=create_options(rootfs=env.rootfs, log_path=log_path, **options)))
    return response.pid, dict(call.initial_metadata()).get(LOG_PATH_KEY)


def run_to_exit(env, cid: str) -> int:
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    status = env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    return status


def test_log_written_at_log_path_and_outlives_the_task(env):
    logdir = os.path.join(env.base, "engine", "containers", "c1")
    os.makedirs(logdir)
    log_path = os.path.join(logdir, "c1-json.log")
    cid = env.container(["sh", "-c", "echo out; echo err >&2"])
    _, announced = create(env, cid, log_path)
    assert announced == log_path
    assert run_to_exit(env, cid) == 0
    env.assert_clean(cid)  # the bundle went; the log stays
    assert [(e["stream"], e["log"]) for e in entries(log_path)] in (
        [("stdout", "out\n"), ("stderr", "err\n")], [("stderr", "err\n"), ("stdout", "out\n")])
    assert not os.path.exists(os.path.join(env.bundle(cid), "json.log"))

    # The next task of the container appends, as a restarted Docker container's log does.
    _, announced = create(env, cid, log_path)
    assert run_to_exit(env, cid) == 0
    assert len(entries(log_path)) == 4


def test_log_path_rotates_and_survives_a_daemon_restart(env):
    log_path = os.path.join(env.base, "rot-json.log")
    cid = env.container(["sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done; "
                                     "read x; echo after restart"])
    create(env, cid, log_path, stdin=True, log_max_size=1024, log_max_file=3)
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    wait_for(lambda: os.path.exists(log_path + ".2") and any(
        e["log"] == "line 199\n" for e in entries(log_path)), 30, "the lines, rotated")
    assert not os.path.exists(log_path + ".3")
    assert os.path.getsize(log_path + ".1") >= 1024

    env.restart()
    _, call = env.tasks.Get.with_call(tpb.GetRequest(container_id=cid))
    assert dict(call.initial_metadata()).get(LOG_PATH_KEY) == log_path
    env.tasks.CloseIO(tpb.CloseIORequest(container_id=cid, stdin=True))
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 0
    assert entries(log_path)[-1]["log"] == "after restart\n"
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    env.assert_clean(cid)
    assert os.path.exists(log_path)


@pytest.mark.parametrize("bad", ["relative/c-json.log", "/nonexistent-dir-xyz/c-json.log", "/tmp"])
def test_bad_log_path_is_invalid_argument(env, bad):
    cid = env.container(["true"])
    with pytest.raises(grpc.RpcError) as e:
        create(env, cid, bad)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "log_path" in e.value.details()
    assert not os.path.exists(env.bundle(cid))
