"""Unpack an image's layers into snapshots named by chain ID (containerd `core/unpack/unpacker.go`,
`core/diff/apply`; image-spec config.md "Layer ChainID").

For layer i with chain ID C_i, unless a committed snapshot C_i exists already:

    prepare("extract-<uuid> C_i", parent=C_{i-1})   → an active snapshot
    apply the decompressed layer into its upper directory (overlay whiteouts as char 0:0 devices
        and the opaque xattr — the layer goes straight into the upperdir, as containerd's overlay
        applier does, without mounting anything)
    check the layer's DiffID (sha256 of the uncompressed tar) against config.rootfs.diff_ids[i]
    commit("C_i")

Then the config blob gets `containerd.io/gc.ref.snapshot.<snapshotter>=C_top`, so the snapshot
chain lives as long as something reaches the config. Until then a lease holds every snapshot key
we create (the caller's, or a short one of our own). Two unpacks of the same layer race on the
commit: the loser removes its active snapshot and uses the winner's.

A layer is read through a `LayerSource`: the content store by default (load, import), or — for
pull — a download still in flight, so extraction overlaps the download. In that case the bytes
are applied before the blob's digest is known to be right; the snapshot is only committed after
both the blob digest (the source's `verify`) and the DiffID check pass, and an active extract
snapshot is visible to nothing else, so an unverified layer is never used.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Callable, Protocol

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, SystemFailure, Unsupported
from dockyard.images import apply, compression
from dockyard.oci import digest as digests
from dockyard.oci.image import Descriptor, ImageConfig, Manifest, chain_ids, compression_of

from ..gc import LABEL_EXPIRE, LABEL_REF_SNAPSHOT
from ..metadata import Resource
from ..snapshots import Mount
from . import progress as p
from .stores import Stores

LEASE_EXPIRY = datetime.timedelta(hours=24)  # containerd's default lease lifetime
_READ = 1 << 20


class LayerSource(Protocol):
    """The compressed bytes of one layer."""

    def read(self, n: int) -> bytes: ...
    def verify(self) -> None: ...  # raises unless the blob behind it is complete and verified
    def ready(self) -> bool: ...  # whole blob present (extraction progress is only shown then)
    def close(self) -> None: ...


class ContentLayer:
    """A committed blob of the content store, read sequentially."""

    def __init__(self, stores: Stores, ns: str, desc: Descriptor):
        self._reader = stores.content.reader_at(ns, desc.digest)
        self._offset = 0

    def read(self, n: int) -> bytes:
        data = self._reader.read_at(self._offset, min(n, _READ) if n and n > 0 else _READ)
        self._offset += len(data)
        return data

    def verify(self) -> None:
        pass  # committed content was verified when it was written

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        self._reader.close()


OpenLayer = Callable[[int, Descriptor], LayerSource]


def temporary_lease(stores: Stores, ns: str, what: str) -> str:
    """A lease that expires by itself if we crash before deleting it."""
    expires = datetime.datetime.now(datetime.timezone.utc) + LEASE_EXPIRY
    lease = stores.leases.create(ns, labels={LABEL_EXPIRE: expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                             "dockyard.operation": what})
    return lease.id


def upper_dir(mounts: list[Mount]) -> str:
    """The directory an active snapshot's changes go to: the bind source of a first layer, the
    overlay's upperdir otherwise (containerd's getOverlayPath shortcut)."""
    if len(mounts) == 1 and mounts[0].type == "bind":
        return mounts[0].source
    if len(mounts) == 1 and mounts[0].type == "overlay":
        for option in mounts[0].options:
            if option.startswith("upperdir="):
                return option[len("upperdir="):]
    raise Unsupported("unpack: the snapshotter's mounts have no directory to apply a layer into")


class _Counting:
    """Counts the compressed bytes the decompressor takes, for Extracting progress."""

    def __init__(self, source: LayerSource, report: Callable[[int], None]):
        self._source, self._report, self.position = source, report, 0

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n if n and n > 0 else _READ)
        self.position += len(data)
        self._report(self.position)
        return data


def _snapshot_exists(stores: Stores, ns: str, key: str) -> bool:
    try:
        stores.snapshotter.stat(ns, key)
        return True
    except NotFound:
        return False


def unpack(stores: Stores, ns: str, manifest: Manifest, config: ImageConfig,
           progress: p.Callback | p.Reporter | None = None, *, lease: str = "",
           open_layer: OpenLayer | None = None) -> str:
    """Unpack `manifest`'s layers (all of whose blobs must be in content, unless `open_layer`
    supplies them); returns the top chain ID ("" for an image without layers)."""
    if len(manifest.layers) != len(config.diff_ids):
        raise InvalidArgument(f"image config has {len(config.diff_ids)} diff ids for "
                              f"{len(manifest.layers)} layers")
    report = p.reporter(progress)
    open_layer = open_layer or (lambda i, desc: ContentLayer(stores, ns, desc))
    own_lease = not lease
    if own_lease:
        lease = temporary_lease(stores, ns, "unpack")
    try:
        chains = chain_ids(config.diff_ids)
        parent = ""
        for i, desc in enumerate(manifest.layers):
            _unpack_layer(stores, ns, lease, desc, config.diff_ids[i], chains[i], parent,
                          lambda: open_layer(i, desc), report)
            parent = chains[i]
        if parent:
            label = LABEL_REF_SNAPSHOT + stores.snapshotter_name
            stores.content.update(ns, manifest.config.digest, {label: parent}, [f"labels.{label}"])
        return parent
    finally:
        if own_lease:
            stores.leases.delete(ns, lease)


def _unpack_layer(stores: Stores, ns: str, lease: str, desc: Descriptor, diff_id: str,
                  chain: str, parent: str, open_source: Callable[[], LayerSource],
                  report: p.Reporter) -> None:
    short = digests.short_id(desc.digest)
    kind = f"snapshots/{stores.snapshotter_name}"
    stores.leases.add_resource(ns, lease, Resource(chain, kind))
    if _snapshot_exists(stores, ns, chain):
        report(short, p.ALREADY_EXISTS)
        return
    hint = compression_of(desc.media_type)
    if hint is None:
        raise Unsupported(f"layer {desc.digest}: unsupported media type {desc.media_type[:100]!r}")
    key = f"extract-{uuid.uuid4().hex} {chain}"
    stores.leases.add_resource(ns, lease, Resource(key, kind))
    source = open_source()
    try:
        mounts = stores.snapshotter.prepare(ns, key, parent)
        try:
            def extracting(position: int) -> None:
                if source.ready():
                    report.bytes(short, p.EXTRACTING, position, desc.size)

            counted = _Counting(source, extracting)
            try:
                result = apply.apply_layer(compression.decompressed(counted, hint), upper_dir(mounts),
                                           whiteouts="overlay")
                while counted.read(_READ):  # the rest of the compressed stream, if any
                    pass
            except DockyardError:
                # A broken or corrupted download shows up here as a corrupt or short stream:
                # once the download has ended, its own error (digest mismatch, registry gone)
                # says better what went wrong.
                source.verify()
                raise
            source.verify()
            report(short, p.EXTRACTING, counted.position, desc.size)  # at least once, and at 100%
            if result.diff_id != diff_id:
                raise InvalidArgument(f"layer {desc.digest}: its content has diff id {result.diff_id}, "
                                      f"but the image config says {diff_id}")
            try:
                stores.snapshotter.commit(ns, chain, key)
            except Conflict:
                if not _snapshot_exists(stores, ns, chain):
                    raise
                stores.snapshotter.remove(ns, key)  # someone else unpacked it meanwhile
        except BaseException:
            try:
                stores.snapshotter.remove(ns, key)
            except (NotFound, SystemFailure):
                pass  # the lease still names it: GC removes it once the lease is gone
            raise
    finally:
        source.close()
    report(short, p.PULL_COMPLETE)
