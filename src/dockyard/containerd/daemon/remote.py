"""The stores' Protocols (`dockyard.containerd.metadata`, `.content`, `.snapshots`) implemented
over gRPC, so a caller
(dockyardd, dockyard-ctr) holds the same interface whether the store is local or behind the
daemon, and the same contract tests run against both. Errors come back as the `dockyard.errors`
the store raised (`daemon.errors.from_rpc_error`)."""

from __future__ import annotations  # a method named `list` shadows the builtin in annotations

import os
import queue

import grpc

from dockyard.api.services.containers.v1 import containers_pb2 as ctr_pb
from dockyard.api.services.containers.v1.containers_pb2_grpc import ContainersStub
from dockyard.api.services.content.v1 import content_pb2 as content_pb
from dockyard.api.services.content.v1.content_pb2_grpc import ContentStub
from dockyard.api.services.images.v1 import images_pb2 as img_pb
from dockyard.api.services.images.v1.images_pb2_grpc import ImagesStub
from dockyard.api.services.leases.v1 import leases_pb2 as lease_pb
from dockyard.api.services.leases.v1.leases_pb2_grpc import LeasesStub
from dockyard.api.services.namespaces.v1 import namespaces_pb2 as ns_pb
from dockyard.api.services.namespaces.v1.namespaces_pb2_grpc import NamespacesStub
from dockyard.api.services.snapshots.v1 import snapshots_pb2 as snap_pb
from dockyard.api.services.snapshots.v1.snapshots_pb2_grpc import SnapshotsStub
from dockyard.containerd import content, snapshots
from dockyard.containerd.metadata import Container, Image, Lease, Namespace, Resource
from dockyard.errors import Conflict, DockyardError, SystemFailure

from .errors import from_rpc_error
from .namespace import NAMESPACE_KEY
from .services import containers as containers_service
from .services import content as content_service
from .services import images as images_service
from .services import leases as leases_service
from .services import snapshots as snapshots_service


def _call(method, request, ns: str | None = None):
    """One unary call; `ns` goes in the namespace header of a namespaced service."""
    try:
        return method(request, metadata=None if ns is None else _ns(ns))
    except grpc.RpcError as e:
        raise from_rpc_error(e) from None


def _namespace(message: ns_pb.Namespace) -> Namespace:
    return Namespace(message.name, dict(message.labels))


class RemoteNamespaces:
    """`metadata.Namespaces` on a channel to the daemon."""

    def __init__(self, channel: grpc.Channel):
        self._stub = NamespacesStub(channel)

    def create(self, name: str, labels: dict[str, str] | None = None) -> Namespace:
        request = ns_pb.CreateNamespaceRequest(namespace=ns_pb.Namespace(name=name, labels=labels or {}))
        return _namespace(_call(self._stub.Create, request).namespace)

    def get(self, name: str) -> Namespace:
        return _namespace(_call(self._stub.Get, ns_pb.GetNamespaceRequest(name=name)).namespace)

    def list(self) -> list[Namespace]:
        return [_namespace(n) for n in _call(self._stub.List, ns_pb.ListNamespacesRequest()).namespaces]

    def update(self, name: str, labels: dict[str, str], fieldpaths: list[str] | None = None) -> Namespace:
        request = ns_pb.UpdateNamespaceRequest(namespace=ns_pb.Namespace(name=name, labels=labels))
        request.update_mask.paths.extend(fieldpaths or ())
        return _namespace(_call(self._stub.Update, request).namespace)

    def delete(self, name: str) -> None:
        _call(self._stub.Delete, ns_pb.DeleteNamespaceRequest(name=name))


def _ns(ns: str) -> tuple[tuple[str, str], ...]:
    return ((NAMESPACE_KEY, ns),)


def _stream(method, request, ns: str):
    """The messages of a server stream, errors mapped as `_call` does."""
    try:
        yield from method(request, metadata=_ns(ns))
    except grpc.RpcError as e:
        raise from_rpc_error(e) from None


def _mask(request, fieldpaths) -> None:
    request.update_mask.paths.extend(fieldpaths or ())


