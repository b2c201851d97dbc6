"""Images in and out of the local stores as files: `docker save`/`docker load` archives, a root
filesystem tarball imported as a one-layer image (`docker import`), and a snapshot's filesystem
exported as a tarball (`docker export`). The archive formats themselves are
`dockyard.images.archive`'s; this module moves their blobs into and out of the content store,
names the images and unpacks them (`unpack`).

What a load or an import writes is held by a lease until the image records that reach it exist
(the content carries containerd's `gc.ref` labels, as pull sets them), so a failure leaves
nothing that garbage collection cannot remove. Archives are staged under the daemon's root,
never in memory, and the staging directory goes when the operation ends.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile
import uuid
from typing import BinaryIO, Callable, Iterable

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.images import archive as image_archive
from dockyard.images import compression, diff, reference
from dockyard.oci import digest as digests
from dockyard.oci import image as oci

from ..gc import LABEL_REF_CONTENT
from ..metadata import Descriptor, Image, Resource
from ..snapshots import Kind, mount_all, read_only_mounts, unmount_all
from . import progress as p
from . import unpack
from .stores import Stores

_CHUNK = 1 << 20
DANGLING = "dangling"  # the name of an image an archive gives no name: dangling@<digest>


# --- content ---


def _read_blob(stores: Stores, ns: str, digest: str, limit: int, what: str) -> bytes:
    reader = stores.content.reader_at(ns, digest)
    try:
        if reader.size > limit:
            raise InvalidArgument(f"{what} {digest} is {reader.size} bytes, more than {limit}")
        return reader.read_at(0, reader.size) if reader.size else b""
    finally:
        reader.close()


class _BlobFile:
    """A committed blob as a sequential file, for write_archive."""

    def __init__(self, stores: Stores, ns: str, digest: str):
        self._reader = stores.content.reader_at(ns, digest)
        self._offset = 0

    def read(self, n: int = -1) -> bytes:
        n = _CHUNK if n is None or n < 0 else min(n, _CHUNK)
        data = self._reader.read_at(self._offset, n) if n else b""
        self._offset += len(data)
        return data

    def close(self) -> None:
        self._reader.close()


def _exists(stores: Stores, ns: str, digest: str) -> bool:
    try:
        stores.content.info(ns, digest)
        return True
    except NotFound:
        return False


def _ingest(stores: Stores, ns: str, lease: str, digest: str, size: int,
            chunks: Callable[[], Iterable[bytes]]) -> None:
    """Puts a blob whose digest and size are known into content (verified at commit), under
    `lease`; nothing to do when the namespace has it already."""
    stores.leases.add_resource(ns, lease, Resource(digest, "content"))
    if _exists(stores, ns, digest):
        return
    try:
        writer = stores.content.writer(ns, f"import-{digest}", total=size, expected=digest)
    except Conflict:
        if _exists(stores, ns, digest):
            return  # written meanwhile by someone else
        raise
    try:
        if writer.status().offset:
            writer.truncate(0)  # a leftover of an earlier attempt: start clean
        for chunk in chunks():
            writer.write(chunk)
        writer.commit(size, digest)
    except Conflict:
        if not _exists(stores, ns, digest):
            raise
    finally:
        writer.close()


def _file_chunks(path: str) -> Callable[[], Iterable[bytes]]:
    def chunks():
        with open(path, "rb") as f:
            while data := f.read(_CHUNK):
                yield data
    return chunks


def _label(stores: Stores, ns: str, digest: str, labels: dict[str, str]) -> None:
    if labels:
        stores.content.update(ns, digest, labels, [f"labels.{k}" for k in labels])


def _manifest_labels(manifest: oci.Manifest) -> dict[str, str]:
    """containerd's gc references of a manifest: its config and its layers."""
    labels = {f"{LABEL_REF_CONTENT}.config": manifest.config.digest}
    labels.update({f"{LABEL_REF_CONTENT}.l.{i}": layer.digest for i, layer in enumerate(manifest.layers)})
    return labels


