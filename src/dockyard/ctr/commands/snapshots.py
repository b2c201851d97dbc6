"""`snapshots ls`, as ctr's `snapshots ls`: KEY, PARENT, KIND."""

from dockyard.api.services.snapshots.v1 import snapshots_pb2 as pb

from ..output import Table
from . import verb, verbs

DEFAULT_SNAPSHOTTER = "overlayfs"
# containerd's snapshots.Kind.String()
KINDS = {pb.VIEW: "View", pb.ACTIVE: "Active", pb.COMMITTED: "Committed"}


def ls(session, args) -> int:
    table = Table(minwidth=1, padding=1)
    table.row("KEY\tPARENT\tKIND\t")
    request = pb.ListSnapshotsRequest(snapshotter=args.snapshotter, filters=args.filters)
    for response in session.snapshots.List(request):
        for info in response.info:
            table.row(f"{info.name}\t{info.parent}\t{KINDS.get(info.kind, 'Unknown')}\t")
    table.write()
    return 0


def configure(parser) -> None:
    parser.add_argument("--snapshotter", default=DEFAULT_SNAPSHOTTER,
                        help=f'snapshotter name (default "{DEFAULT_SNAPSHOTTER}")')
    sub = verbs(parser)
    p = verb(sub, "ls", ls, "list snapshots", aliases=["list"])
    p.add_argument("filters", metavar="FILTER", nargs="*")
