"""Running a process with its stdio here, the way the Tasks service offers it
(daemon/services/tasks.py): the shim keeps the process's stdio, and Create, Exec, Start and Get
name the shim's socket in the `dockyard-shim-address` header of their answer. We attach to
the shim there before Start, so no output is missed, copy the output until the shim sends the
exit, and return that exit status.

Stdin is kept open for attach when Create's options (JSON in an Any, the manager's
`create_options`) or Exec's `stdin` ask for it."""

import contextlib
import json

from google.protobuf import any_pb2

from dockyard.api.services.tasks.v1 import tasks_pb2 as pb
from dockyard.errors import SystemFailure

from . import console

SHIM_ADDRESS_KEY = "dockyard-shim-address"
# containerd/tasks/manager.py CREATE_OPTIONS_TYPE and create_options(): the same, spelt here
# because importing the daemon's task manager would cost every dockyard-ctr call ~40 ms
# (tests/ctr check that they agree).
CREATE_OPTIONS_TYPE = "types.dockyard.dev/tasks/CreateOptions"
STDIN_OPEN = "attach"  # ExecProcessRequest.stdin: any non-empty value keeps stdin open
ATTACH_TIMEOUT = 30.0


def create_options(stdin: bool) -> any_pb2.Any:
    return any_pb2.Any(type_url=CREATE_OPTIONS_TYPE, value=json.dumps({"stdin": stdin}).encode())


def shim_address(metadata: dict[str, str]) -> str:
    address = metadata.get(SHIM_ADDRESS_KEY)
    if not address:
        raise SystemFailure(f"dockyard-containerd did not name the task's shim ({SHIM_ADDRESS_KEY} header)")
    return address


def run_process(session, container_id: str, exec_id: str, tty: bool, address: str) -> int:
    """Attaches to the process at the shim on `address`, starts it, shows its output until it
    exits (our stdin to it; with `tty` our terminal raw and its size followed); its exit status."""
    from dockyard.shim.client import ShimClient
    with ShimClient(address, timeout=ATTACH_TIMEOUT) as shim:
        stream = shim.attach(exec_id, stdin=True)
    with stream, contextlib.ExitStack() as scope:
        stream.settimeout(None)
        if tty:
            scope.enter_context(console.raw_terminal())
            scope.enter_context(console.follow_size(lambda w, h: session.tasks.ResizePty(
                pb.ResizePtyRequest(container_id=container_id, exec_id=exec_id, width=w, height=h))))
        else:
            scope.enter_context(console.forward_signals(lambda sig: session.tasks.Kill(
                pb.KillRequest(container_id=container_id, exec_id=exec_id, signal=sig))))
        session.tasks.Start(pb.StartRequest(container_id=container_id, exec_id=exec_id))
        exit_ = console.pump(stream, stdin=True)
    if exit_ is None:  # the shim went away before it told us: the daemon knows the rest
        exit_ = {"exit_status": session.tasks.Wait(
            pb.WaitRequest(container_id=container_id, exec_id=exec_id)).exit_status}
    return int(exit_["exit_status"])