class RemoteContainers:
    """`metadata.Containers` on a channel to the daemon."""

    def __init__(self, channel: grpc.Channel):
        self._stub = ContainersStub(channel)

    def get(self, ns: str, id: str) -> Container:
        response = _call(self._stub.Get, ctr_pb.GetContainerRequest(id=id), ns)
        return containers_service.from_message(response.container)

    def list(self, ns: str, *filters: str) -> list[Container]:
        response = _call(self._stub.List, ctr_pb.ListContainersRequest(filters=filters), ns)
        return [containers_service.from_message(c) for c in response.containers]

    def create(self, ns: str, container: Container) -> Container:
        request = ctr_pb.CreateContainerRequest(container=containers_service.message(container))
        return containers_service.from_message(_call(self._stub.Create, request, ns).container)

    def update(self, ns: str, container: Container, fieldpaths: list[str] | None = None) -> Container:
        request = ctr_pb.UpdateContainerRequest(container=containers_service.message(container))
        _mask(request, containers_service.wire_paths(fieldpaths))
        return containers_service.from_message(_call(self._stub.Update, request, ns).container)

    def delete(self, ns: str, id: str) -> None:
        _call(self._stub.Delete, ctr_pb.DeleteContainerRequest(id=id), ns)


class RemoteImages:
    """`metadata.Images` on a channel to the daemon."""

    def __init__(self, channel: grpc.Channel):
        self._stub = ImagesStub(channel)

    def get(self, ns: str, name: str) -> Image:
        return images_service.from_message(_call(self._stub.Get, img_pb.GetImageRequest(name=name), ns).image)

    def list(self, ns: str, *filters: str) -> list[Image]:
        response = _call(self._stub.List, img_pb.ListImagesRequest(filters=filters), ns)
        return [images_service.from_message(i) for i in response.images]

    def create(self, ns: str, image: Image) -> Image:
        request = img_pb.CreateImageRequest(image=images_service.message(image))
        return images_service.from_message(_call(self._stub.Create, request, ns).image)

    def update(self, ns: str, image: Image, fieldpaths: list[str] | None = None) -> Image:
        request = img_pb.UpdateImageRequest(image=images_service.message(image))
        _mask(request, fieldpaths)
        return images_service.from_message(_call(self._stub.Update, request, ns).image)

    def delete(self, ns: str, name: str) -> None:
        _call(self._stub.Delete, img_pb.DeleteImageRequest(name=name), ns)


class RemoteLeases:
    """`metadata.Leases` on a channel to the daemon."""

    def __init__(self, channel: grpc.Channel):
        self._stub = LeasesStub(channel)

    def create(self, ns: str, id: str = "", labels: dict[str, str] | None = None) -> Lease:
        response = _call(self._stub.Create, lease_pb.CreateLeaseRequest(id=id, labels=labels or {}), ns)
        return leases_service.from_message(response.lease)

    def list(self, ns: str, *filters: str) -> list[Lease]:
        response = _call(self._stub.List, lease_pb.ListLeasesRequest(filters=filters), ns)
        return [leases_service.from_message(x) for x in response.leases]

    def delete(self, ns: str, id: str) -> None:
        _call(self._stub.Delete, lease_pb.DeleteLeaseRequest(id=id), ns)

    def add_resource(self, ns: str, id: str, resource: Resource) -> None:
        request = lease_pb.AddResourceRequest(id=id, resource=leases_service.resource(resource))
        _call(self._stub.AddResource, request, ns)

    def delete_resource(self, ns: str, id: str, resource: Resource) -> None:
        request = lease_pb.DeleteResourceRequest(id=id, resource=leases_service.resource(resource))
        _call(self._stub.DeleteResource, request, ns)

    def list_resources(self, ns: str, id: str) -> list[Resource]:
        response = _call(self._stub.ListResources, lease_pb.ListResourcesRequest(id=id), ns)
        return [leases_service.from_resource(r) for r in response.resources]