def _index_labels(index: oci.Index) -> dict[str, str]:
    return {f"{LABEL_REF_CONTENT}.m.{i}": m.digest for i, m in enumerate(index.manifests)}


# --- images ---


def _record(stores: Stores, ns: str, name: str, target: oci.Descriptor) -> Image:
    """Points `name` at `target`, creating the record or moving an existing one."""
    desc = Descriptor(target.media_type, target.digest, target.size, dict(target.annotations))
    try:
        return stores.images.create(ns, Image(name, desc))
    except Conflict:
        return stores.images.update(ns, Image(name, desc), ["target"])


def find_image(stores: Stores, ns: str, name: str) -> Image:
    """The image named `name` exactly, or else by its normalized reference ("busybox" →
    docker.io/library/busybox:latest)."""
    try:
        return stores.images.get(ns, name)
    except NotFound:
        try:
            normalized = str(reference.parse(name))
        except InvalidArgument:
            raise NotFound(f"image {name[:200]}: not found") from None
        if normalized == name:
            raise
        return stores.images.get(ns, normalized)


def _as_oci(d: Descriptor) -> oci.Descriptor:
    return oci.Descriptor(d.media_type, d.digest, d.size, dict(d.annotations))


def resolve(stores: Stores, ns: str, target: oci.Descriptor, platform: oci.Platform | None = None
            ) -> tuple[oci.Descriptor, oci.Manifest, oci.ImageConfig]:
    """The platform manifest `target` stands for (itself, or the best entry of an index among
    those in content), parsed, and its config."""
    manifest_desc = target
    if target.media_type in oci.INDEX_TYPES:
        index = oci.parse_manifest(_read_blob(stores, ns, target.digest, oci.MAX_MANIFEST_SIZE, "index"),
                                   target.media_type)
        if not isinstance(index, oci.Index):
            raise InvalidArgument(f"index {target.digest} is not an image index")
        present = tuple(m for m in index.manifests if _exists(stores, ns, m.digest))
        manifest_desc = oci.select_manifest(oci.Index(index.media_type, present, index.annotations),
                                            platform or oci.host_platform())
    elif target.media_type not in oci.MANIFEST_TYPES:
        raise InvalidArgument(f"image target has media type {target.media_type[:100]!r}, "
                              "not a manifest or an index")
    manifest = oci.parse_manifest(_read_blob(stores, ns, manifest_desc.digest, oci.MAX_MANIFEST_SIZE,
                                             "manifest"), manifest_desc.media_type)
    if not isinstance(manifest, oci.Manifest):
        raise InvalidArgument(f"manifest {manifest_desc.digest} is not an image manifest")
    config = oci.parse_config(_read_blob(stores, ns, manifest.config.digest, oci.MAX_CONFIG_SIZE, "config"))
    return manifest_desc, manifest, config


def _familiar(name: str) -> str:
    try:
        return reference.parse(name, default_tag=None).familiar()
    except InvalidArgument:
        return name


# --- save / load ---


def save(stores: Stores, ns: str, names: list[str], out: BinaryIO) -> None:
    """Writes the images `names` to `out` as `docker save` does (Docker 25's shape). An image
    whose target is an index only partly in content (a single-platform pull) is saved as its
    platform manifest, so the archive holds every blob it names."""
    if not names:
        raise InvalidArgument("save needs at least one image")
    images: dict[str, image_archive.ArchiveImage] = {}
    for name in names:
        image = find_image(stores, ns, name)
        target = _as_oci(image.target)
        manifest_desc, manifest, _ = resolve(stores, ns, target)
        if target.media_type in oci.INDEX_TYPES:
            index = oci.parse_manifest(_read_blob(stores, ns, target.digest, oci.MAX_MANIFEST_SIZE, "index"),
                                       target.media_type)
            if not all(_exists(stores, ns, m.digest) for m in index.manifests):
                target = manifest_desc
        key = target.digest
        if key in images:
            if image.name not in images[key].names:
                images[key].names.append(image.name)
            continue
        images[key] = image_archive.ArchiveImage([image.name], target, manifest_desc, manifest.config,
                                                 list(manifest.layers))
    image_archive.write_archive(out, list(images.values()),
                                lambda d: _BlobFile(stores, ns, d),
                                blob_size=lambda d: stores.content.info(ns, d).size)


