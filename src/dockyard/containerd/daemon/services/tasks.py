"""Tasks, served from the TaskManager (`containerd/tasks/`); each call is carried out by the
container's shim.

Stdio. A task's stdio belongs to its shim, which writes the output to the container's json-file
log and serves attach streams on its own socket (shim/protocol.py): there are no fifos, and a
CreateTaskRequest or ExecProcessRequest naming stdin/stdout/stderr paths is refused. A client
that wants the output or the stdin of a process (dockyard-ctr `run`, `tasks exec`) calls
Attach, which this service proxies to the shim's attach (tasks.proto says how): clients talk to
the daemon only, never to a shim. The init's output reaches an attach from the moment it is
attached (its first response), so attach before Start; an exec's output from before its first
attach is kept for it by the shim. Attach with stdin needs `create_options(stdin=True)`
(tasks/manager.py) at Create, or `stdin` set to any non-empty value in ExecProcessRequest.
Create, Start, Get and Exec name the container's json-file log in the `dockyard-log-path`
header of their initial metadata.

Create's `options` is `tasks.create_options(...)` (JSON in an Any): `rootfs` a plain directory
for `dockyard-ctr run --rootfs DIR`, `stdin`, the log's rotation, and `log_path` (the log
written there instead of the bundle's json.log, so it outlives the task: dockyardd's).

Update's `resources` and Exec's `spec` are JSON (an OCI linux.resources, an OCI process) in an
Any whatever its type URL; Metrics' data is the runtime's `events --stats` JSON.
"""

import json
import logging
import threading

import grpc
from google.protobuf import any_pb2, empty_pb2

from dockyard.api.services.tasks.v1 import tasks_pb2 as pb
from dockyard.api.services.tasks.v1 import tasks_pb2_grpc
from dockyard.containerd import filters
from dockyard.containerd.snapshots import Mount
from dockyard.containerd.tasks import TaskManager
from dockyard.containerd.tasks.manager import Task, timestamp
from dockyard.errors import Conflict, InvalidArgument, NotFound

from .. import namespace

LOG_PATH_KEY = "dockyard-log-path"
STATS_TYPE = "types.dockyard.dev/runtime/stats"  # JSON in value

_STATUS = {"created": pb.CREATED, "running": pb.RUNNING, "stopped": pb.STOPPED,
           "paused": pb.PAUSED, "pausing": pb.PAUSING}


def _json_any(value: any_pb2.Any, what: str):
    try:
        return json.loads(value.value or b"null")
    except ValueError as e:
        raise InvalidArgument(f"{what}: not JSON: {e}") from None


def _no_fifos(request) -> None:
    if request.stdin or request.stdout or request.stderr:
        raise InvalidArgument("stdio fifos are not supported: the shim keeps the process's stdio; "
                              "attach to it with Attach")


def _send_addresses(context, task: Task) -> None:
    context.send_initial_metadata(((LOG_PATH_KEY, task.log_path),))


log = logging.getLogger(__name__)
EXIT_POLL = 0.5  # how often a detached client is noticed while the exit is awaited


def _forward_input(requests, stream, stdin: bool, resize) -> None:
    """Attach's later requests to the shim: stdin (if it was asked for), its close, resizes.
    Runs until the client ends its request stream or the call ends."""
    try:
        for request in requests:
            if stdin and request.data:
                stream.write(request.data)
            if stdin and request.close_stdin:
                stream.close_stdin()
            if request.width and request.height:
                resize(request.width, request.height)
    except grpc.RpcError:  # the call ended (the client cancelled it or went away)
        pass
    except Exception as e:  # noqa: BLE001 - the process exited and the shim closed the stream
        log.debug("attach input stopped: %s", e)


def _process(task: Task, state: dict) -> pb.Process:
    exec_id = state.get("exec_id") or ""
    return pb.Process(container_id=task.id, id=exec_id or task.id, pid=int(state.get("pid") or 0),
                      status=_STATUS.get(state.get("status"), pb.UNKNOWN),
                      terminal=bool(state.get("terminal")), exit_status=int(state.get("exit_status") or 0),
                      exited_at=timestamp(state.get("exited_at") or ""))


def _task_fields(task: Task, state: dict) -> filters.Adaptor:
    return filters.adaptor({"id": task.id, "container_id": task.id, "status": state.get("status"),
                            "pid": str(state.get("pid") or 0)}, {})


