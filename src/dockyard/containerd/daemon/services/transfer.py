"""Transfer: pull, push, import and export of images, run in the daemon and watched by the
client as a stream (containerd's transfer service plays this part for `ctr` 2.x). Namespaced.

Each call runs its operation (`dockyard.containerd.transfer`) in a thread of its own, which
hands what it produces — progress events, archive chunks — to the call's thread through a
`_Feed`. The feed is bounded, so a slow client slows the operation instead of filling memory;
consecutive byte counts of one layer that the client has not taken yet are folded into the
latest. When the client goes away (cancels, disconnects) the feed is cancelled: the operation's
next event raises `_Cancelled` in its thread, which unwinds it (its lease goes, and with it
what it wrote, at the next garbage collection), and the call waits for that before it ends.
An operation's error ends the stream as the status of the `dockyard.errors` it raised
(daemon/errors.py). Registry credentials come in the request and go to the registry only:
nothing here logs a request.

The operations' modules (registry client, archives, layer code) are imported by the first call
that needs them, so a daemon that never transfers an image does not pay for them at start-up.
"""

from __future__ import annotations

import os
import shutil
import threading
from typing import Callable, Iterator

import grpc

from dockyard.api.events import image_pb2 as image_events
from dockyard.api.services.transfer.v1 import transfer_pb2 as pb
from dockyard.api.services.transfer.v1 import transfer_pb2_grpc
from dockyard.containerd import metadata
from dockyard.containerd.events import EventBroker
from dockyard.containerd.snapshots import unmount_all
from dockyard.containerd.transfer.stores import Stores
from dockyard.errors import InvalidArgument
from dockyard.images import reference
from dockyard.oci.image import Platform

from .. import namespace
from .images import message as image_message

CHUNK = 1 << 20          # bytes per Export message
_FEED_LIMIT = 64         # events or chunks waiting for the client
_POLL = 0.2              # how often a blocked producer looks whether the client left


class _Cancelled(Exception):
    """Raised in an operation's thread when its client has gone away."""


class _Feed:
    """From an operation's thread to its call's thread: `put` items (blocking while `limit`
    are waiting), then `finish` with the result or the exception; `take` everything waiting.
    `cancel` makes every later `put` raise `_Cancelled`."""

    def __init__(self, limit: int = _FEED_LIMIT):
        self._cond = threading.Condition()
        self._items: list = []
        self._latest: dict[str, int] = {}  # progress id → index of its last waiting event
        self._limit = limit
        self._finished = False
        self.result: object = None
        self.error: BaseException | None = None
        self.cancelled = False

    def put(self, item, fold: str | None = None) -> None:
        """Adds `item`; with `fold`, it replaces the waiting item of the same fold key when that
        is the last one waiting for that key (so one layer's byte counts never pile up)."""
        with self._cond:
            if fold is not None:
                i = self._latest.get(fold)
                if i is not None and _same_status(self._items[i], item):
                    self._items[i] = item
                    return
            while len(self._items) >= self._limit and not self.cancelled:
                self._cond.wait(_POLL)
            if self.cancelled:
                raise _Cancelled()
            if fold is not None:
                self._latest[fold] = len(self._items)
            self._items.append(item)
            self._cond.notify_all()

    def finish(self, result: object = None, error: BaseException | None = None) -> None:
        with self._cond:
            self.result, self.error, self._finished = result, error, True
            self._cond.notify_all()

    def take(self) -> tuple[list, bool]:
        """Waits for something; returns (items, finished). Once finished and drained, the
        items are empty."""
        with self._cond:
            while not self._items and not self._finished:
                self._cond.wait()
            items, self._items = self._items, []
            self._latest.clear()
            self._cond.notify_all()
            return items, self._finished and not items

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()


def _same_status(a, b) -> bool:
    return getattr(a, "status", None) == getattr(b, "status", None)


