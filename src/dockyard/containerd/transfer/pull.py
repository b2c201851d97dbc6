"""Pull an image from a registry into the local stores (distribution-spec "Pulling manifests",
"Pulling blobs"; containerd `core/remotes/docker`, `core/unpack`; moby `distribution/pull_v2.go`).

    resolve the reference → manifest or index (verified against the requested digest, if any)
    → the platform's manifest (image-index.md; variant-aware selection in oci.image)
    → config (size-capped, verified) → layers: missing blobs downloaded N at a time into
      content ingests, each verified by size and digest at commit; unpacked in layer order as the
      bytes arrive (a layer's extraction reads its ingest while it is still being written, see
      unpack.py) → image record.

Resilience: a blob whose connection drops mid-body is resumed from its ingest offset (a Range
request); an ingest left by a pull that died is resumed the same way. Blobs already in the content
store are not fetched, and chain-ID snapshots that exist are not unpacked again.

What is written is held by a lease from the first byte; labels link it all to the image (index →
`gc.ref.content.m.<i>`, manifest → `gc.ref.content.config` and `.l.<i>`, config →
`gc.ref.snapshot.<snapshotter>`), and the lease is deleted at the end. So after any failure —
digest mismatch, a truncated or vanished registry, a platform that is not there — the partial
pull is garbage for the next collection, and every ingest this pull opened is aborted.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
from dockyard.images import reference
from dockyard.images.credentials import AuthConfig
from dockyard.images.registry import Registry
from dockyard.images.transport import RegistryConfig
from dockyard.oci import digest as digests
from dockyard.oci.image import (MAX_CONFIG_SIZE, Descriptor, Index, Manifest, Platform, host_platform, matches,
                                parse_config, parse_manifest, select_manifest)

from ..gc import LABEL_REF_CONTENT
from ..metadata import Descriptor as TargetDescriptor, Image, Resource
from . import progress as p
from .stores import Stores
from .unpack import ContentLayer, temporary_lease, unpack as unpack_layers


LABEL_DISTRIBUTION_SOURCE = "containerd.io/distribution.source."
_CHUNK = 256 << 10
_WAIT_FOR_OTHER_WRITER = 0.05
_MAX_RESUMES = 5  # drops mid-body that still made progress, beyond `retries`


class _Cancelled(Exception):
    pass


def content_present(stores: Stores, ns: str, digest: str) -> bool:
    try:
        stores.content.info(ns, digest)
        return True
    except NotFound:
        return False


def add_labels(stores: Stores, ns: str, digest: str, labels: dict[str, str]) -> None:
    """Set `labels` on a blob, merging distribution-source repositories (comma-separated, as
    containerd keeps them) instead of replacing them."""
    info = stores.content.info(ns, digest)
    changes = {}
    for key, value in labels.items():
        if key.startswith(LABEL_DISTRIBUTION_SOURCE) and info.labels.get(key):
            repos = set(info.labels[key].split(",")) | set(value.split(","))
            value = ",".join(sorted(repos))
        if info.labels.get(key) != value:
            changes[key] = value
    if changes:
        stores.content.update(ns, digest, changes, [f"labels.{k}" for k in changes])


def open_writer(stores: Stores, ns: str, desc: Descriptor, cancelled: threading.Event | None = None):
    """A writer for the ingest `pull-<digest>` (resuming what is there), or None once the blob is
    in content. While another pull holds that ingest, wait for it to finish."""
    while True:
        if cancelled is not None and cancelled.is_set():
            raise _Cancelled()
        try:
            return stores.content.writer(ns, f"pull-{desc.digest}", total=desc.size, expected=desc.digest)
        except Conflict:
            if content_present(stores, ns, desc.digest):
                return None
            time.sleep(_WAIT_FOR_OTHER_WRITER)


def store_bytes(stores: Stores, ns: str, desc: Descriptor, data: bytes, labels: dict[str, str]) -> None:
    """Write a small verified document (manifest, index, config) into content."""
    if len(data) != desc.size or digests.sha256(data) != desc.digest:
        raise InvalidArgument(f"{desc.digest}: content does not match its descriptor")
    writer = open_writer(stores, ns, desc)
    if writer is None:
        add_labels(stores, ns, desc.digest, labels)
        return
    try:
        if writer.status().offset:
            writer.truncate(0)
        writer.write(data)
        writer.commit(desc.size, desc.digest, labels)
    except Conflict:
        add_labels(stores, ns, desc.digest, labels)  # committed by someone else meanwhile
    finally:
        writer.close()


class _Download:
    """One blob fetched into a content ingest, readable (by the unpacker) while it arrives."""

    def __init__(self, job: "_Pull", desc: Descriptor, labels: dict[str, str], show: bool):
        self._job, self.desc, self._labels, self._show = job, desc, labels, show
        self.short = digests.short_id(desc.digest)
        self._cond = threading.Condition()
        self._fd: int | None = None  # the ingest's data file, while we write it
        self._written = 0
        self._done = False
        self._error: BaseException | None = None
        self.fetched = False  # bytes came from the registry (not already present)

    # -- the writer side, in a worker thread --

    def run(self) -> None:
        error = None
        try:
            self._fetch()
        except BaseException as e:  # handed to whoever reads or waits
            error = e
            self._job.fail(e)
        with self._cond:
            self._error, self._done = error, True
            self._cond.notify_all()

    def _report(self, status: str, current: int = 0) -> None:
        # Only "Downloading" carries a byte count (Docker's progressDetail); the others are words.
        if self._show:
            self._job.report(self.short, status, current, self.desc.size if status == p.DOWNLOADING else 0)

    def _fetch(self) -> None:
        job, desc = self._job, self.desc
        writer = open_writer(job.stores, job.ns, desc, job.cancelled)
        if writer is None:
            add_labels(job.stores, job.ns, desc.digest, self._labels)
            self._report(p.DOWNLOAD_COMPLETE)
            return
        committed = False
        try:
            offset = writer.status().offset
            if offset > desc.size:
                writer.truncate(0)
                offset = 0
            path = getattr(writer, "path", None)
            if path is not None:  # a local ingest: the unpacker may read it as it grows
                fd = os.open(os.path.join(path, "data"), os.O_RDONLY | os.O_CLOEXEC)
                with self._cond:
                    self._fd, self._written = fd, offset
                    self._cond.notify_all()
            self.fetched = True
            self._download(writer, offset)
            self._report(p.VERIFYING)
            try:
                writer.commit(desc.size, desc.digest, self._labels)
            except InvalidArgument as e:
                raise InvalidArgument(f"blob {desc.digest} from {job.where}: downloaded content does not "
                                      f"match its digest ({e})") from None
            except Conflict:
                add_labels(job.stores, job.ns, desc.digest, self._labels)  # a racing pull won
            committed = True
            self._report(p.DOWNLOAD_COMPLETE)
        finally:
            writer.close()
            if not committed:
                try:
                    job.stores.content.abort(job.ns, f"pull-{desc.digest}")
                except NotFound:
                    pass

    def _download(self, writer, offset: int) -> None:
        """Fetch from `offset` to the end; a connection lost mid-body resumes where it broke.
        Opening a connection is retried inside the registry client already; here we give up
        after `retries` drops in a row without progress, or `retries + _MAX_RESUMES` in all."""
        job, desc = self._job, self.desc
        drops = stalled = 0
        self._report(p.DOWNLOADING, offset)
        while offset < desc.size:
            if job.cancelled.is_set():
                raise _Cancelled()
            stream = job.registry.open_blob(job.repo, desc.digest, offset)
            start = offset
            try:
                while offset < desc.size:
                    chunk = stream.read(min(_CHUNK, desc.size - offset))
                    if not chunk:
                        break
                    writer.write(chunk)
                    offset += len(chunk)
                    with self._cond:
                        self._written = offset
                        self._cond.notify_all()
                    if self._show:
                        job.report.bytes(self.short, p.DOWNLOADING, offset, desc.size)
                    if job.cancelled.is_set():
                        raise _Cancelled()
                if offset < desc.size:
                    raise Unavailable(f"registry {job.where}: blob {desc.digest} ended after "
                                      f"{offset} of {desc.size} bytes")
            except (Unavailable, OSError, http.client.HTTPException) as e:
                drops += 1
                stalled = 0 if offset > start else stalled + 1
                if stalled > job.retries or drops > job.retries + _MAX_RESUMES:
                    if isinstance(e, Unavailable):
                        raise
                    raise Unavailable(f"registry {job.where}: blob {desc.digest}: {e}") from None
                time.sleep(min(job.backoff * 2 ** (drops - 1), 2))
            finally:
                stream.close()

    # -- the reader side --

    def source(self) -> "_Reader":
        return _Reader(self)

    def wait(self) -> None:
        with self._cond:
            while not self._done:
                self._cond.wait()
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        with self._cond:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class _Reader:
    """A LayerSource over a _Download: reads the ingest as bytes land, or the committed blob."""

    def __init__(self, download: _Download):
        self._d = download
        self._pos = 0
        self._blob: ContentLayer | None = None

    def read(self, n: int) -> bytes:
        d = self._d
        if self._blob is not None:
            return self._blob.read(n)
        with d._cond:
            while True:
                if d._error is not None:
                    raise d._job.error or d._error
                if d._job.error is not None:
                    raise d._job.error
                if d._fd is not None and self._pos < d._written:
                    fd, available = d._fd, d._written - self._pos
                    break
                if d._done:
                    if d._fd is None or self._pos:
                        if self._pos:
                            return b""
                        # Never saw the ingest (the blob was there, or another pull wrote it).
                        self._blob = ContentLayer(d._job.stores, d._job.ns, d.desc)
                        return self._blob.read(n)
                    return b""
                d._cond.wait()
        data = os.pread(fd, min(n, available), self._pos)
        self._pos += len(data)
        return data

    def verify(self) -> None:
        self._d.wait()

    def ready(self) -> bool:
        with self._d._cond:
            return self._d._done

    def close(self) -> None:
        if self._blob is not None:
            self._blob.close()


class _Pull:
    def __init__(self, stores: Stores, ns: str, named: reference.Reference, registry, report: p.Reporter,
                 lease: str, config: RegistryConfig):
        self.stores, self.ns, self.named, self.registry, self.report = stores, ns, named, registry, report
        self.lease, self.retries, self.backoff = lease, config.retries, config.retry_backoff
        self.repo = named.path
        self.where = f"{named.domain}/{named.path}"
        self.source_label = {LABEL_DISTRIBUTION_SOURCE + named.domain: named.path}
        self.cancelled = threading.Event()
        self.error: BaseException | None = None  # the first download failure

    def fail(self, error: BaseException) -> None:
        """A download failed: stop the others (and the unpacker, at its next read)."""
        if not isinstance(error, _Cancelled) and self.error is None:
            self.error = error
        self.cancelled.set()

    def hold(self, digest: str) -> None:
        self.stores.leases.add_resource(self.ns, self.lease, Resource(digest, "content"))

    def manifest(self, ref: str, expected: Descriptor | None):
        fetched = self.registry.get_manifest(self.repo, ref)
        if expected is not None and (fetched.digest != expected.digest or len(fetched.data) != expected.size):
            raise InvalidArgument(f"manifest {expected.digest} from {self.where}: the registry sent "
                                  f"different content ({fetched.digest}, {len(fetched.data)} bytes)")
        doc = parse_manifest(fetched.data, fetched.media_type)
        return fetched, doc, Descriptor(doc.media_type, fetched.digest, len(fetched.data))

    def config(self, desc: Descriptor) -> bytes:
        if desc.size > MAX_CONFIG_SIZE:
            raise InvalidArgument(f"image config {desc.digest} is {desc.size} bytes, larger than the "
                                  f"{MAX_CONFIG_SIZE} byte limit")
        self.hold(desc.digest)
        if content_present(self.stores, self.ns, desc.digest):
            add_labels(self.stores, self.ns, desc.digest, self.source_label)
        else:
            download = _Download(self, desc, dict(self.source_label), show=False)
            try:
                download.run()
                download.wait()
            finally:
                download.close()
        reader = self.stores.content.reader_at(self.ns, desc.digest)
        try:
            return reader.read_at(0, desc.size)
        finally:
            reader.close()

    def run(self, want: Platform, explicit_platform: bool, concurrency: int, unpack: bool) -> Image:
        named, stores, ns = self.named, self.stores, self.ns
        fetched, doc, target = self.manifest(named.object, None)
        # After the manifest, as moby's pull_v2: a registry that cannot be reached prints nothing.
        self.report(named.tag or named.digest, p.pulling_from(named.path))
        if named.digest and fetched.digest != named.digest:
            raise InvalidArgument(f"manifest for {named}: the registry sent {fetched.digest}")
        if isinstance(doc, Index):
            chosen = select_manifest(doc, want)
            m_fetched, manifest, m_desc = self.manifest(chosen.digest, chosen)
            if not isinstance(manifest, Manifest):
                raise InvalidArgument(f"index {target.digest}: entry {chosen.digest} is not an image manifest")
            self.hold(target.digest)
            store_bytes(stores, ns, target, fetched.data,
                        {**{f"{LABEL_REF_CONTENT}.m.{i}": d.digest for i, d in enumerate(doc.manifests)},
                         **self.source_label})
        else:
            m_fetched, manifest, m_desc = fetched, doc, target
        config_bytes = self.config(manifest.config)
        config = parse_config(config_bytes)
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidArgument(f"image {named}: config has {len(config.diff_ids)} diff ids for "
                                  f"{len(manifest.layers)} layers")
        if (explicit_platform and not isinstance(doc, Index) and config.os and config.architecture
                and not matches(want, config.platform)):
            raise NotFound(f"image with reference {named.familiar()} was found but does not match the "
                           f"specified platform: wanted {want.format()}, actual: {config.platform.format()}")
        self.hold(m_desc.digest)
        labels = {f"{LABEL_REF_CONTENT}.config": manifest.config.digest, **self.source_label}
        labels.update({f"{LABEL_REF_CONTENT}.l.{i}": d.digest for i, d in enumerate(manifest.layers)})
        store_bytes(stores, ns, m_desc, m_fetched.data, labels)

        downloads = self.layers(manifest, concurrency, unpack)
        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pull")
        try:
            for d in downloads.values():
                executor.submit(d.run)
            if unpack:
                def open_layer(i: int, desc: Descriptor):
                    if self.error is not None:
                        raise self.error
                    d = downloads.get(desc.digest)
                    return d.source() if d is not None else ContentLayer(stores, ns, desc)

                unpack_layers(stores, ns, manifest, config, self.report, lease=self.lease, open_layer=open_layer)
            for d in downloads.values():
                d.wait()
                if not unpack:
                    self.report(d.short, p.PULL_COMPLETE)
        except BaseException:
            self.cancelled.set()
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            for d in downloads.values():
                d.close()
        return self.record(target, any(d.fetched for d in downloads.values()))

    def layers(self, manifest: Manifest, concurrency: int, unpack: bool) -> dict[str, _Download]:
        """Downloads for the blobs not in content yet, in layer order (so the layer the unpacker
        needs next is fetched first), one per distinct digest."""
        downloads: dict[str, _Download] = {}
        for desc in manifest.layers:
            self.hold(desc.digest)
            if desc.digest in downloads:
                continue
            if content_present(self.stores, self.ns, desc.digest):
                add_labels(self.stores, self.ns, desc.digest, self.source_label)
                if not unpack:
                    self.report(digests.short_id(desc.digest), p.ALREADY_EXISTS)
                continue
            downloads[desc.digest] = _Download(self, desc, dict(self.source_label), show=True)
        for d in downloads.values():
            self.report(d.short, p.PULLING_FS_LAYER)
        for j, d in enumerate(downloads.values()):
            if j >= concurrency:
                self.report(d.short, p.WAITING)
        return downloads

    def record(self, target: Descriptor, fetched_any: bool) -> Image:
        named, images = self.named, self.stores.images
        name = str(named)
        image = Image(name, TargetDescriptor(target.media_type, target.digest, target.size))
        try:
            existing = images.get(self.ns, name)
        except NotFound:
            existing = None
        if existing is None:
            try:
                image = images.create(self.ns, image)
            except Conflict:
                existing = images.get(self.ns, name)
        if existing is not None:
            if existing.target != image.target:
                image = images.update(self.ns, replace(existing, target=image.target), ["target"])
            else:
                image = existing
        self.report("", p.digest_line(target.digest))
        same = existing is not None and existing.target.digest == target.digest and not fetched_any
        familiar = named.familiar()
        self.report("", p.up_to_date(familiar) if same else p.downloaded_newer(familiar))
        return image


def pull(stores: Stores, ns: str, ref: str, *, platform: Platform | None = None,
         auth: AuthConfig | None = None, registry_config: RegistryConfig | None = None,
         progress: p.Callback | p.Reporter | None = None, max_concurrent_downloads: int = 3,
         unpack: bool = True) -> Image:
    """Pull `ref` (Docker's reference syntax, normalized) for `platform` (default: this host's)
    into namespace `ns`; returns the image record, named by the normalized reference."""
    if not isinstance(max_concurrent_downloads, int) or max_concurrent_downloads < 1:
        raise InvalidArgument("max concurrent downloads must be at least 1")
    named = reference.parse(ref)
    want = (platform or host_platform()).normalized()
    config = registry_config or RegistryConfig()
    registry = Registry(named.domain, auth, config)
    report = p.reporter(progress)
    lease = temporary_lease(stores, ns, "pull")
    job = _Pull(stores, ns, named, registry, report, lease, config)
    try:
        try:
            return job.run(want, platform is not None, max_concurrent_downloads, unpack)
        except _Cancelled:  # a download stopped because another failed: report that one
            raise job.error or Unavailable(f"pull of {named} was cancelled") from None
    finally:
        stores.leases.delete(ns, lease)
        registry.close()