class RemoteContentStore:
    """`content.ContentStore` on a channel to the daemon. A writer is one Write stream; see
    `RemoteWriter`. A channel does not survive fork(): a child must connect again."""

    def __init__(self, channel: grpc.Channel):
        self._stub = ContentStub(channel)
        self._pid = os.getpid()

    def _checked(self) -> ContentStub:
        if os.getpid() != self._pid:
            raise SystemFailure("a gRPC channel cannot be used after fork(); connect again in the child")
        return self._stub

    def info(self, ns: str, digest: str) -> content.Info:
        response = _call(self._checked().Info, content_pb.InfoRequest(digest=digest), ns)
        return content_service.from_info(response.info)

    def update(self, ns: str, digest: str, labels: dict[str, str],
               fieldpaths: list[str] | None = None) -> content.Info:
        request = content_pb.UpdateRequest(info=content_pb.Info(digest=digest, labels=labels))
        _mask(request, fieldpaths)
        return content_service.from_info(_call(self._checked().Update, request, ns).info)

    def list(self, ns: str, *filters: str) -> list[content.Info]:
        request = content_pb.ListContentRequest(filters=filters)
        return [content_service.from_info(i)
                for response in _stream(self._checked().List, request, ns) for i in response.info]

    def delete(self, ns: str, digest: str) -> None:
        _call(self._checked().Delete, content_pb.DeleteContentRequest(digest=digest), ns)

    def reader_at(self, ns: str, digest: str) -> RemoteReader:
        return RemoteReader(self, ns, digest, self.info(ns, digest).size)

    def _read(self, ns: str, digest: str, offset: int, n: int) -> bytes:
        request = content_pb.ReadContentRequest(digest=digest, offset=offset, size=n)
        return b"".join(r.data for r in _stream(self._checked().Read, request, ns))

    def status(self, ns: str, ref: str) -> content.Status:
        response = _call(self._checked().Status, content_pb.StatusRequest(ref=ref), ns)
        return content_service.from_status(response.status)

    def list_statuses(self, ns: str, *filters: str) -> list[content.Status]:
        response = _call(self._checked().ListStatuses, content_pb.ListStatusesRequest(filters=filters), ns)
        return [content_service.from_status(s) for s in response.statuses]

    def writer(self, ns: str, ref: str, total: int = 0, expected: str = "") -> RemoteWriter:
        return RemoteWriter(self._checked(), ns, ref, total, expected)

    def abort(self, ns: str, ref: str) -> None:
        _call(self._checked().Abort, content_pb.AbortRequest(ref=ref), ns)


class RemoteReader:
    """`content.ReaderAt` over Read calls, each for the range asked."""

    def __init__(self, store: RemoteContentStore, ns: str, digest: str, size: int):
        self._store, self._ns, self._digest, self.size = store, ns, digest, size

    def read_at(self, offset: int, n: int) -> bytes:
        if n == 0:  # Read takes size 0 as "to the end"
            return b""
        return self._store._read(self._ns, self._digest, offset, n)

    def close(self) -> None:
        pass


_END = object()


class _WriteStream:
    """One Write call: a request goes in, its one response comes out."""

    def __init__(self, stub: ContentStub, ns: str):
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._responses = stub.Write(iter(self._requests.get, _END), metadata=_ns(ns))

    def call(self, request: content_pb.WriteContentRequest) -> content_pb.WriteContentResponse:
        self._requests.put(request)
        try:
            return next(self._responses)
        except grpc.RpcError as e:
            self._requests.put(_END)  # lets gRPC's request thread finish
            raise from_rpc_error(e) from None
        except StopIteration:
            raise SystemFailure("content write stream ended early") from None

    def close(self) -> None:
        """Half-closes and waits for the server to end the call, so the ingest's lock is free
        once this returns."""
        self._requests.put(_END)
        try:
            for _ in self._responses:
                pass
        except grpc.RpcError:
            pass


