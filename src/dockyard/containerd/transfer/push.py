"""Push an image from the local stores to a registry (distribution-spec "Pushing blobs",
"Cross-repository blob mount", "Pushing manifests"; moby `distribution/push_v2.go`, containerd
`core/remotes/docker/pusher.go`).

Blobs first — layers (up to N at a time), then the config — each one skipped when the registry
has it (HEAD), mounted from another repository of the same registry when a
`containerd.io/distribution.source.<host>` label says where it came from, uploaded otherwise
(monolithic, or chunked when `chunk_size` is given), streamed from the content store. Then the
manifests, children before the index that names them, the top one by tag. The bytes pushed are
the exact bytes stored, so what was pulled is pushed back with the same digests.

An index whose platform manifests are not all here (a pull fetches only one platform) cannot be
pushed whole — the registry would refuse an index naming manifests it has not got — so, as Docker
does, the manifest for this host's platform is pushed under the tag instead.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from dockyard.errors import InvalidArgument, NotFound, SystemFailure
from dockyard.images import reference
from dockyard.images.credentials import AuthConfig
from dockyard.images.registry import Registry
from dockyard.images.transport import RegistryConfig
from dockyard.oci import digest as digests
from dockyard.oci.image import (MAX_MANIFEST_SIZE, Descriptor, Index, Manifest, host_platform, parse_manifest,
                                select_manifest)

from . import progress as p
from .pull import LABEL_DISTRIBUTION_SOURCE, add_labels, content_present
from .stores import Stores



class _Push:
    def __init__(self, stores: Stores, ns: str, named: reference.Reference, registry, report: p.Reporter,
                 chunk_size: int | None, concurrency: int):
        self.stores, self.ns, self.named, self.registry, self.report = stores, ns, named, registry, report
        self.chunk_size, self.concurrency = chunk_size, concurrency
        self.repo = named.path
        self.source_key = LABEL_DISTRIBUTION_SOURCE + named.domain

    def read(self, desc: Descriptor, limit: int) -> bytes:
        if desc.size > limit:
            raise InvalidArgument(f"{desc.digest} is {desc.size} bytes, larger than the {limit} byte limit")
        reader = self.stores.content.reader_at(self.ns, desc.digest)
        try:
            data = reader.read_at(0, desc.size)
        finally:
            reader.close()
        if len(data) != desc.size or digests.sha256(data) != desc.digest:
            raise SystemFailure(f"content {desc.digest} in the store does not match its digest")
        return data

    def blob(self, desc: Descriptor, show: bool) -> None:
        short = digests.short_id(desc.digest)

        def say(status: str) -> None:
            if show:
                self.report(short, status)

        if self.registry.blob_exists(self.repo, desc.digest):
            say(p.LAYER_EXISTS)
            self._remember(desc)
            return
        sources = self.stores.content.info(self.ns, desc.digest).labels.get(self.source_key, "")
        for other in sorted(filter(None, sources.split(","))):
            if other != self.repo and self.registry.mount_blob(self.repo, desc.digest, other):
                say(p.mounted_from(other))
                self._remember(desc)
                return
        reader = self.stores.content.reader_at(self.ns, desc.digest)
        try:
            def read_at(offset: int, n: int) -> bytes:
                data = reader.read_at(offset, n)
                if show:
                    self.report.bytes(short, p.PUSHING, offset + len(data), desc.size)
                return data

            self.registry.upload_blob(self.repo, desc.digest, desc.size, read_at, chunk_size=self.chunk_size)
        finally:
            reader.close()
        say(p.PUSHED)
        self._remember(desc)

    def _remember(self, desc: Descriptor) -> None:
        # Where the blob now is, for cross-repository mounts by later pushes (containerd does so).
        add_labels(self.stores, self.ns, desc.digest, {self.source_key: self.repo})

    def manifest(self, desc: Descriptor, data: bytes, manifest: Manifest, tag: str) -> str:
        """The manifest's blobs, then the manifest under `tag` (or its digest)."""
        for layer in manifest.layers:
            self.report(digests.short_id(layer.digest), p.PREPARING)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="push") as pool:
            for j, layer in enumerate(manifest.layers):
                if j >= self.concurrency:
                    self.report(digests.short_id(layer.digest), p.WAITING)
            seen, futures = set(), []
            for layer in manifest.layers:
                if layer.digest not in seen:
                    seen.add(layer.digest)
                    futures.append(pool.submit(self.blob, layer, True))
            for f in futures:
                f.result()
        self.blob(manifest.config, False)
        return self.put(desc, data, tag)

    def put(self, desc: Descriptor, data: bytes, ref: str) -> str:
        pushed = self.registry.put_manifest(self.repo, ref, data, desc.media_type)
        if pushed and pushed != desc.digest:
            raise SystemFailure(f"registry {self.named.domain} stored manifest {desc.digest} as {pushed}")
        self._remember(desc)
        return desc.digest

    def run(self) -> tuple[Descriptor, str]:
        named = self.named
        try:
            image = self.stores.images.get(self.ns, str(named))
        except NotFound:
            raise NotFound(f"image {named.familiar()} not found: tag an image with that name to push it") from None
        tag = named.digest or named.tag
        self.report("", p.push_refers_to(named.name))
        target = Descriptor(image.target.media_type, image.target.digest, image.target.size)
        data = self.read(target, MAX_MANIFEST_SIZE)
        doc = parse_manifest(data, target.media_type)
        if isinstance(doc, Manifest):
            return target, self.manifest(target, data, doc, tag)
        children = [d for d in doc.manifests if content_present(self.stores, self.ns, d.digest)]
        if len(children) == len(doc.manifests):
            for child in children:
                child_data = self.read(child, MAX_MANIFEST_SIZE)
                child_doc = parse_manifest(child_data, child.media_type)
                if isinstance(child_doc, Manifest):
                    self.manifest(child, child_data, child_doc, child.digest)
                else:
                    raise InvalidArgument(f"index {target.digest}: nested index {child.digest} is not supported")
            return target, self.put(target, data, tag)
        if named.digest:
            raise NotFound(f"index {target.digest} cannot be pushed by digest: not all of its manifests are here")
        chosen = select_manifest(Index(doc.media_type, tuple(children), doc.annotations), host_platform())
        child_data = self.read(chosen, MAX_MANIFEST_SIZE)
        child_doc = parse_manifest(child_data, chosen.media_type)
        if not isinstance(child_doc, Manifest):
            raise InvalidArgument(f"index {target.digest}: entry {chosen.digest} is not an image manifest")
        self.report("", p.PARTIAL_INDEX)
        chosen = Descriptor(chosen.media_type, chosen.digest, chosen.size)
        return chosen, self.manifest(chosen, child_data, child_doc, tag)


def push(stores: Stores, ns: str, ref: str, *, auth: AuthConfig | None = None,
         registry_config: RegistryConfig | None = None, progress: p.Callback | p.Reporter | None = None,
         chunk_size: int | None = None, max_concurrent_uploads: int = 3) -> str:
    """Push the local image named `ref` to its registry; returns the digest of the manifest
    (or index) pushed under the tag."""
    if not isinstance(max_concurrent_uploads, int) or max_concurrent_uploads < 1:
        raise InvalidArgument("max concurrent uploads must be at least 1")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise InvalidArgument("chunk size must be a positive number of bytes")
    named = reference.parse(ref)
    registry = Registry(named.domain, auth, registry_config or RegistryConfig())
    report = p.reporter(progress)
    try:
        job = _Push(stores, ns, named, registry, report, chunk_size, max_concurrent_uploads)
        desc, digest = job.run()
        report("", p.pushed_digest(named.tag or named.digest, digest, desc.size))
        return digest
    finally:
        registry.close()
