"""Tasks.Attach: a process's stdio through the daemon, which proxies its shim's attach."""

import json
import queue
import threading

import grpc
import pytest
from google.protobuf import any_pb2

from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from tests.containerd.tasks.conftest import pytestmark  # noqa: F401
from tests.shim.conftest import wait_for


class Attach:
    """One Attach call: requests from a queue, responses read by a thread into `got`."""

    def __init__(self, env, cid: str, exec_id: str = "", stdin: bool = False):
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.requests.put(tpb.AttachRequest(container_id=cid, exec_id=exec_id, stdin=stdin))
        self.call = env.tasks.Attach(iter(self.requests.get, None), timeout=60)
        first = next(self.call)
        assert first.WhichOneof("output") == "attached"
        self.got: list[tpb.AttachResponse] = []
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for response in self.call:
                self.got.append(response)
        except grpc.RpcError as e:
            self.error = e

    def send(self, **fields):
        self.requests.put(tpb.AttachRequest(**fields))

    def finish(self, timeout: float = 30) -> tuple[bytes, bytes, tpb.AttachExit]:
        self.thread.join(timeout)
        self.requests.put(None)
        assert not self.thread.is_alive(), "the attach stream did not end"
        assert self.error is None, self.error
        kinds = [r.WhichOneof("output") for r in self.got]
        assert kinds and kinds[-1] == "exit" and "exit" not in kinds[:-1], kinds
        return (b"".join(r.stdout for r in self.got), b"".join(r.stderr for r in self.got), self.got[-1].exit)


def test_attach_output_and_exit(env):
    cid = env.container(["sh", "-c", "echo out; echo err >&2; exit 7"])
    env.create_task(cid)
    attached = Attach(env, cid)
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    stdout, stderr, exit_ = attached.finish()
    assert (stdout, stderr) == (b"out\n", b"err\n")
    assert exit_.exit_status == 7 and exit_.exited_at.seconds > 0
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 7
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))


def test_attach_stdin_reaches_cat(env):
    cid = env.container(["cat"])
    env.create_task(cid, stdin=True)
    attached = Attach(env, cid, stdin=True)
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    attached.send(data=b"hello ")
    attached.send(data=b"through the daemon\n", close_stdin=True)
    stdout, stderr, exit_ = attached.finish()
    assert (stdout, stderr, exit_.exit_status) == (b"hello through the daemon\n", b"", 0)
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))


def test_attach_exec(env):
    cid, _ = env.run(["sleep", "1000"])
    spec = {"args": ["sh", "-c", "read line; echo got-$line; echo oops >&2; exit 4"], "cwd": "/",
            "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    env.tasks.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id="e1", stdin="attach",
                                          spec=any_pb2.Any(type_url="json", value=json.dumps(spec).encode())))
    attached = Attach(env, cid, exec_id="e1", stdin=True)
    env.tasks.Start(tpb.StartRequest(container_id=cid, exec_id="e1"))
    attached.send(data=b"x\n", close_stdin=True)
    stdout, stderr, exit_ = attached.finish()
    assert (stdout, stderr, exit_.exit_status) == (b"got-x\n", b"oops\n", 4)
    env.tasks.DeleteProcess(tpb.DeleteProcessRequest(container_id=cid, exec_id="e1"))
    env.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9))
    env.tasks.Wait(tpb.WaitRequest(container_id=cid))
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))


def test_attach_cancel_leaves_the_task_running(env):
    cid, _ = env.run(["sh", "-c", "while true; do echo tick; sleep 0.1; done"])
    attached = Attach(env, cid)
    wait_for(lambda: any(r.stdout for r in attached.got), 30, "output through the attach")
    attached.call.cancel()
    attached.thread.join(10)
    assert attached.error is not None and attached.error.code() == grpc.StatusCode.CANCELLED
    # The daemon let go of the shim connection; the task runs on and can be attached again.
    again = Attach(env, cid)
    wait_for(lambda: any(r.stdout for r in again.got), 30, "output through a second attach")
    again.call.cancel()
    assert env.tasks.Get(tpb.GetRequest(container_id=cid)).process.status == tpb.RUNNING
    env.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9))
    env.tasks.Wait(tpb.WaitRequest(container_id=cid))
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))


def test_attach_errors(env):
    def code(*requests):
        with pytest.raises(grpc.RpcError) as info:
            list(env.tasks.Attach(iter(requests), timeout=30))
        return info.value.code()
    assert code() == grpc.StatusCode.INVALID_ARGUMENT
    assert code(tpb.AttachRequest()) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(tpb.AttachRequest(container_id="nosuch")) == grpc.StatusCode.NOT_FOUND
    cid, _ = env.run(["sleep", "1000"])
    assert code(tpb.AttachRequest(container_id=cid, exec_id="nosuch")) == grpc.StatusCode.NOT_FOUND
    env.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9))
    env.tasks.Wait(tpb.WaitRequest(container_id=cid))
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