class RemoteWriter:
    """`content.Writer` over Write streams. A failed call ends its stream (and the server
    releases the ingest); the next call opens a new stream for the same ref, which resumes at
    the ingest's current offset — so a failed commit can be retried, as with a local writer."""

    def __init__(self, stub: ContentStub, ns: str, ref: str, total: int, expected: str):
        self._stub, self._ns, self.ref = stub, ns, ref
        self._total, self._expected = total, expected
        self._stream: _WriteStream | None = None
        self._closed = False
        self._offset = 0
        self._status = content.Status(ref, 0, total, 0, 0, expected)
        self._stat()  # opens the ingest now: a locked ref or an existing digest fails here

    def _call(self, **fields) -> content_pb.WriteContentResponse:
        if self._closed:
            raise Conflict(f"writer for ingest {self.ref} is closed")
        if self._stream is None:
            stream = _WriteStream(self._stub, self._ns)
            self._remember(stream.call(content_pb.WriteContentRequest(
                action=content_pb.STAT, ref=self.ref, total=self._total, expected=self._expected)))
            self._stream = stream
        try:
            response = self._stream.call(content_pb.WriteContentRequest(ref=self.ref, **fields))
        except DockyardError:
            self._stream = None
            raise
        self._remember(response)
        return response

    def _remember(self, r: content_pb.WriteContentResponse) -> None:
        self._offset = r.offset
        self._status = content.Status(self.ref, r.offset, r.total, r.started_at.ToNanoseconds(),
                                      r.updated_at.ToNanoseconds(), self._expected)

    def _stat(self) -> content_pb.WriteContentResponse:
        return self._call(action=content_pb.STAT)

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        for start in range(0, len(view), content_service.CHUNK):
            self._call(action=content_pb.WRITE, offset=self._offset, data=bytes(view[start:start + content_service.CHUNK]))
        return len(view)

    def digest(self) -> str:
        return self._stat().digest

    def status(self) -> content.Status:
        return self._status

    def truncate(self, size: int) -> None:
        self._call(action=content_pb.WRITE, offset=size)

    def commit(self, size: int = 0, expected: str = "", labels: dict[str, str] | None = None) -> None:
        self._call(action=content_pb.COMMIT, total=size, expected=expected, labels=labels or {})
        self.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._closed = True


class RemoteSnapshotter:
    """`snapshots.Snapshotter` on a channel to the daemon, for one of its snapshotters."""

    def __init__(self, channel: grpc.Channel, snapshotter: str = "overlayfs"):
        self._stub = SnapshotsStub(channel)
        self.name = snapshotter

    def stat(self, ns: str, key: str) -> snapshots.Info:
        request = snap_pb.StatSnapshotRequest(snapshotter=self.name, key=key)
        return snapshots_service.from_info(_call(self._stub.Stat, request, ns).info)

    def update(self, ns: str, key: str, labels: dict[str, str],
               fieldpaths: list[str] | None = None) -> snapshots.Info:
        request = snap_pb.UpdateSnapshotRequest(snapshotter=self.name,
                                                info=snap_pb.Info(name=key, labels=labels))
        _mask(request, fieldpaths)
        return snapshots_service.from_info(_call(self._stub.Update, request, ns).info)

    def usage(self, ns: str, key: str) -> snapshots.Usage:
        response = _call(self._stub.Usage, snap_pb.UsageRequest(snapshotter=self.name, key=key), ns)
        return snapshots.Usage(response.size, response.inodes)

    def mounts(self, ns: str, key: str) -> list[snapshots.Mount]:
        response = _call(self._stub.Mounts, snap_pb.MountsRequest(snapshotter=self.name, key=key), ns)
        return snapshots_service.from_mounts(response.mounts)

    def prepare(self, ns: str, key: str, parent: str = "",
                labels: dict[str, str] | None = None) -> list[snapshots.Mount]:
        request = snap_pb.PrepareSnapshotRequest(snapshotter=self.name, key=key, parent=parent, labels=labels or {})
        return snapshots_service.from_mounts(_call(self._stub.Prepare, request, ns).mounts)

    def view(self, ns: str, key: str, parent: str = "",
             labels: dict[str, str] | None = None) -> list[snapshots.Mount]:
        request = snap_pb.ViewSnapshotRequest(snapshotter=self.name, key=key, parent=parent, labels=labels or {})
        return snapshots_service.from_mounts(_call(self._stub.View, request, ns).mounts)

    def commit(self, ns: str, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        request = snap_pb.CommitSnapshotRequest(snapshotter=self.name, name=name, key=key, labels=labels or {})
        _call(self._stub.Commit, request, ns)

    def remove(self, ns: str, key: str) -> None:
        _call(self._stub.Remove, snap_pb.RemoveSnapshotRequest(snapshotter=self.name, key=key), ns)

    def list(self, ns: str, *filters: str) -> list[snapshots.Info]:
        request = snap_pb.ListSnapshotsRequest(snapshotter=self.name, filters=filters)
        return [snapshots_service.from_info(i)
                for response in _stream(self._stub.List, request, ns) for i in response.info]

    def cleanup(self) -> None:
        _call(self._stub.Cleanup, snap_pb.CleanupRequest(snapshotter=self.name))
