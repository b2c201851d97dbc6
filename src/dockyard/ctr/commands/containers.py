"""`containers ls|info|rm`, as ctr's `containers`."""

import json
import sys

from dockyard.api.services.containers.v1 import containers_pb2 as pb
from dockyard.api.services.snapshots.v1 import snapshots_pb2 as snapshots_pb
from dockyard.api.services.tasks.v1 import tasks_pb2 as tasks_pb
from dockyard.errors import Conflict, DockyardError, NotFound, Unsupported

from ..output import Table, print_json, rfc3339
from . import verb, verbs


def ls(session, args) -> int:
    found = session.containers.List(pb.ListContainersRequest(filters=args.filters)).containers
    if args.quiet:
        for c in found:
            print(c.id)
        return 0
    table = Table(minwidth=4, padding=4)
    table.row("CONTAINER\tIMAGE\tRUNTIME\t")
    for c in found:
        table.row(f"{c.id}\t{c.image or '-'}\t{c.runtime.name}\t")
    table.write()
    return 0


def _any_json(message):
    if not message.value:
        return None
    try:
        return json.loads(message.value)
    except ValueError:
        return {"type_url": message.type_url}


def info(session, args) -> int:
    c = session.containers.Get(pb.GetContainerRequest(id=args.id)).container
    spec = _any_json(c.spec)
    if args.spec:
        print_json(spec)
        return 0
    # The field names and order of containerd's containers.Container, as ctr prints it.
    print_json({
        "ID": c.id,
        "Labels": dict(c.labels) or None,
        "Image": c.image,
        "Runtime": {"Name": c.runtime.name, "Options": _any_json(c.runtime.options)},
        "SnapshotKey": c.snapshot_key,
        "Snapshotter": c.snapshotter,
        "CreatedAt": rfc3339(c.created_at),
        "UpdatedAt": rfc3339(c.updated_at),
        "Extensions": {k: _any_json(v) for k, v in c.extensions.items()} or None,
        "Spec": spec,
    })
    return 0


def delete(session, container_id: str, keep_snapshot: bool = False) -> None:
    """What ctr's `containers rm` does: refuse while its task runs, delete a stopped task,
    the container, and its snapshot unless told to keep it."""
    try:
        process = session.tasks.Get(tasks_pb.GetRequest(container_id=container_id)).process
    except (NotFound, Unsupported):
        process = None
    if process is not None:
        if process.status != tasks_pb.STOPPED:
            raise Conflict(f"cannot delete a non stopped container: {container_id} is "
                           f"{tasks_pb.Status.Name(process.status)}")
        session.tasks.Delete(tasks_pb.DeleteTaskRequest(container_id=container_id))
    c = session.containers.Get(pb.GetContainerRequest(id=container_id)).container
    session.containers.Delete(pb.DeleteContainerRequest(id=container_id))
    if c.snapshot_key and not keep_snapshot:
        try:
            session.snapshots.Remove(snapshots_pb.RemoveSnapshotRequest(
                snapshotter=c.snapshotter, key=c.snapshot_key))
        except NotFound:
            pass


def rm(session, args) -> int:
    status = 0
    for container_id in args.ids:
        try:
            delete(session, container_id, args.keep_snapshot)
        except DockyardError as e:
            print(f"dockyard-ctr: failed to delete container {container_id}: {e}", file=sys.stderr)
            status = 1
    return status


def configure(parser) -> None:
    sub = verbs(parser)
    p = verb(sub, "ls", ls, "list containers", aliases=["list"])
    p.add_argument("-q", "--quiet", action="store_true", help="print only the container id")
    p.add_argument("filters", metavar="FILTER", nargs="*")
    p = verb(sub, "info", info, "get info about a container")
    p.add_argument("--spec", action="store_true", help="only display the spec")
    p.add_argument("id", metavar="CONTAINER")
    p = verb(sub, "rm", rm, "delete one or more existing containers", aliases=["delete", "del", "remove"])
    p.add_argument("--keep-snapshot", action="store_true", help="do not clean up the snapshot with the container")
    p.add_argument("ids", metavar="CONTAINER", nargs="+")