def _run(context: grpc.ServicerContext, name: str, operation: Callable[[_Feed], object],
         final: Callable[[object], list] = lambda result: []) -> Iterator:
    """Runs `operation(feed)` in a thread and yields what it puts in the feed, then
    `final(result)`; re-raises its error. Cancelled with the call."""
    feed = _Feed()

    def work() -> None:
        try:
            feed.finish(result=operation(feed))
        except BaseException as e:  # handed to the call's thread, which raises it
            feed.finish(error=e)

    context.add_callback(feed.cancel)  # the call ended: done, cancelled or the client gone
    thread = threading.Thread(target=work, name=f"transfer-{name}", daemon=True)
    thread.start()
    try:
        while True:
            items, finished = feed.take()
            yield from items
            if finished:
                break
    finally:
        feed.cancel()  # a no-op when the operation is over; stops it when we are closed early
        thread.join()
    if feed.error is not None:
        if feed.cancelled and not context.is_active():
            return  # the client left: nobody hears how the operation ended
        raise feed.error
    yield from final(feed.result)


def _progress_message(event) -> pb.Progress:
    return pb.Progress(id=event.id, status=event.status, current=event.current, total=event.total,
                       detail=event.detail)


def _reporter(feed: _Feed) -> Callable[[object], None]:
    """The `progress` callback of an operation: each event becomes a Progress message."""
    def report(event) -> None:
        feed.put(_progress_message(event), fold=event.id or None)
    return report


def _auth(options: pb.RegistryOptions):
    from dockyard.images.credentials import AuthConfig
    a = options.auth
    if not (a.username or a.password or a.identitytoken or a.registrytoken):
        return None
    return AuthConfig(username=a.username, password=a.password, identitytoken=a.identitytoken,
                      registrytoken=a.registrytoken)


def _registry_config(ref: str, options: pb.RegistryOptions):
    if not options.plain_http:
        return None
    from dockyard.images.transport import RegistryConfig
    return RegistryConfig(insecure=(reference.parse(ref).domain,))


def _platform(text: str) -> Platform | None:
    return Platform.parse(text) if text else None


class _RequestReader:
    """The data of an Import stream as a file (`read(n)`), for the operation's thread. A client
    that goes away mid-stream cancels the operation."""

    def __init__(self, first: pb.ImportRequest, requests: Iterator[pb.ImportRequest]):
        self._buffer = memoryview(first.data)
        self._requests = requests
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        while not self._buffer and not self._eof:
            try:
                self._buffer = memoryview(next(self._requests).data)
            except StopIteration:
                self._eof = True
            except grpc.RpcError:
                raise _Cancelled() from None
        if n is None or n < 0:
            out = [bytes(self._buffer)] + [r.data for r in self._rest()]
            self._buffer = memoryview(b"")
            return b"".join(out)
        data, self._buffer = bytes(self._buffer[:n]), self._buffer[n:]
        return data

    def _rest(self) -> Iterator[pb.ImportRequest]:
        try:
            yield from self._requests
        except grpc.RpcError:
            raise _Cancelled() from None
        self._eof = True


class _ChunkWriter:
    """A writable file whose bytes leave as Chunk messages of up to CHUNK bytes."""

    def __init__(self, feed: _Feed):
        self._feed = feed
        self._pending = bytearray()

    def write(self, data) -> int:
        self._pending += data
        while len(self._pending) >= CHUNK:
            self._feed.put(pb.Chunk(data=bytes(self._pending[:CHUNK])))
            del self._pending[:CHUNK]
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._pending:
            self._feed.put(pb.Chunk(data=bytes(self._pending)))
            self._pending.clear()


