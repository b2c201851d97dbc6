"""Containers outlive their daemon: SIGKILL dockyard-containerd, start it again, and every task
is still there, still logging, and its exit status arrives exactly once."""

import os
import signal

import grpc
import pytest

from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from tests.containerd.tasks.conftest import pytestmark  # noqa: F401
from tests.shim.conftest import alive, wait_for

N_CONTAINERS = 20  # as the issue asks
LINES = 300
COUNTER = f"i=0; while [ $i -lt {LINES} ]; do echo line $i; i=$((i+1)); sleep 0.01; done"


def test_log_lines_across_daemon_kill(env):
    cid, _ = env.run(["sh", "-c", COUNTER])
    wait_for(lambda: os.path.exists(os.path.join(env.bundle(cid), "json.log"))
             and len(env.log_lines(cid)) >= 20, 30, "the first lines")
    env.restart()
    events = env.subscribe('topic~="^/tasks/"')
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 0
    assert env.log_lines(cid) == [f"line {i}\n" for i in range(LINES)]
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    events.wait(lambda seen: events.of("/tasks/delete", cid), "/tasks/delete")
    # The exit came after the restart, or while the daemon was down (then it was published
    # at start-up, before we subscribed): at most once here, and never twice.
    assert len(events.of("/tasks/exit", cid)) <= 1
    env.assert_clean(cid)


def test_tasks_survive_daemon_kill(env):
    started = [env.run(["sh", "-c", "while true; do echo tick; sleep 0.05; done"]) for _ in range(N_CONTAINERS)]
    env.kill_daemon()
    for cid, pid in started:
        assert alive(pid), f"{cid} died with the daemon"
    # One exits while no daemon is there: its exit is delivered after the restart.
    down_cid, down_pid = started[0]
    os.kill(down_pid, signal.SIGKILL)
    lines_before = {cid: len(env.log_lines(cid)) for cid, _ in started[1:]}
    env.start()
    listed = {t.id: t.status for t in env.tasks.List(tpb.ListTasksRequest()).tasks}
    assert listed == {cid: (tpb.STOPPED if cid == down_cid else tpb.RUNNING) for cid, _ in started}
    assert env.tasks.Wait(tpb.WaitRequest(container_id=down_cid)).exit_status == 128 + signal.SIGKILL
    assert os.path.exists(os.path.join(env.bundle(down_cid), "exit-published"))

    events = env.subscribe('topic~="^/tasks/"')
    for cid, _ in started[1:]:
        wait_for(lambda: len(env.log_lines(cid)) > lines_before[cid], 30, f"{cid} to keep logging")
        env.tasks.Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGKILL))
    for cid, _ in started[1:]:
        assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 128 + signal.SIGKILL
    for cid, _ in started:
        env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    events.wait(lambda seen: all(events.of("/tasks/delete", cid) for cid, _ in started), "every /tasks/delete")
    for cid, _ in started[1:]:
        assert [e.exit_status for e in events.of("/tasks/exit", cid)] == [128 + signal.SIGKILL]
    assert events.of("/tasks/exit", down_cid) == []  # published before the restart's subscribers came
    for cid, _ in started:
        env.assert_clean(cid)


def test_restart_publishes_a_recorded_exit_only_once(env):
    """A task that exited, with its exit published, is not reported again by the next daemon."""
    cid, _ = env.run(["sh", "-c", "exit 7"])
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 7
    wait_for(lambda: os.path.exists(os.path.join(env.bundle(cid), "exit-published")), 10, "the record")
    env.restart()
    events = env.subscribe('topic~="^/tasks/"')
    assert env.tasks.Get(tpb.GetRequest(container_id=cid)).process.status == tpb.STOPPED
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 7
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    events.wait(lambda seen: events.of("/tasks/delete", cid), "/tasks/delete")
    assert events.of("/tasks/exit", cid) == []
    env.assert_clean(cid)


def test_dead_shim_found_at_start_is_cleaned_up(env):
    cid, pid = env.run(["sleep", "1000"])
    env.kill_daemon()
    os.kill(env.shim_pid(cid), signal.SIGKILL)
    env.start()
    assert not alive(pid)
    with pytest.raises(grpc.RpcError) as info:
        env.tasks.Get(tpb.GetRequest(container_id=cid))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "shim is gone" in env.log_text()
    env.assert_clean(cid)