def load(stores: Stores, ns: str, stream: BinaryIO, progress: p.Callback | None = None, *,
         staging: str) -> list[Image]:
    """Reads a `docker save` archive (any Docker version) or an OCI layout tar from `stream`
    (plain or compressed), puts its blobs into content, names and unpacks its images; returns
    the image records (one per name; an unnamed image is named dangling@<digest>)."""
    report = p.reporter(progress)
    os.makedirs(staging, mode=0o700, exist_ok=True)
    work = tempfile.mkdtemp(prefix="load-", dir=staging)
    lease = unpack.temporary_lease(stores, ns, "load")
    try:
        loaded = image_archive.read_archive(compression.decompressed(stream, what="archive"), work)
        for digest, path in sorted(loaded.blobs.items()):
            _ingest(stores, ns, lease, digest, os.path.getsize(path), _file_chunks(path))
        for image in loaded.images:
            for digest, data in image.synthesized.items():
                _ingest(stores, ns, lease, digest, len(data), lambda data=data: [data])
        made: list[Image] = []
        for image in loaded.images:
            made.extend(_load_image(stores, ns, lease, image, report))
        return made
    finally:
        stores.leases.delete(ns, lease)
        shutil.rmtree(work, ignore_errors=True)


def _load_image(stores: Stores, ns: str, lease: str, image: image_archive.LoadedImage,
                report: p.Reporter) -> list[Image]:
    target = image.target
    if target.media_type in oci.INDEX_TYPES:
        index = oci.parse_manifest(_read_blob(stores, ns, target.digest, oci.MAX_MANIFEST_SIZE, "index"),
                                   target.media_type)
        _label(stores, ns, target.digest, _index_labels(index))
        for m in index.manifests:
            if m.media_type in oci.MANIFEST_TYPES and _exists(stores, ns, m.digest):
                child = oci.parse_manifest(_read_blob(stores, ns, m.digest, oci.MAX_MANIFEST_SIZE, "manifest"),
                                           m.media_type)
                if isinstance(child, oci.Manifest):
                    _label(stores, ns, m.digest, _manifest_labels(child))
    manifest_desc, manifest, config = resolve(stores, ns, target)
    _label(stores, ns, manifest_desc.digest, _manifest_labels(manifest))
    unpack.unpack(stores, ns, manifest, config, report, lease=lease)
    names = image.names or [f"{DANGLING}@{target.digest}"]
    made = [_record(stores, ns, name, target) for name in names]
    for name in image.names:
        report("", f"Loaded image: {_familiar(name)}")
    if not image.names:
        report("", f"Loaded image ID: {manifest.config.digest}")
    return made


# --- import / export of a root filesystem ---


class _Hashing:
    """Reads through, hashing what passes: the DiffID of an uncompressed layer."""

    def __init__(self, stream):
        self._stream = stream
        self.hasher = digests.Hasher()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(_CHUNK if n is None or n < 0 else n)
        self.hasher.update(data)
        self.size += len(data)
        return data


