"""The Tasks and Events services on one daemon: a task's life, execs, pause, pids, bad input."""

import json
import os
import signal

import grpc
import pytest
from google.protobuf import any_pb2

from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from dockyard.containerd.daemon.services.tasks import LOG_PATH_KEY
from dockyard.containerd.tasks import create_options
from tests.containerd.tasks.conftest import NS, pytestmark  # noqa: F401
from tests.shim.conftest import alive, wait_for


def code_of(call, *args):
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value.code()


def test_run_exit_status_and_events(env):
    events = env.subscribe(f"namespace=={NS}", 'topic~="^/tasks/"')
    cid = env.container(["sh", "-c", "echo hi; exit 3"])
    _, call = env.tasks.Create.with_call(tpb.CreateTaskRequest(
        container_id=cid, options=create_options(rootfs=env.rootfs)))
    meta = dict(call.initial_metadata())
    assert meta[LOG_PATH_KEY].startswith(env.bundle(cid)) and "dockyard-shim-address" not in meta
    got = env.tasks.Get(tpb.GetRequest(container_id=cid)).process
    assert got.status == tpb.CREATED and got.pid > 0
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    waited = env.tasks.Wait(tpb.WaitRequest(container_id=cid))
    assert waited.exit_status == 3 and waited.exited_at.seconds > 0
    assert env.tasks.Get(tpb.GetRequest(container_id=cid)).process.status == tpb.STOPPED
    assert env.log_lines(cid) == ["hi\n"]
    deleted = env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    assert deleted.exit_status == 3
    events.wait(lambda seen: events.of("/tasks/delete", cid), "/tasks/delete")
    topics = [t for t, e in events.seen if getattr(e, "container_id", None) == cid]
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    (exit_event,) = events.of("/tasks/exit", cid)
    assert exit_event.exit_status == 3 and exit_event.id == cid
    env.assert_clean(cid)
    assert code_of(env.tasks.Get, tpb.GetRequest(container_id=cid)) == grpc.StatusCode.NOT_FOUND


def test_exec_pause_pids_kill(env):
    events = env.subscribe('topic~="^/tasks/"')
    cid, pid = env.run(["sleep", "1000"])
    spec = {"args": ["sh", "-c", "echo from-exec; exit 5"], "cwd": "/", "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0}}
    env.tasks.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id="e1",
                                          spec=any_pb2.Any(type_url="json", value=json.dumps(spec).encode())))
    env.tasks.Start(tpb.StartRequest(container_id=cid, exec_id="e1"))
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid, exec_id="e1")).exit_status == 5
    # An exec's output before the first attach is kept for it by the shim.
    responses = list(env.tasks.Attach(iter([tpb.AttachRequest(container_id=cid, exec_id="e1")]), timeout=30))
    assert tpb.AttachResponse(stdout=b"from-exec\n") in responses
    assert responses[-1].WhichOneof("output") == "exit" and responses[-1].exit.exit_status == 5
    env.tasks.DeleteProcess(tpb.DeleteProcessRequest(container_id=cid, exec_id="e1"))
    events.wait(lambda seen: [e for e in events.of("/tasks/exit", cid) if e.id == "e1"], "the exec's exit")

    pids = [p.pid for p in env.tasks.ListPids(tpb.ListPidsRequest(container_id=cid)).processes]
    assert pid in pids
    env.tasks.Pause(tpb.PauseTaskRequest(container_id=cid))
    assert env.tasks.Get(tpb.GetRequest(container_id=cid)).process.status == tpb.PAUSED
    env.tasks.Resume(tpb.ResumeTaskRequest(container_id=cid))
    assert env.tasks.Get(tpb.GetRequest(container_id=cid)).process.status == tpb.RUNNING
    listed = env.tasks.List(tpb.ListTasksRequest()).tasks
    env.tasks.Update(tpb.UpdateTaskRequest(container_id=cid, resources=any_pb2.Any(
        type_url="json", value=json.dumps({"pids": {"limit": 100}}).encode())))
    (metric,) = env.tasks.Metrics(tpb.MetricsRequest(filters=[f"id=={cid}"])).metrics
    assert metric.id == cid and json.loads(metric.data.value)
    assert [(t.id, t.status) for t in listed] == [(cid, tpb.RUNNING)]

    assert code_of(env.tasks.Delete, tpb.DeleteTaskRequest(container_id=cid)) == grpc.StatusCode.FAILED_PRECONDITION
    env.tasks.Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGKILL))
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 128 + signal.SIGKILL
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    assert not alive(pid)
    events.wait(lambda seen: events.of("/tasks/delete", cid), "/tasks/delete")
    topics = [t for t, e in events.seen if getattr(e, "container_id", None) == cid]
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
                      "/tasks/exit", "/tasks/paused", "/tasks/resumed", "/tasks/exit", "/tasks/delete"]
    env.assert_clean(cid)


def test_bad_input(env):
    unknown = tpb.CreateTaskRequest(container_id="nosuch")
    assert code_of(env.tasks.Create, unknown) == grpc.StatusCode.NOT_FOUND
    assert code_of(env.tasks.Start, tpb.StartRequest(container_id="nosuch")) == grpc.StatusCode.NOT_FOUND
    assert code_of(env.tasks.Wait, tpb.WaitRequest(container_id="nosuch")) == grpc.StatusCode.NOT_FOUND
    cid = env.container(["sleep", "1000"])
    fifo = tpb.CreateTaskRequest(container_id=cid, stdout="/tmp/fifo")
    assert code_of(env.tasks.Create, fifo) == grpc.StatusCode.INVALID_ARGUMENT
    no_rootfs = tpb.CreateTaskRequest(container_id=cid)
    assert code_of(env.tasks.Create, no_rootfs) == grpc.StatusCode.INVALID_ARGUMENT
    assert not os.path.exists(env.bundle(cid))
    env.create_task(cid)
    assert code_of(env.create_task, cid) == grpc.StatusCode.FAILED_PRECONDITION
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    assert code_of(env.tasks.Start, tpb.StartRequest(container_id=cid)) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(env.tasks.Start, tpb.StartRequest(container_id=cid, exec_id="nope")) == grpc.StatusCode.NOT_FOUND
    assert code_of(env.tasks.Delete, tpb.DeleteTaskRequest(container_id=cid)) == grpc.StatusCode.FAILED_PRECONDITION
    env.tasks.Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGKILL))
    env.tasks.Wait(tpb.WaitRequest(container_id=cid))
    assert code_of(env.tasks.Kill, tpb.KillRequest(container_id=cid, signal=signal.SIGTERM)) == grpc.StatusCode.NOT_FOUND
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    env.assert_clean(cid)


def test_shim_sigkill_reports_exit_and_cleans_up(env):
    events = env.subscribe('topic~="^/tasks/"')
    cid, pid = env.run(["sleep", "1000"])
    os.kill(env.shim_pid(cid), signal.SIGKILL)
    events.wait(lambda seen: events.of("/tasks/delete", cid), "/tasks/delete")
    (exit_event,) = events.of("/tasks/exit", cid)
    assert exit_event.exit_status == 255
    wait_for(lambda: not alive(pid), 10, "the container to be killed")
    assert code_of(env.tasks.Get, tpb.GetRequest(container_id=cid)) == grpc.StatusCode.NOT_FOUND
    env.assert_clean(cid)