class TransferService(transfer_pb2_grpc.TransferServicer):
    """Images an operation makes are announced on the event broker (/images/create|update),
    as the Images service announces its own changes."""

    def __init__(self, stores: Stores, events: EventBroker, staging: str):
        self._stores = stores
        self._events = events
        self._staging = staging  # under the daemon's root: archives are unpacked here

    def _announce(self, ns: str, images: list[metadata.Image]) -> list[pb.Progress]:
        for image in images:
            topic = "/images/update" if image.created_at != image.updated_at else "/images/create"
            event = (image_events.ImageUpdate if topic == "/images/update" else image_events.ImageCreate)(
                name=image.name, labels=image.labels)
            self._events.publish(ns, topic, event)
        return [pb.Progress(images=[image_message(i) for i in images])] if images else []

    def Pull(self, request, context):
        ns = namespace.required(context)
        if not request.ref:
            raise InvalidArgument("pull needs an image reference")
        if request.max_concurrent_downloads < 0:
            raise InvalidArgument("max_concurrent_downloads must not be negative")
        platform = _platform(request.platform)
        auth, config = _auth(request.registry), _registry_config(request.ref, request.registry)

        def operation(feed: _Feed) -> metadata.Image:
            from dockyard.containerd.transfer import pull
            return pull.pull(self._stores, ns, request.ref, platform=platform, auth=auth,
                             registry_config=config, progress=_reporter(feed),
                             max_concurrent_downloads=request.max_concurrent_downloads or 3,
                             unpack=not request.skip_unpack)

        yield from _run(context, "pull", operation, lambda image: self._announce(ns, [image]))

    def Push(self, request, context):
        ns = namespace.required(context)
        if not request.ref:
            raise InvalidArgument("push needs an image reference")
        if request.chunk_size < 0:
            raise InvalidArgument("chunk_size must not be negative")
        auth, config = _auth(request.registry), _registry_config(request.ref, request.registry)

        def operation(feed: _Feed) -> str:
            from dockyard.containerd.transfer import push
            return push.push(self._stores, ns, request.ref, auth=auth, registry_config=config,
                             progress=_reporter(feed), chunk_size=request.chunk_size or None)

        yield from _run(context, "push", operation, lambda digest: [pb.Progress(digest=digest)])

    def Export(self, request, context):
        ns = namespace.required(context)
        if bool(request.names) == bool(request.snapshot_key):
            raise InvalidArgument("export needs either image names or a snapshot key")

        def operation(feed: _Feed) -> None:
            from dockyard.containerd.transfer import archive
            out = _ChunkWriter(feed)
            if request.names:
                archive.save(self._stores, ns, list(request.names), out)
            else:
                archive.export_snapshot(self._stores, ns, request.snapshot_key, out,
                                        staging=self._staging)
            out.close()

        yield from _run(context, "export", operation)

    def Import(self, request_iterator, context):
        ns = namespace.required(context)
        try:
            first = next(request_iterator)
        except StopIteration:
            raise InvalidArgument("import stream is empty: the first message carries the options") from None
        options = first.options
        fmt = options.format or "auto"
        if fmt not in ("auto", "docker-archive", "oci", "rootfs"):
            raise InvalidArgument(f"unknown import format {fmt[:40]!r}: want auto, docker-archive, oci or rootfs")
        if fmt == "rootfs" and not options.name:
            raise InvalidArgument("importing a rootfs tarball needs a name for the image")
        platform = _platform(options.platform)
        stream = _RequestReader(first, request_iterator)

        def operation(feed: _Feed) -> list[metadata.Image]:
            from dockyard.containerd.transfer import archive
            if fmt == "rootfs":
                return [archive.import_rootfs(self._stores, ns, stream, options.name, platform=platform,
                                              progress=_reporter(feed))]
            return archive.load(self._stores, ns, stream, progress=_reporter(feed), staging=self._staging)

        yield from _run(context, "import", operation, lambda images: self._announce(ns, images))


def _clear_staging(staging: str) -> None:
    """What a daemon that died mid-operation left in the staging directory: archives being
    read, and export mount points (unmounted first, so nothing below one is touched)."""
    try:
        leftovers = os.listdir(staging)
    except FileNotFoundError:
        return
    for name in leftovers:
        path = os.path.join(staging, name)
        unmount_all(path)
        shutil.rmtree(path, ignore_errors=True)


def register(server: grpc.Server, stores: Stores, events: EventBroker, root: str) -> None:
    staging = os.path.join(root, "transfer")
    _clear_staging(staging)  # the root is locked: no other daemon is using it
    transfer_pb2_grpc.add_TransferServicer_to_server(TransferService(stores, events, staging), server)