class _Sink:
    """A content writer as the file a compressor writes to."""

    def __init__(self, writer):
        self._writer = writer

    def write(self, data) -> int:
        return self._writer.write(bytes(data))

    def flush(self) -> None:
        pass


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def import_rootfs(stores: Stores, ns: str, stream: BinaryIO, name: str, *,
                  platform: oci.Platform | None = None, progress: p.Callback | None = None) -> Image:
    """`docker import`: the tarball on `stream` (plain or compressed) becomes the single gzip
    layer of a new image `name` (a reference, normalized), with a config for `platform` (the
    host's by default) whose history says "Imported from -"; then it is unpacked."""
    ref = reference.parse(name)
    if ref.digest:
        raise InvalidArgument(f"import: {name[:200]} names a digest; give a tag")
    platform = platform or oci.host_platform()
    report = p.reporter(progress)
    lease = unpack.temporary_lease(stores, ns, "import")
    ingest = f"import-rootfs-{uuid.uuid4().hex}"
    stores.leases.add_resource(ns, lease, Resource(ingest, "ingests"))
    try:
        writer = stores.content.writer(ns, ingest)
        try:
            raw = _Hashing(compression.decompressed(stream, what="rootfs tarball"))
            gz = compression.compressor(_Sink(writer), "gzip")
            while data := raw.read(_CHUNK):
                gz.write(data)
            gz.close()
            if raw.size == 0:
                raise InvalidArgument("import: the rootfs tarball is empty")
            layer = oci.Descriptor(oci.DOCKER_LAYER_GZIP, writer.digest(), writer.status().offset)
            stores.leases.add_resource(ns, lease, Resource(layer.digest, "content"))
            try:
                writer.commit(layer.size, layer.digest)
            except Conflict:
                if not _exists(stores, ns, layer.digest):
                    raise
        finally:
            writer.close()
        created = _now()
        config_doc = {
            "architecture": platform.architecture, "os": platform.os,
            **({"variant": platform.variant} if platform.variant else {}),
            "created": created, "config": {},
            "rootfs": {"type": "layers", "diff_ids": [raw.hasher.digest()]},
            "history": [{"created": created, "comment": "Imported from -"}],
        }
        config_data = oci.canonical_json(config_doc)
        config_desc = oci.Descriptor(oci.DOCKER_CONFIG, digests.sha256(config_data), len(config_data))
        manifest = oci.Manifest(oci.DOCKER_MANIFEST, config_desc, (layer,))
        manifest_data = oci.canonical_json(manifest.to_dict())
        target = oci.Descriptor(oci.DOCKER_MANIFEST, digests.sha256(manifest_data), len(manifest_data))
        _ingest(stores, ns, lease, config_desc.digest, config_desc.size, lambda: [config_data])
        _ingest(stores, ns, lease, target.digest, target.size, lambda: [manifest_data])
        _label(stores, ns, target.digest, _manifest_labels(manifest))
        unpack.unpack(stores, ns, manifest, oci.parse_config(config_data), lease=lease)
        image = _record(stores, ns, str(ref), target)
        report("", config_desc.digest)  # all docker import prints: the image id
        return image
    finally:
        stores.leases.delete(ns, lease)
        with contextlib.suppress(NotFound):
            stores.content.abort(ns, ingest)


def export_snapshot(stores: Stores, ns: str, key: str, out: BinaryIO, *, staging: str) -> None:
    """`docker export`: the filesystem of snapshot `key` (a container's, active, or a committed
    layer's) as one tar on `out`, mounted read-only for the time it takes."""
    info = stores.snapshotter.stat(ns, key)
    view = ""
    if info.kind is Kind.COMMITTED:
        view = f"export-{uuid.uuid4().hex}"
        mounts = stores.snapshotter.view(ns, view, key)
    else:
        mounts = stores.snapshotter.mounts(ns, key)
    os.makedirs(staging, mode=0o700, exist_ok=True)
    target = tempfile.mkdtemp(prefix="export-", dir=staging)
    try:
        mount_all(read_only_mounts(mounts), target)
        try:
            diff.write_tree(target, out)
        finally:
            unmount_all(target)
    finally:
        os.rmdir(target)
        if view:
            stores.snapshotter.remove(ns, view)