class TasksService(tasks_pb2_grpc.TasksServicer):
    def __init__(self, tasks: TaskManager):
        self._tasks = tasks

    def Create(self, request, context):
        ns = namespace.required(context)
        _no_fifos(request)
        mounts = [Mount(m.type, m.source, list(m.options)) for m in request.rootfs]
        task = self._tasks.create(ns, request.container_id, mounts, request.terminal,
                                  request.options if request.HasField("options") else None)
        _send_addresses(context, task)
        return pb.CreateTaskResponse(container_id=task.id, pid=task.init.pid)

    def Start(self, request, context):
        ns = namespace.required(context)
        pid = self._tasks.start(ns, request.container_id, request.exec_id)
        _send_addresses(context, self._tasks.get(ns, request.container_id))
        return pb.StartResponse(pid=pid)

    def Delete(self, request, context):
        ns = namespace.required(context)
        proc = self._tasks.delete(ns, request.container_id)
        return pb.DeleteResponse(id=request.container_id, pid=proc.pid, exit_status=proc.exit_status,
                                 exited_at=timestamp(proc.exited_at))

    def DeleteProcess(self, request, context):
        ns = namespace.required(context)
        proc = self._tasks.delete_process(ns, request.container_id, request.exec_id)
        return pb.DeleteResponse(id=request.exec_id, pid=proc.pid, exit_status=proc.exit_status,
                                 exited_at=timestamp(proc.exited_at))

    def Get(self, request, context):
        ns = namespace.required(context)
        task = self._tasks.get(ns, request.container_id)
        state = self._tasks.state(ns, request.container_id, request.exec_id)
        _send_addresses(context, task)
        return pb.GetResponse(process=_process(task, state))

    def List(self, request, context):
        ns = namespace.required(context)
        match = filters.parse(request.filters)
        found = []
        for task in self._tasks.list(ns):
            try:
                state = self._tasks.state(ns, task.id)
            except NotFound:  # deleted meanwhile
                continue
            if match(_task_fields(task, state)):
                found.append(_process(task, state))
        return pb.ListTasksResponse(tasks=found)

    def Kill(self, request, context):
        ns = namespace.required(context)
        self._tasks.kill(ns, request.container_id, request.signal or 15, request.all, request.exec_id)
        return empty_pb2.Empty()

    def Exec(self, request, context):
        ns = namespace.required(context)
        if request.stdout or request.stderr:
            _no_fifos(request)
        process = _json_any(request.spec, "exec spec")
        if not isinstance(process, dict):
            raise InvalidArgument("exec spec must be an OCI process (a JSON object)")
        self._tasks.exec(ns, request.container_id, request.exec_id, process, request.terminal,
                         stdin=bool(request.stdin))
        _send_addresses(context, self._tasks.get(ns, request.container_id))
        return empty_pb2.Empty()

    def ResizePty(self, request, context):
        ns = namespace.required(context)
        self._tasks.resize(ns, request.container_id, request.exec_id, request.width, request.height)
        return empty_pb2.Empty()

    def CloseIO(self, request, context):
        ns = namespace.required(context)
        if request.stdin:
            self._tasks.close_stdin(ns, request.container_id, request.exec_id)
        return empty_pb2.Empty()

    def Pause(self, request, context):
        self._tasks.pause(namespace.required(context), request.container_id)
        return empty_pb2.Empty()

    def Resume(self, request, context):
        self._tasks.resume(namespace.required(context), request.container_id)
        return empty_pb2.Empty()

    def ListPids(self, request, context):
        ns = namespace.required(context)
        pids = self._tasks.pids(ns, request.container_id)
        return pb.ListPidsResponse(processes=[pb.ProcessInfo(pid=int(p["pid"])) for p in pids])

    def Update(self, request, context):
        ns = namespace.required(context)
        resources = _json_any(request.resources, "resources")
        if not isinstance(resources, dict):
            raise InvalidArgument("resources must be an OCI linux.resources (a JSON object)")
        self._tasks.update(ns, request.container_id, resources)
        return empty_pb2.Empty()

    def Metrics(self, request, context):
        ns = namespace.required(context)
        match = filters.parse(request.filters)
        metrics = []
        for task in self._tasks.list(ns):
            if not match(filters.adaptor({"id": task.id, "container_id": task.id}, {})):
                continue
            try:
                stats = self._tasks.stats(ns, task.id)
            except (NotFound, Conflict):  # stopped or gone meanwhile
                continue
            metric = pb.Metric(id=task.id, data=any_pb2.Any(type_url=STATS_TYPE, value=json.dumps(stats).encode()))
            metric.timestamp.GetCurrentTime()
            metrics.append(metric)
        return pb.MetricsResponse(metrics=metrics)

    def Attach(self, request_iterator, context):
        ns = namespace.required(context)
        first = next(request_iterator, None)
        if first is None:
            raise InvalidArgument("attach: the first request must name the process (container_id, exec_id)")
        if not first.container_id:
            raise InvalidArgument("attach: container_id is required")
        cid, exec_id = first.container_id, first.exec_id
        stream, proc = self._tasks.attach(ns, cid, exec_id, stdin=first.stdin)
        try:
            # The client going away (cancel, disconnect) wakes the read below: the shim
            # connection is released at once, not when the process next writes.
            context.add_callback(stream.shutdown)
            yield pb.AttachResponse(attached=True)
            threading.Thread(target=_forward_input, name=f"attach-{cid}-{exec_id or 'init'}", daemon=True,
                             args=(request_iterator, stream, first.stdin,
                                   lambda w, h: self._tasks.resize(ns, cid, exec_id, w, h))).start()
            while (frame := stream.read()) is not None:
                kind, data = frame
                if kind == "stdout":
                    yield pb.AttachResponse(stdout=data)
                elif kind == "stderr":
                    yield pb.AttachResponse(stderr=data)
                elif kind == "exit":
                    yield pb.AttachResponse(exit=pb.AttachExit(
                        exit_status=int(data.get("exit_status") or 0),
                        exited_at=timestamp(str(data.get("exited_at") or ""))))
                    return
        finally:
            stream.close()
        # The stream ended without the exit: the client left, or the shim went away (the
        # task manager then records the exit as it cleans up).
        while context.is_active() and not proc.exited.wait(EXIT_POLL):
            pass
        if not context.is_active():
            return
        yield pb.AttachResponse(exit=pb.AttachExit(exit_status=proc.exit_status,
                                                   exited_at=timestamp(proc.exited_at)))

    def Wait(self, request, context):
        ns = namespace.required(context)
        proc = self._tasks.wait(ns, request.container_id, request.exec_id, is_active=context.is_active)
        if proc is None:
            context.abort(grpc.StatusCode.CANCELLED, "the client went away")
        return pb.WaitResponse(exit_status=proc.exit_status, exited_at=timestamp(proc.exited_at))


def register(server: grpc.Server, tasks: TaskManager) -> None:
    tasks_pb2_grpc.add_TasksServicer_to_server(TasksService(tasks), server)
