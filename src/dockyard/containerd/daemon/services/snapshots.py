"""Snapshots, backed by the daemon's snapshotters by name (only "overlayfs" today). Namespaced
but for Cleanup, which is daemon-wide; every request names its snapshotter, and an unknown one
is NOT_FOUND."""

from typing import Mapping

import grpc
from google.protobuf import empty_pb2

from dockyard.api.services.snapshots.v1 import snapshots_pb2 as pb
from dockyard.api.services.snapshots.v1 import snapshots_pb2_grpc
from dockyard.api.types import mount_pb2
from dockyard.containerd import snapshots
from dockyard.errors import InvalidArgument, NotFound

from .. import namespace

LIST_BATCH = 100  # infos per List message

KINDS = {snapshots.Kind.VIEW: pb.VIEW, snapshots.Kind.ACTIVE: pb.ACTIVE, snapshots.Kind.COMMITTED: pb.COMMITTED}
_KINDS_BACK = {v: k for k, v in KINDS.items()}


def mounts(found: list[snapshots.Mount]) -> list[mount_pb2.Mount]:
    return [mount_pb2.Mount(type=m.type, source=m.source, options=m.options) for m in found]


def from_mounts(messages) -> list[snapshots.Mount]:
    return [snapshots.Mount(m.type, m.source, list(m.options)) for m in messages]


def info(i: snapshots.Info) -> pb.Info:
    m = pb.Info(name=i.name, parent=i.parent, kind=KINDS[i.kind], labels=i.labels)
    m.created_at.FromNanoseconds(i.created_at)
    m.updated_at.FromNanoseconds(i.updated_at)
    return m


def from_info(m: pb.Info) -> snapshots.Info:
    return snapshots.Info(m.name, _KINDS_BACK[m.kind], m.parent, dict(m.labels),
                          m.created_at.ToNanoseconds(), m.updated_at.ToNanoseconds())


class SnapshotsService(snapshots_pb2_grpc.SnapshotsServicer):
    def __init__(self, snapshotters: Mapping[str, snapshots.Snapshotter]):
        self._snapshotters = snapshotters

    def _get(self, name: str) -> snapshots.Snapshotter:
        if not name:
            raise InvalidArgument("snapshotter must be named (this daemon has: "
                                  f"{', '.join(sorted(self._snapshotters))})")
        try:
            return self._snapshotters[name]
        except KeyError:
            raise NotFound(f"snapshotter {name[:64]!r} not found (this daemon has: "
                           f"{', '.join(sorted(self._snapshotters))})") from None

    def Prepare(self, request, context):
        ns = namespace.required(context)
        made = self._get(request.snapshotter).prepare(ns, request.key, request.parent, dict(request.labels))
        return pb.PrepareSnapshotResponse(mounts=mounts(made))

    def View(self, request, context):
        ns = namespace.required(context)
        made = self._get(request.snapshotter).view(ns, request.key, request.parent, dict(request.labels))
        return pb.ViewSnapshotResponse(mounts=mounts(made))

    def Mounts(self, request, context):
        ns = namespace.required(context)
        return pb.MountsResponse(mounts=mounts(self._get(request.snapshotter).mounts(ns, request.key)))

    def Commit(self, request, context):
        ns = namespace.required(context)
        self._get(request.snapshotter).commit(ns, request.name, request.key, dict(request.labels))
        return empty_pb2.Empty()

    def Remove(self, request, context):
        ns = namespace.required(context)
        self._get(request.snapshotter).remove(ns, request.key)
        return empty_pb2.Empty()

    def Stat(self, request, context):
        ns = namespace.required(context)
        return pb.StatSnapshotResponse(info=info(self._get(request.snapshotter).stat(ns, request.key)))

    def Update(self, request, context):
        ns = namespace.required(context)
        updated = self._get(request.snapshotter).update(ns, request.info.name, dict(request.info.labels),
                                                        list(request.update_mask.paths) or None)
        return pb.UpdateSnapshotResponse(info=info(updated))

    def List(self, request, context):
        ns = namespace.required(context)
        found = self._get(request.snapshotter).list(ns, *request.filters)
        for start in range(0, len(found), LIST_BATCH):
            yield pb.ListSnapshotsResponse(info=[info(i) for i in found[start:start + LIST_BATCH]])

    def Usage(self, request, context):
        ns = namespace.required(context)
        usage = self._get(request.snapshotter).usage(ns, request.key)
        return pb.UsageResponse(size=usage.size, inodes=usage.inodes)

    def Cleanup(self, request, context):
        # Daemon-wide (leftover directories belong to no namespace), so no namespace needed.
        self._get(request.snapshotter).cleanup()
        return empty_pb2.Empty()


def register(server: grpc.Server, snapshotters: Mapping[str, snapshots.Snapshotter]) -> None:
    snapshots_pb2_grpc.add_SnapshotsServicer_to_server(SnapshotsService(snapshotters), server)
