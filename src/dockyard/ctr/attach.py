"""Running a process with its stdio here, the way the Tasks service offers it
(daemon/services/tasks.py): the shim keeps the process's stdio and dockyard-containerd
proxies it to us on a Tasks.Attach stream; we never talk to the shim ourselves. We attach
before Start, so no output is missed, copy the output until the exit comes, and return that
exit status.

Stdin is kept open for attach when Create's options (JSON in an Any, the manager's
`containerd.taskoptions.create_options`) or Exec's `stdin` ask for it."""

import contextlib
import queue

from dockyard.api.services.tasks.v1 import tasks_pb2 as pb
from dockyard.errors import SystemFailure

from . import console

STDIN_OPEN = "attach"  # ExecProcessRequest.stdin: any non-empty value keeps stdin open


class Attached:
    """One Tasks.Attach call, as console.pump wants it: read() gives ("stdout"|"stderr",
    bytes), then ("exit", {exit_status}) last, then None; write()/close_stdin() send stdin."""

    def __init__(self, session, container_id: str, exec_id: str, stdin: bool):
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._requests.put(pb.AttachRequest(container_id=container_id, exec_id=exec_id, stdin=stdin))
        self._responses = session.tasks.Attach(self._request_stream())
        first = next(self._responses, None)  # waits until the daemon is attached
        if first is None or first.WhichOneof("output") != "attached":
            self.close()
            raise SystemFailure("dockyard-containerd did not attach to the process")

    def _request_stream(self):
        while (request := self._requests.get()) is not None:
            yield request

    def read(self):
        for response in self._responses:
            kind = response.WhichOneof("output")
            if kind in ("stdout", "stderr"):
                return kind, getattr(response, kind)
            if kind == "exit":
                return "exit", {"exit_status": response.exit.exit_status}
        return None

    def write(self, data: bytes) -> None:
        self._requests.put(pb.AttachRequest(data=data))

    def close_stdin(self) -> None:
        self._requests.put(pb.AttachRequest(close_stdin=True))

    def close(self) -> None:
        self._requests.put(None)  # our side of the stream ends (stdin is not closed by it)
        self._responses.close()  # and the call, if it is still going: the daemon detaches

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_process(session, container_id: str, exec_id: str, tty: bool) -> int:
    """Attaches to the process through dockyard-containerd, starts it, shows its output until
    it exits (our stdin to it; with `tty` our terminal raw and its size followed); its exit
    status."""
    with Attached(session, container_id, exec_id, stdin=True) as stream, contextlib.ExitStack() as scope:
        if tty:
            scope.enter_context(console.raw_terminal())
            scope.enter_context(console.follow_size(lambda w, h: session.tasks.ResizePty(
                pb.ResizePtyRequest(container_id=container_id, exec_id=exec_id, width=w, height=h))))
        else:
            scope.enter_context(console.forward_signals(lambda sig: session.tasks.Kill(
                pb.KillRequest(container_id=container_id, exec_id=exec_id, signal=sig))))
        session.tasks.Start(pb.StartRequest(container_id=container_id, exec_id=exec_id))
        exit_ = console.pump(stream, stdin=True)
    if exit_ is None:  # the stream ended without the exit: ask the daemon
        exit_ = {"exit_status": session.tasks.Wait(
            pb.WaitRequest(container_id=container_id, exec_id=exec_id)).exit_status}
    return int(exit_["exit_status"])
