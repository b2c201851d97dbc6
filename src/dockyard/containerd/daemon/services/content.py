"""Content, backed by the content store. Namespaced.

Write is one ingest per stream: the first message names the ref (with the expected size and
digest, when known) and opens the store's writer, which holds the ingest's lock until the stream
ends; every request gets one response. A WRITE must be at the ingest's current offset, except
that one below it truncates first (a client's `truncate(0)` is a WRITE at offset 0, as with
containerd). A failed call ends the stream and releases the lock; a new stream for the same ref
resumes at the current offset. Read streams at most `CHUNK` bytes per message."""

from typing import Iterator

import grpc
from google.protobuf import empty_pb2

from dockyard.api.services.content.v1 import content_pb2 as pb
from dockyard.api.services.content.v1 import content_pb2_grpc
from dockyard.containerd import content
from dockyard.errors import InvalidArgument

from .. import namespace

CHUNK = 1 << 20
LIST_BATCH = 100  # infos per List message


def info(i: content.Info) -> pb.Info:
    m = pb.Info(digest=i.digest, size=i.size, labels=i.labels)
    m.created_at.FromNanoseconds(i.created_at)
    m.updated_at.FromNanoseconds(i.updated_at)
    return m


def from_info(m: pb.Info) -> content.Info:
    return content.Info(m.digest, m.size, m.created_at.ToNanoseconds(), m.updated_at.ToNanoseconds(),
                        dict(m.labels))


def status(s: content.Status) -> pb.Status:
    m = pb.Status(ref=s.ref, offset=s.offset, total=s.total, expected=s.expected)
    m.started_at.FromNanoseconds(s.started_at)
    m.updated_at.FromNanoseconds(s.updated_at)
    return m


def from_status(m: pb.Status) -> content.Status:
    return content.Status(m.ref, m.offset, m.total, m.started_at.ToNanoseconds(),
                          m.updated_at.ToNanoseconds(), m.expected)


def _write_response(action, w: content.Writer, digest: str = "") -> pb.WriteContentResponse:
    s = w.status()
    m = pb.WriteContentResponse(action=action, offset=s.offset, total=s.total, digest=digest)
    m.started_at.FromNanoseconds(s.started_at)
    m.updated_at.FromNanoseconds(s.updated_at)
    return m


def _requests(request_iterator, context):
    """The requests of a stream, ending quietly when the client goes away (cancels or dies):
    the ingest stays as it is, to be resumed."""
    try:
        yield from request_iterator
    except grpc.RpcError:
        if context.is_active():
            raise


class ContentService(content_pb2_grpc.ContentServicer):
    def __init__(self, store: content.ContentStore):
        self._store = store

    def Info(self, request, context):
        ns = namespace.required(context)
        return pb.InfoResponse(info=info(self._store.info(ns, request.digest)))

    def Update(self, request, context):
        ns = namespace.required(context)
        updated = self._store.update(ns, request.info.digest, dict(request.info.labels),
                                     list(request.update_mask.paths) or None)
        return pb.UpdateResponse(info=info(updated))

    def List(self, request, context):
        ns = namespace.required(context)
        found = self._store.list(ns, *request.filters)
        for start in range(0, len(found), LIST_BATCH):
            yield pb.ListContentResponse(info=[info(i) for i in found[start:start + LIST_BATCH]])

    def Delete(self, request, context):
        ns = namespace.required(context)
        self._store.delete(ns, request.digest)
        return empty_pb2.Empty()

    def Read(self, request, context):
        ns = namespace.required(context)
        if request.offset < 0 or request.size < 0:
            raise InvalidArgument("read offset and size must not be negative")
        reader = self._store.reader_at(ns, request.digest)
        try:
            offset = request.offset
            end = reader.size if request.size == 0 else min(reader.size, request.offset + request.size)
            while offset < end:
                data = reader.read_at(offset, min(CHUNK, end - offset))
                if not data:
                    break
                yield pb.ReadContentResponse(offset=offset, data=data)
                offset += len(data)
        finally:
            reader.close()

    def Status(self, request, context):
        ns = namespace.required(context)
        return pb.StatusResponse(status=status(self._store.status(ns, request.ref)))

    def ListStatuses(self, request, context):
        ns = namespace.required(context)
        return pb.ListStatusesResponse(statuses=[status(s) for s in self._store.list_statuses(ns, *request.filters)])

    def Write(self, request_iterator, context) -> Iterator[pb.WriteContentResponse]:
        ns = namespace.required(context)
        writer = None
        try:
            for request in _requests(request_iterator, context):
                if writer is None:
                    writer = self._store.writer(ns, request.ref, request.total, request.expected)
                elif request.ref and request.ref != writer.ref:
                    raise InvalidArgument(f"write stream is for ingest {writer.ref}, not {request.ref[:80]}")
                if request.action == pb.STAT:
                    yield _write_response(pb.STAT, writer, writer.digest())
                    continue
                if request.action not in (pb.WRITE, pb.COMMIT):
                    raise InvalidArgument(f"unknown write action {request.action}")
                if request.data or request.action == pb.WRITE:
                    current = writer.status().offset
                    if request.offset < current:
                        writer.truncate(request.offset)
                    elif request.offset > current:
                        raise InvalidArgument(f"write at offset {request.offset} must be at the "
                                              f"ingest's current offset {current}")
                    writer.write(request.data)
                if request.action == pb.WRITE:
                    yield _write_response(pb.WRITE, writer)
                    continue
                digest = writer.digest()
                writer.commit(request.total, request.expected, dict(request.labels))
                yield _write_response(pb.COMMIT, writer, digest)
        finally:
            if writer is not None:
                writer.close()

    def Abort(self, request, context):
        ns = namespace.required(context)
        self._store.abort(ns, request.ref)
        return empty_pb2.Empty()


def register(server: grpc.Server, store: content.ContentStore) -> None:
    content_pb2_grpc.add_ContentServicer_to_server(ContentService(store), server)
