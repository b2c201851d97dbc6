"""`tasks ls|kill|ps|exec|pause|resume|rm`, as ctr's `tasks`."""

import argparse
import json
import signal as signals
import sys
import uuid

from google.protobuf import any_pb2

from dockyard.api.services.containers.v1 import containers_pb2 as containers_pb
from dockyard.api.services.tasks.v1 import tasks_pb2 as pb
from dockyard.errors import DockyardError, InvalidArgument

from .. import attach
from .. import spec as specs
from ..output import Table
from . import verb, verbs


def parse_signal(text: str) -> int:
    """SIGKILL, KILL, kill or 9."""
    if text.isdigit():
        number = int(text)
        if 0 < number < signals.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if isinstance(getattr(signals, name, None), signals.Signals):
            return int(getattr(signals, name))
    raise InvalidArgument(f"invalid signal {text!r}")


def status_name(status: int) -> str:
    return pb.Status.Name(status)


def ls(session, args) -> int:
    found = session.tasks.List(pb.ListTasksRequest()).tasks
    if args.quiet:
        for t in found:
            print(t.container_id or t.id)
        return 0
    table = Table(minwidth=4, padding=4)
    table.row("TASK\tPID\tSTATUS\t")
    for t in found:
        table.row(f"{t.container_id or t.id}\t{t.pid}\t{status_name(t.status)}")
    table.write()
    return 0


def kill(session, args) -> int:
    if args.all and args.exec_id:
        raise InvalidArgument("specify an exec-id or all, not both")
    session.tasks.Kill(pb.KillRequest(container_id=args.id, exec_id=args.exec_id or "",
                                      signal=parse_signal(args.signal), all=args.all))
    return 0


def ps(session, args) -> int:
    processes = session.tasks.ListPids(pb.ListPidsRequest(container_id=args.id)).processes
    table = Table(minwidth=1, padding=4)
    table.row("PID\tINFO")
    for p in processes:
        info = "-"
        if p.info.value:
            try:
                info = json.dumps(json.loads(p.info.value), separators=(",", ":"))
            except ValueError:
                info = p.info.type_url
        table.row(f"{p.pid}\t{info}")
    table.write()
    return 0


def pause(session, args) -> int:
    session.tasks.Pause(pb.PauseTaskRequest(container_id=args.id))
    return 0


def resume(session, args) -> int:
    session.tasks.Resume(pb.ResumeTaskRequest(container_id=args.id))
    return 0


def delete_task(session, container_id: str, force: bool = False) -> pb.DeleteResponse:
    """ctr's task delete: a task that has not stopped is refused, or with force killed first."""
    process = session.tasks.Get(pb.GetRequest(container_id=container_id)).process
    if process.status != pb.STOPPED:
        if not force:
            raise InvalidArgument(f"task {container_id} must be stopped before deletion: "
                                  f"{status_name(process.status).lower()}")
        if process.status == pb.PAUSED:
            session.tasks.Resume(pb.ResumeTaskRequest(container_id=container_id))
        if process.status != pb.CREATED:
            session.tasks.Kill(pb.KillRequest(container_id=container_id, signal=signals.SIGKILL, all=True))
            session.tasks.Wait(pb.WaitRequest(container_id=container_id))
    return session.tasks.Delete(pb.DeleteTaskRequest(container_id=container_id))


def rm(session, args) -> int:
    if args.exec_id:
        session.tasks.DeleteProcess(pb.DeleteProcessRequest(container_id=args.ids[0], exec_id=args.exec_id))
        return 0
    status = 0
    for container_id in args.ids:
        try:
            delete_task(session, container_id, args.force)
        except DockyardError as e:
            print(f"dockyard-ctr: failed to delete task {container_id}: {e}", file=sys.stderr)
            status = 1
    return status


def exec_(session, args) -> int:
    if not args.command:
        raise InvalidArgument("exec needs a command to run")
    container = session.containers.Get(containers_pb.GetContainerRequest(id=args.id)).container
    try:
        container_spec = json.loads(container.spec.value)
    except ValueError:
        raise InvalidArgument(f"container {args.id}: its spec is not JSON") from None
    exec_id = args.exec_id or f"exec-{uuid.uuid4().hex[:12]}"
    process = specs.exec_process(container_spec, args.command, args.tty, args.cwd)
    session.tasks.Exec(pb.ExecProcessRequest(
        container_id=args.id, exec_id=exec_id, terminal=args.tty,
        stdin="" if args.detach else attach.STDIN_OPEN,
        spec=any_pb2.Any(type_url=specs.PROCESS_TYPE_URL, value=json.dumps(process).encode())))
    try:
        if args.detach:
            session.tasks.Start(pb.StartRequest(container_id=args.id, exec_id=exec_id))
            return 0
        return attach.run_process(session, args.id, exec_id, args.tty)
    finally:
        if not args.detach:
            try:
                session.tasks.DeleteProcess(pb.DeleteProcessRequest(container_id=args.id, exec_id=exec_id))
            except DockyardError:
                pass


def configure(parser) -> None:
    sub = verbs(parser)
    p = verb(sub, "ls", ls, "list tasks", aliases=["list"])
    p.add_argument("-q", "--quiet", action="store_true", help="print only the task id")
    p = verb(sub, "kill", kill, "signal a container (default: SIGTERM)")
    p.add_argument("-s", "--signal", default="SIGTERM", help="signal to send to the container")
    p.add_argument("--exec-id", help="process id to kill")
    p.add_argument("-a", "--all", action="store_true", help="send signal to all processes inside the container")
    p.add_argument("id", metavar="CONTAINER")
    p = verb(sub, "ps", ps, "list processes for container")
    p.add_argument("id", metavar="CONTAINER")
    p = verb(sub, "exec", exec_, "execute additional processes in an existing container")
    p.add_argument("--exec-id", help="exec specific id for the process (default: a random one)")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a TTY for the container")
    p.add_argument("-d", "--detach", action="store_true", help="detach from the task after it has started execution")
    p.add_argument("--cwd", help="working directory of the new process")
    p.add_argument("id", metavar="CONTAINER")
    p.add_argument("command", metavar="COMMAND", nargs=argparse.REMAINDER)
    p = verb(sub, "pause", pause, "pause an existing container")
    p.add_argument("id", metavar="CONTAINER")
    p = verb(sub, "resume", resume, "resume a paused container")
    p.add_argument("id", metavar="CONTAINER")
    p = verb(sub, "rm", rm, "delete one or more tasks", aliases=["delete", "del", "remove"])
    p.add_argument("-f", "--force", action="store_true", help="force delete task process")
    p.add_argument("--exec-id", help="process ID to kill")
    p.add_argument("ids", metavar="CONTAINER", nargs="+")
