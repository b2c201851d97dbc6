"""The engine's images: Docker's image model over dockyard-containerd's Images, Content,
Snapshots and Transfer services (namespace `moby`).

An image record in containerd is a name ("docker.io/library/busybox:latest") pointing at a
manifest or an index. Docker's model groups those names by image ID — the digest of the image
config (Docker's classic image store; reference engine-api.md §1.3, spec ImageInspect.Id) — so
here an `ImageInfo` is one config with every record that reaches it: its RepoTags (the tagged
names, in Docker's familiar form) and RepoDigests (`repo@<target digest>`).

Lookups are Docker's (moby daemon/images `GetImage`): a full ID ("sha256:<64 hex>" or 64 hex),
a reference as typed ("busybox" = docker.io/library/busybox:latest, "repo@sha256:…" by the
digest of its manifest or index), or else a unique ID prefix ("3f57", "sha256:3f57"). A miss is
NotFound "No such image: <ref>", the 404 that makes `docker run` pull.

Manifests and configs are content-addressed, so what is read of them is cached by digest; the
records are listed again on every lookup (one call), so tags made by others are always seen.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import AsyncIterator

import grpc

from dockyard.api.services.content.v1 import content_pb2
from dockyard.api.services.images.v1 import images_pb2
from dockyard.api.services.snapshots.v1 import snapshots_pb2
from dockyard.api.services.transfer.v1 import transfer_pb2
from dockyard.api.types import descriptor_pb2
from dockyard.containerd.daemon.errors import from_rpc_error
from dockyard.errors import (Conflict, DockyardError, InvalidArgument, NotFound, Unauthenticated,
                             Unsupported)
from dockyard.images import reference
from dockyard.oci import image as oci

log = logging.getLogger(__name__)

DANGLING = "dangling"           # archive.DANGLING: the record name of an image loaded without one
SNAPSHOTTER = "overlayfs"       # dockyard-containerd's snapshotter (Driver in /info)
_FULL_ID = re.compile(r"(?:sha256:)?([0-9a-f]{64})\Z")
_ID_PREFIX = re.compile(r"(?:sha256:)?([0-9a-f]{1,63})\Z")
_CACHE_MAX = 1024
_CHUNK = 1 << 20


@dataclass
class ImageInfo:
    """One Docker image: a config and the records (names) that reach it.

    `config` is the image config's "config" object (Cmd, Entrypoint, Env, WorkingDir, User,
    Labels, StopSignal, Healthcheck, ExposedPorts, Volumes …: what a container starts from);
    `document` is the whole image config JSON (architecture, os, rootfs, history, created …).
    `top_chain_id` is the ChainID of the whole layer stack: the committed snapshot a container's
    snapshot is prepared from ("" for an image without layers)."""
    id: str                                     # "sha256:<config digest>"
    config: dict
    top_chain_id: str
    repo_tags: list[str]                        # ["busybox:latest", "127.0.0.1:5000/x:1"]
    repo_digests: list[str]                     # ["busybox@sha256:…"]
    target: oci.Descriptor                      # the manifest or index a record points at
    size: int                                   # bytes: unpacked layers (or compressed when unknown)
    document: dict = field(default_factory=dict)
    names: list[str] = field(default_factory=list)      # containerd record names, normalized
    manifest_digest: str = ""
    diff_ids: list[str] = field(default_factory=list)
    layer_sizes: list[int] = field(default_factory=list)  # compressed, per layer
    created: str = ""                           # the config's "created" (RFC 3339)
    record_created: float = 0.0                 # unix seconds: the oldest record's creation

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[-1][:12]

    @property
    def dangling(self) -> bool:
        return not self.repo_tags and not self.repo_digests

    @property
    def labels(self) -> dict:
        return dict(self.config.get("Labels") or {})

    @property
    def os(self) -> str:
        return self.document.get("os") or "linux"

    @property
    def architecture(self) -> str:
        return self.document.get("architecture") or ""

    @property
    def variant(self) -> str:
        return self.document.get("variant") or ""

    @property
    def created_unix(self) -> int:
        return _unix(self.created) or int(self.record_created)


@dataclass
class _Record:
    """A containerd image record resolved to its platform manifest and config."""
    name: str
    target: oci.Descriptor
    labels: dict
    created_at: float
    manifest_digest: str
    config_digest: str
    layers: list
    config: oci.ImageConfig


def _unix(text: str) -> int:
    """Unix seconds of an RFC 3339 time (any fraction digits), 0 when absent or unparseable."""
    if not text:
        return 0
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?\Z", text.strip())
    if not m:
        return 0
    zone = m.group(2) or "Z"
    try:
        when = datetime.datetime.fromisoformat(m.group(1) + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return 0
    return int(when.timestamp())


def familiar(name: str) -> str:
    """Docker's short form of a record name; names that are not references stay as they are."""
    try:
        return reference.parse(name, default_tag=None).familiar()
    except InvalidArgument:
        return name


def _names_of(records: list[_Record]) -> tuple[list[str], list[str]]:
    """RepoTags and RepoDigests of the records of one image."""
    tags: list[str] = []
    digests: list[str] = []
    for r in records:
        if r.name.startswith(DANGLING + "@"):
            continue
        try:
            ref = reference.parse(r.name, default_tag=None)
        except InvalidArgument:
            continue
        if ref.tag and not ref.digest:
            if ref.familiar() not in tags:
                tags.append(ref.familiar())
        rd = f"{ref.familiar_name()}@{ref.digest or r.target.digest}"
        if rd not in digests:
            digests.append(rd)
    return tags, digests


async def rpc(call):
    """Awaits a unary gRPC call, as the dockyard error its status means."""
    try:
        return await call
    except grpc.RpcError as e:
        raise from_rpc_error(e) from None


class Images:
    """The engine's image component (`daemon.images`)."""

    def __init__(self, daemon):
        self.daemon = daemon
        self._blobs: OrderedDict[str, bytes] = OrderedDict()   # manifests and configs by digest
        self._usage: dict[str, int] = {}                       # snapshot usage by chain id
        self._lock = asyncio.Lock()                            # tag/remove: one change at a time

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    @property
    def _ctr(self):
        return self.daemon.containerd

    # --- content ----------------------------------------------------------------------------

    async def _blob(self, digest: str, limit: int = oci.MAX_CONFIG_SIZE) -> bytes:
        data = self._blobs.get(digest)
        if data is not None:
            self._blobs.move_to_end(digest)
            return data
        parts, size = [], 0
        try:
            async for r in self._ctr.content.Read(content_pb2.ReadContentRequest(digest=digest)):
                parts.append(r.data)
                size += len(r.data)
                if size > limit:
                    raise InvalidArgument(f"blob {digest} is larger than {limit} bytes")
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        data = b"".join(parts)
        self._blobs[digest] = data
        if len(self._blobs) > _CACHE_MAX:
            self._blobs.popitem(last=False)
        return data

    async def _exists(self, digest: str) -> bool:
        if digest in self._blobs:
            return True
        try:
            await rpc(self._ctr.content.Info(content_pb2.InfoRequest(digest=digest)))
            return True
        except NotFound:
            return False

    async def _resolve_target(self, target: oci.Descriptor, platform: oci.Platform | None = None
                              ) -> tuple[str, oci.Manifest]:
        """The platform manifest `target` stands for: itself, or the best entry of an index
        among the manifests present in content (a single-platform pull keeps only one)."""
        digest, media_type = target.digest, target.media_type
        if media_type in oci.INDEX_TYPES:
            index = oci.parse_manifest(await self._blob(digest, oci.MAX_MANIFEST_SIZE), media_type)
            if not isinstance(index, oci.Index):
                raise InvalidArgument(f"{digest} is not an image index")
            present = tuple([m for m in index.manifests if await self._exists(m.digest)])
            chosen = oci.select_manifest(oci.Index(index.media_type, present, index.annotations),
                                         platform or oci.host_platform())
            digest, media_type = chosen.digest, chosen.media_type
        manifest = oci.parse_manifest(await self._blob(digest, oci.MAX_MANIFEST_SIZE), media_type)
        if not isinstance(manifest, oci.Manifest):
            raise InvalidArgument(f"{digest} is not an image manifest")
        return digest, manifest

    async def _record(self, image: images_pb2.Image) -> _Record | None:
        t = image.target
        target = oci.Descriptor(t.media_type, t.digest, t.size, dict(t.annotations))
        try:
            manifest_digest, manifest = await self._resolve_target(target)
            config = oci.parse_config(await self._blob(manifest.config.digest))
        except DockyardError as e:  # content half-gone, a foreign platform only, junk
            log.debug("image %s: not usable: %s", image.name, e)
            return None
        created = image.created_at.seconds + image.created_at.nanos / 1e9 if image.HasField("created_at") else 0.0
        return _Record(image.name, target, dict(image.labels), created, manifest_digest,
                       manifest.config.digest, list(manifest.layers), config)

    async def _records(self) -> list[_Record]:
        try:
            found = (await self._ctr.images.List(images_pb2.ListImagesRequest())).images
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        out = []
        for image in found:
            r = await self._record(image)
            if r is not None:
                out.append(r)
        return out

    async def _size(self, config: oci.ImageConfig, layers: list) -> int:
        """The unpacked size of the layer stack (Docker's Size), from the snapshots' usage;
        the compressed sizes where a snapshot is missing."""
        if not config.diff_ids:
            return 0
        total = 0
        for i, chain in enumerate(oci.chain_ids(config.diff_ids)):
            used = self._usage.get(chain)
            if used is None:
                try:
                    u = await rpc(self._ctr.snapshots.Usage(snapshots_pb2.UsageRequest(
                        snapshotter=SNAPSHOTTER, key=chain)))
                    used = self._usage[chain] = int(u.size)
                except DockyardError:
                    used = layers[i].size if i < len(layers) else 0
            total += used
        return total

    async def _info(self, records: list[_Record]) -> ImageInfo:
        """The image of `records` (all reaching one config)."""
        records = sorted(records, key=lambda r: (r.name.startswith(DANGLING + "@"), r.created_at))
        first = records[0]
        config = first.config
        tags, digests = _names_of(records)
        diff_ids = list(config.diff_ids)
        return ImageInfo(
            id=first.config_digest,
            config=dict(config.config),
            top_chain_id=oci.chain_ids(diff_ids)[-1] if diff_ids else "",
            repo_tags=tags,
            repo_digests=digests,
            target=first.target,
            size=await self._size(config, first.layers),
            document=dict(config.raw),
            names=[r.name for r in records],
            manifest_digest=first.manifest_digest,
            diff_ids=diff_ids,
            layer_sizes=[layer.size for layer in first.layers],
            created=config.created,
            record_created=min((r.created_at for r in records if r.created_at), default=0.0),
        )

    async def _grouped(self) -> dict[str, list[_Record]]:
        groups: dict[str, list[_Record]] = {}
        for r in await self._records():
            groups.setdefault(r.config_digest, []).append(r)
        return groups

    # --- lookups ----------------------------------------------------------------------------

    async def all(self) -> list[ImageInfo]:
        """Every image, newest first."""
        out = [await self._info(rs) for rs in (await self._grouped()).values()]
        out.sort(key=lambda i: (i.created_unix, i.id), reverse=True)
        return out

    async def resolve(self, ref_or_id: str) -> ImageInfo:
        """The image `ref_or_id` names, as Docker looks it up (module docstring); NotFound
        "No such image: …" otherwise."""
        text = ref_or_id.strip() if isinstance(ref_or_id, str) else ""
        if not text:
            raise InvalidArgument("image reference must not be empty")
        groups = await self._grouped()
        config_digest = self._match(text, groups)
        return await self._info(groups[config_digest])

    def _match(self, text: str, groups: dict[str, list[_Record]]) -> str:
        m = _FULL_ID.match(text)
        if m:
            key = "sha256:" + m.group(1)
            if key in groups:
                return key
            raise NotFound(f"No such image: {text}")
        try:
            ref = reference.parse(text)
        except InvalidArgument:
            ref = None
            if not _ID_PREFIX.match(text):
                raise
        if ref is not None:
            wanted = str(ref)
            for key, records in groups.items():
                for r in records:
                    if r.name == wanted:
                        return key
            if ref.digest:  # repo@digest: a record of that repository whose target it is
                for key, records in groups.items():
                    for r in records:
                        if r.target.digest == ref.digest and _repo_of(r.name) == ref.name:
                            return key
        m = _ID_PREFIX.match(text)
        if m:
            found = [key for key in groups if key[len("sha256:"):].startswith(m.group(1))]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {text}")
        raise NotFound(f"No such image: {ref.familiar() if ref is not None else text}")

    # --- list, inspect, history -------------------------------------------------------------

    async def list(self, filters: dict[str, list[str]] | None = None) -> list[ImageInfo]:
        """GET /images/json: the images the filters keep (before, since, dangling, label,
        reference, until), newest first."""
        filters = filters or {}
        for key in filters:
            if key not in IMAGE_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        images = await self.all()
        dangling = filters.get("dangling") or []
        if dangling:
            want = dangling[-1].lower()
            if want not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={dangling[-1]}'")
            want_dangling = want in ("true", "1")
            images = [i for i in images if (not i.repo_tags) == want_dangling]
        for key, keep in (("before", lambda i, t: i.created_unix < t),
                          ("since", lambda i, t: i.created_unix > t)):
            for value in filters.get(key) or []:
                ref = await self.resolve(value)
                images = [i for i in images if keep(i, ref.created_unix) and i.id != ref.id]
        for value in filters.get("until") or []:
            limit = _until(value)
            images = [i for i in images if i.created_unix < limit]
        labels = filters.get("label") or []
        if labels:
            images = [i for i in images if _match_labels(i.labels, labels)]
        patterns = filters.get("reference") or []
        if patterns:  # as dockerd: only the matching names are shown
            kept = []
            for i in images:
                tags = [t for t in i.repo_tags if any(_reference_match(pt, t) for pt in patterns)]
                digests = [d for d in i.repo_digests if any(_reference_match(pt, d) for pt in patterns)]
                if tags or digests:
                    i.repo_tags, i.repo_digests = tags, digests
                    kept.append(i)
            images = kept
        return images

    async def history(self, name: str) -> list[dict]:
        """GET /images/{name}/history: the config's history, newest first; entries that made
        a layer carry its size and the top one the image's ID and tags."""
        info = await self.resolve(name)
        history = [h for h in (info.document.get("history") or []) if isinstance(h, dict)]
        chains = oci.chain_ids(info.diff_ids) if info.diff_ids else []
        sizes = []
        for chain in chains:
            sizes.append(await self._chain_usage(chain))
        if not history:  # no history: one entry per layer, as moby makes up
            history = [{"created": info.created} for _ in chains] or [{"created": info.created}]
        out, layer = [], 0
        for h in history:
            size = 0
            if not h.get("empty_layer") and layer < len(sizes):
                size = sizes[layer]
                layer += 1
            out.append({"Id": "<missing>", "Created": _unix(h.get("created") or ""),
                        "CreatedBy": h.get("created_by") or "", "Tags": None, "Size": size,
                        "Comment": h.get("comment") or ""})
        out.reverse()
        out[0]["Id"] = info.id
        out[0]["Tags"] = list(info.repo_tags)
        return out

    async def _chain_usage(self, chain: str) -> int:
        if chain not in self._usage:
            try:
                u = await rpc(self._ctr.snapshots.Usage(snapshots_pb2.UsageRequest(
                    snapshotter=SNAPSHOTTER, key=chain)))
                self._usage[chain] = int(u.size)
            except DockyardError:
                return 0
        return self._usage[chain]

    # --- names: tag, remove, prune ----------------------------------------------------------

    async def _get_record(self, name: str) -> images_pb2.Image | None:
        try:
            return (await rpc(self._ctr.images.Get(images_pb2.GetImageRequest(name=name)))).image
        except NotFound:
            return None

    async def _put_record(self, name: str, target: oci.Descriptor, labels: dict | None = None) -> None:
        image = images_pb2.Image(name=name, labels=labels or {}, target=descriptor_pb2.Descriptor(
            media_type=target.media_type, digest=target.digest, size=target.size,
            annotations=dict(target.annotations)))
        try:
            await rpc(self._ctr.images.Create(images_pb2.CreateImageRequest(image=image)))
        except Conflict:
            await rpc(self._ctr.images.Update(images_pb2.UpdateImageRequest(image=image)))

    async def _delete_record(self, name: str, sync: bool = False) -> None:
        await rpc(self._ctr.images.Delete(images_pb2.DeleteImageRequest(name=name, sync=sync)))

    async def _keep_dangling(self, old: images_pb2.Image | None) -> None:
        """A name moved off an image: keep the image as dangling (Docker's <none>:<none>) when
        no other name reaches its config any more."""
        if old is None:
            return
        r = await self._record(old)
        if r is None:
            return
        groups = await self._grouped()
        if r.config_digest not in groups:
            await self._put_record(f"{DANGLING}@{r.target.digest}", r.target)

    async def tag(self, source: str, repo: str, tag: str = "") -> str:
        """POST /images/{name}/tag: `repo[:tag]` (tag default latest) names `source`'s image;
        returns the new name, familiar."""
        info = await self.resolve(source)
        if not repo:
            raise InvalidArgument("repository name must not be empty")
        ref = reference.parse(repo, default_tag=None)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        if tag:
            ref = ref.with_tag(tag)
        elif not ref.tag:
            ref = ref.with_tag(reference.DEFAULT_TAG)
        name = str(ref)
        async with self._lock:
            old = await self._get_record(name)
            await self._put_record(name, info.target)
            for n in info.names:  # a dangling record of this image is superseded by the name
                if n.startswith(DANGLING + "@"):
                    await self._delete_record(n)
            if old is not None and old.target.digest != info.target.digest:
                await self._keep_dangling(old)
        self._event("tag", info.id, ref.familiar())
        return ref.familiar()

    async def remove(self, name: str, force: bool = False, noprune: bool = False) -> list[dict]:
        """DELETE /images/{name}: untag, and delete the image once no name is left, with
        dockerd's conflicts (moby daemon/images/image_delete.go)."""
        async with self._lock:
            return await self._remove(name, force, noprune)

    async def _remove(self, name: str, force: bool, noprune: bool) -> list[dict]:
        info = await self.resolve(name)
        by_id = _is_id_prefix(name, info.id)
        users = _used_by(self.daemon, info.id)
        running = [c for c in users if _running(c)]
        out: list[dict] = []
        if not by_id:
            ref = reference.parse(name)
            wanted = str(ref)
            named = [n for n in info.names if n == wanted] or [
                n for n in info.names if ref.digest and _repo_of(n) == ref.name]
            others = [n for n in info.names if n not in named and not n.startswith(DANGLING + "@")]
            if others or (users and force):
                # Other names keep the image (or force keeps a used one, dangling).
                for n in named:
                    await self._delete_record(n)
                    out.append({"Untagged": familiar(n)})
                    self._event("untag", info.id, familiar(n))
                if not others:
                    await self._put_record(f"{DANGLING}@{info.target.digest}", info.target)
                return out
            if users:
                c = users[0]
                raise Conflict(f"conflict: unable to remove repository reference \"{name}\" (must "
                               f"force) - container {c.id[:12]} is using its referenced image "
                               f"{info.short_id}")
        else:
            if len(info.repo_tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {info.short_id} (must be forced) - "
                               "image is referenced in multiple repositories")
            if running:
                raise Conflict(f"conflict: unable to delete {info.short_id} (cannot be forced) - "
                               f"image is being used by running container {running[0].id[:12]}")
            if users and not force:
                raise Conflict(f"conflict: unable to delete {info.short_id} (must be forced) - "
                               f"image is being used by stopped container {users[0].id[:12]}")
        names = list(info.names)
        for i, n in enumerate(names):
            await self._delete_record(n, sync=(i == len(names) - 1) and not noprune)
            if not n.startswith(DANGLING + "@"):
                out.append({"Untagged": familiar(n)})
                self._event("untag", info.id, familiar(n))
        out.append({"Deleted": info.id})
        self._event("delete", info.id, "")
        return out

    async def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        """POST /images/prune: dangling images (dangling=false: every image no container
        uses), filtered by until and label; {"ImagesDeleted", "SpaceReclaimed"}."""
        filters = filters or {}
        for key in filters:
            if key not in ("dangling", "until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        only_dangling = True
        for v in filters.get("dangling") or []:
            if v.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={v}'")
            only_dangling = v.lower() in ("true", "1")
        deleted: list[dict] = []
        reclaimed = 0
        async with self._lock:
            for info in await self.all():
                if only_dangling and info.repo_tags:
                    continue
                if _used_by(self.daemon, info.id):
                    continue
                if any(info.created_unix >= _until(u) for u in filters.get("until") or []):
                    continue
                if filters.get("label") and not _match_labels(info.labels, filters["label"]):
                    continue
                if filters.get("label!") and any(_match_labels(info.labels, [e])
                                                 for e in filters["label!"]):
                    continue
                for n in info.names:
                    await self._delete_record(n, sync=True)
                    if not n.startswith(DANGLING + "@"):
                        deleted.append({"Untagged": familiar(n)})
                deleted.append({"Deleted": info.id})
                reclaimed += info.size
                self._event("delete", info.id, "")
        if deleted:
            self._event("prune", "", "", reclaimed=str(reclaimed))
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def _event(self, action: str, actor: str, name: str, **attributes) -> None:
        events = getattr(self.daemon, "events", None)
        if events is None:
            return
        attrs = dict(attributes)
        if name:
            attrs["name"] = name
        try:
            events.publish("image", action, actor, attrs)
        except Exception:  # an event is never worth failing the operation it reports
            log.debug("image event %s not published", action, exc_info=True)

    # --- transfers --------------------------------------------------------------------------

    async def pull(self, ref: reference.Reference, *, platform: str = "", auth: Auth | None = None
                   ) -> AsyncIterator[transfer_pb2.Progress]:
        """POST /images/create?fromImage: Transfer.Pull's progress (Docker's words)."""
        if platform:
            oci.Platform.parse(platform)  # 400 before anything starts
        request = transfer_pb2.PullRequest(ref=str(ref), platform=platform,
                                           registry=(auth or Auth()).registry_options())
        async for m in _stream(self._ctr.transfer.Pull(request)):
            if m.status:
                yield m
        self._event("pull", ref.familiar(), ref.familiar())

    async def push(self, name: str, tag: str = "", *, auth: Auth | None = None
                   ) -> AsyncIterator[transfer_pb2.Progress]:
        """POST /images/{name}/push: Transfer.Push of `name[:tag]` (tag default latest)."""
        ref = reference.parse(name, default_tag=None)
        if tag:
            ref = ref.with_tag(tag)
        elif not ref.tag and not ref.digest:
            ref = ref.with_tag(reference.DEFAULT_TAG)
        if await self._get_record(str(ref)) is None:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}")
        request = transfer_pb2.PushRequest(ref=str(ref), registry=(auth or Auth()).registry_options())
        async for m in _stream(self._ctr.transfer.Push(request)):
            yield m
        self._event("push", ref.familiar(), ref.familiar())

    async def save(self, names: list[str]) -> AsyncIterator[bytes]:
        """GET /images/get: a `docker save` archive (Transfer.Export) of the images `names`
        (references or IDs; an ID saves every name of its image)."""
        if not names:
            raise InvalidArgument("no images to save")
        records: list[str] = []
        for text in names:
            info = await self.resolve(text)
            if _is_id_prefix(text, info.id):
                chosen = info.names
            else:
                ref = reference.parse(text)
                chosen = [n for n in info.names if n == str(ref)] or info.names[:1]
            for n in chosen:
                if n not in records:
                    records.append(n)
            self._event("save", info.id, "")
        async for chunk in _stream(self._ctr.transfer.Export(transfer_pb2.ExportRequest(names=records))):
            yield chunk.data

    async def load(self, body: AsyncIterator[bytes]) -> AsyncIterator[transfer_pb2.Progress]:
        """POST /images/load: Transfer.Import of a `docker save` or OCI archive; the progress,
        then "Loaded image: x" / "Loaded image ID: sha256:…" statuses."""
        options = transfer_pb2.ImportOptions(format="auto")
        async for m in self._import(options, body):
            if m.images:
                for image in m.images:
                    self._event("load", image.target.digest, familiar(image.name))
            if m.status:
                yield m

    async def import_(self, body: AsyncIterator[bytes], *, repo: str = "", tag: str = "",
                      platform: str = "", message: str = "", changes: list[str] | None = None
                      ) -> AsyncIterator[transfer_pb2.Progress]:
        """POST /images/create?fromSrc=-: the body, a root filesystem tarball, becomes a
        one-layer image named repo[:tag] (untagged: dangling). The last status is the ID."""
        if changes or message:
            raise Unsupported("import with --change or --message is not supported yet")
        if platform:
            oci.Platform.parse(platform)
        temporary = not repo
        if repo:
            ref = reference.parse(repo, default_tag=None)
            if ref.digest:
                raise InvalidArgument("cannot import with a digest reference")
            ref = ref.with_tag(tag) if tag else (ref if ref.tag else ref.with_tag(reference.DEFAULT_TAG))
        else:
            import uuid
            ref = reference.parse(f"dockyard-import/{uuid.uuid4().hex}:latest")
        options = transfer_pb2.ImportOptions(format="rootfs", name=str(ref), platform=platform)
        made: list[images_pb2.Image] = []
        last = None
        async for m in self._import(options, body):
            made.extend(m.images)
            if m.status:
                last = m
                if not m.status.startswith("sha256:"):
                    yield m
        if temporary:
            for image in made:
                t = image.target
                await self._put_record(f"{DANGLING}@{t.digest}", oci.Descriptor(
                    t.media_type, t.digest, t.size, dict(t.annotations)))
                await self._delete_record(image.name)
        if last is not None and last.status.startswith("sha256:"):
            self._event("import", last.status, ref.familiar() if not temporary else "")
            yield last

    async def _import(self, options, body: AsyncIterator[bytes]) -> AsyncIterator[transfer_pb2.Progress]:
        async def requests():
            yield transfer_pb2.ImportRequest(options=options)
            async for data in body:
                for i in range(0, len(data), _CHUNK):
                    yield transfer_pb2.ImportRequest(data=data[i:i + _CHUNK])
        async for m in _stream(self._ctr.transfer.Import(requests())):
            yield m

    # --- registries -------------------------------------------------------------------------

    async def login(self, auth: Auth) -> dict:
        """POST /auth: the credentials checked against the registry (GET /v2/ answered 200
        with them); Unauthenticated (401) when refused."""
        domain = registry_domain(auth.serveraddress)
        if not (auth.username or auth.identitytoken or auth.registrytoken):
            raise InvalidArgument("login needs a username (or an identity token)")

        def check() -> None:
            from dockyard.images.registry import Registry
            registry = Registry(domain, auth.auth_config())
            try:
                registry.ping()
                if not registry._challenge and not auth.registrytoken:  # noqa: SLF001
                    return  # an open registry: nothing to check the credentials against
            finally:
                registry.close()

        try:
            await asyncio.to_thread(check)
        except Unauthenticated as e:
            raise Unauthenticated(f"login attempt to {domain} failed: {e}") from None
        return {"Status": "Login Succeeded", "IdentityToken": ""}

    async def distribution(self, name: str, auth: Auth | None = None) -> dict:
        """GET /distribution/{name}/json: the registry's descriptor for `name` and the
        platforms it offers."""
        ref = reference.parse(name)
        a = (auth or Auth()).auth_config()

        def fetch() -> dict:
            from dockyard.images.registry import Registry
            registry = Registry(ref.domain, a)
            try:
                fetched = registry.get_manifest(ref.path, ref.object)
                data = fetched.data
                desc = {"mediaType": fetched.media_type, "digest": fetched.digest, "size": len(data)}
                doc = oci.parse_manifest(data, fetched.media_type)
                platforms = []
                if isinstance(doc, oci.Index):
                    platforms = [m.platform.to_dict() for m in doc.manifests
                                 if m.platform is not None and m.platform.os != "unknown"]
                else:
                    cfg = oci.parse_config(_read_all(registry.open_blob(ref.path, doc.config.digest)))
                    platforms = [cfg.platform.to_dict()]
                return {"Descriptor": desc, "Platforms": platforms}
            finally:
                registry.close()

        return await asyncio.to_thread(fetch)


def _repo_of(name: str) -> str:
    try:
        return reference.parse(name, default_tag=None).name
    except InvalidArgument:
        return ""


# --- what the API hands in ----------------------------------------------------------------


@dataclass
class Auth:
    """Registry credentials from an X-Registry-Auth header or a /auth body (Docker's
    AuthConfig: username, password, auth (base64 "user:password"), identitytoken,
    registrytoken, serveraddress). Never logged."""
    username: str = ""
    password: str = ""
    identitytoken: str = ""
    registrytoken: str = ""
    serveraddress: str = ""

    def __repr__(self) -> str:
        return f"Auth(username={self.username!r}, serveraddress={self.serveraddress!r})"

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identitytoken or self.registrytoken)

    @classmethod
    def from_dict(cls, d) -> "Auth":
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise InvalidArgument("invalid registry auth: want a JSON object")
        values = {}
        for key in ("username", "password", "auth", "identitytoken", "registrytoken", "serveraddress"):
            v = d.get(key)
            for k in d:  # Docker's JSON decoding is case-insensitive on keys
                if v is None and k.lower() == key:
                    v = d[k]
            if v is not None and not isinstance(v, str):
                raise InvalidArgument(f"invalid registry auth: {key} must be a string")
            values[key] = v or ""
        if values["auth"] and not (values["username"] or values["password"]):
            try:
                raw = base64.b64decode(values["auth"] + "=" * (-len(values["auth"]) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidArgument("invalid registry auth: auth is not base64") from None
            user, _, password = raw.partition(":")
            values["username"], values["password"] = user, password
        return cls(values["username"], values["password"], values["identitytoken"],
                   values["registrytoken"], values["serveraddress"])

    @classmethod
    def from_header(cls, header: str | None) -> "Auth":
        """X-Registry-Auth: base64url (or standard base64) JSON; empty or "e30=" ({}) is
        anonymous; junk is a 400, as dockerd answers."""
        if not header or not header.strip():
            return cls()
        text = header.strip()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            try:
                raw = base64.b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                raise InvalidArgument("invalid X-Registry-Auth header: not base64") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            raise InvalidArgument("invalid X-Registry-Auth header: not JSON") from None
        return cls.from_dict(doc)

    def registry_options(self) -> transfer_pb2.RegistryOptions:
        options = transfer_pb2.RegistryOptions()
        options.auth.username, options.auth.password = self.username, self.password
        options.auth.identitytoken, options.auth.registrytoken = self.identitytoken, self.registrytoken
        return options

    def auth_config(self):
        from dockyard.images.credentials import AuthConfig
        return AuthConfig(username=self.username, password=self.password,
                          identitytoken=self.identitytoken, registrytoken=self.registrytoken)


def registry_domain(server: str) -> str:
    """The registry a /auth serveraddress means: "https://index.docker.io/v1/", "docker.io"
    and "" are Docker Hub; "http://127.0.0.1:5000/x" is 127.0.0.1:5000."""
    text = (server or "").strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    text = text.split("/", 1)[0]
    if text in ("", "index.docker.io", "docker.io", "registry-1.docker.io"):
        return reference.DEFAULT_DOMAIN
    return text


def pull_reference(from_image: str, tag: str = "") -> reference.Reference:
    """POST /images/create's fromImage + tag (a tag or a digest), as moby combines them."""
    if not from_image:
        raise InvalidArgument("fromImage must not be empty")
    ref = reference.parse(from_image, default_tag=None)
    if tag:
        if ":" in tag and not tag.startswith(":"):  # "sha256:…": a digest
            ref = ref.without_object().with_digest(tag)
        else:
            ref = ref.with_tag(tag) if not ref.digest else ref
    if not ref.tag and not ref.digest:
        ref = ref.with_tag(reference.DEFAULT_TAG)  # all-tags pulls: the latest tag only
    return ref


# --- output shapes (the spec's ImageSummary, ImageInspect, HistoryResponseItem) -------------

_CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
                "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
                "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels")
_CONFIG_DEFAULTS = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
                    "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
                    "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
                    "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}
ZERO_TIME = "0001-01-01T00:00:00Z"


def docker_config(config: dict) -> dict:
    """The image's config as dockerd shows it in inspect: its keys, with Docker's zero values."""
    out = dict(_CONFIG_DEFAULTS)
    out.update(config)
    return out


def summary(info: ImageInfo, api_version: str = "1.45") -> dict:
    d = {"Id": info.id, "ParentId": "", "RepoTags": list(info.repo_tags),
         "RepoDigests": list(info.repo_digests), "Created": info.created_unix, "Size": info.size,
         "SharedSize": -1, "Labels": info.labels, "Containers": -1}
    if _version(api_version) < (1, 44):
        d["VirtualSize"] = info.size
    if _version(api_version) < (1, 43) and not d["RepoTags"]:
        d["RepoTags"] = ["<none>:<none>"]
        if not d["RepoDigests"]:
            d["RepoDigests"] = ["<none>@<none>"]
    return d


def inspect(info: ImageInfo, api_version: str = "1.45") -> dict:
    doc = info.document
    d = {
        "Id": info.id,
        "RepoTags": list(info.repo_tags),
        "RepoDigests": list(info.repo_digests),
        "Parent": "",
        "Comment": doc.get("comment") or _last_comment(doc),
        "Created": info.created or ZERO_TIME,
        "DockerVersion": doc.get("docker_version") or "",
        "Author": doc.get("author") or "",
        "Config": docker_config(info.config),
        "Architecture": info.architecture,
        "Os": info.os,
        "Size": info.size,
        "GraphDriver": {"Name": SNAPSHOTTER, "Data": None},
        "RootFS": {"Type": "layers", "Layers": list(info.diff_ids)},
        "Metadata": {"LastTagTime": ZERO_TIME},
    }
    if info.variant:
        d["Variant"] = info.variant
    if doc.get("os.version"):
        d["OsVersion"] = doc["os.version"]
    if _version(api_version) < (1, 44):
        d["VirtualSize"] = info.size
        d["Container"] = doc.get("container") or ""
        d["ContainerConfig"] = docker_config(doc.get("container_config") or {})
    return d


def _last_comment(doc: dict) -> str:
    history = doc.get("history") or []
    if history and isinstance(history[-1], dict):
        return history[-1].get("comment") or ""
    return ""


def _version(text: str) -> tuple[int, int]:
    try:
        major, minor = text.split(".", 1)
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return (1, 45)


def _match_labels(labels: dict, exprs: list[str]) -> bool:
    """Docker's label filter: every expression ("key", "key=value", "key!=value") holds."""
    for e in exprs:
        if "!=" in e:
            k, v = e.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in e:
            k, v = e.split("=", 1)
            if labels.get(k) != v:
                return False
        elif e not in labels:
            return False
    return True


def _glob(pattern: str, text: str) -> bool:
    """Go's path.Match ('*' and '?' stop at '/', character classes)."""
    import fnmatch
    if pattern.count("/") != text.count("/"):
        return False
    return all(fnmatch.fnmatchcase(t, p) for p, t in zip(pattern.split("/"), text.split("/")))


def _reference_match(pattern: str, name: str) -> bool:
    """moby's reference filter for one name ("busybox:latest", "busybox@sha256:…"): the
    pattern against its familiar form, and against the familiar repository when the pattern
    has no tag; the normalized forms likewise."""
    repo = name.split("@", 1)[0]
    if "@" not in name and repo.rfind(":") > repo.rfind("/"):
        repo = repo[:repo.rfind(":")]
    candidates = [name, repo]
    try:
        ref = reference.parse(name, default_tag=None)
        candidates += [str(ref), ref.name]
    except InvalidArgument:
        pass
    return any(_glob(pattern, c) for c in candidates)


IMAGE_FILTERS = {"before", "dangling", "label", "reference", "since", "until"}


def _used_by(daemon, image_id: str) -> list:
    """The containers of the engine using image `image_id`."""
    store = getattr(daemon, "store", None)
    if store is None:
        return []
    return [c for c in store.list() if getattr(c, "image_id", "") == image_id]


def _running(container) -> bool:
    state = getattr(container, "state", None)
    for name in ("running", "Running"):
        v = getattr(state, name, None)
        if isinstance(v, bool):
            return v
    try:
        return bool(state.to_dict().get("Running"))
    except AttributeError:
        return False


def _is_id_prefix(text: str, image_id: str) -> bool:
    """Whether `text` names the image by its ID (full, or a prefix with or without sha256:)."""
    m = _ID_PREFIX.match(text) or _FULL_ID.match(text)
    return bool(m) and image_id[len("sha256:"):].startswith(m.group(1))


def _until(value: str) -> int:
    """A filter's until/before time: unix seconds, RFC 3339, or a Go duration before now."""
    import time
    v = value.strip()
    try:
        return int(float(v))
    except ValueError:
        pass
    t = _unix(v)
    if t:
        return t
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)", v)
    if m:
        scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
        seconds = sum(float(n) * scale[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", v))
        return int(time.time() - seconds)
    raise InvalidArgument(f"invalid filter 'until={value}'")


async def _stream(call):
    """The messages of a streaming gRPC call; its failure as the dockyard error it means."""
    try:
        async for m in call:
            yield m
    except grpc.RpcError as e:
        raise from_rpc_error(e) from None
    finally:
        if hasattr(call, "cancel") and not call.done():
            call.cancel()


def _read_all(stream, limit: int = oci.MAX_CONFIG_SIZE) -> bytes:
    with stream:
        parts, size = [], 0
        while True:
            data = stream.read(1 << 16)
            if not data:
                return b"".join(parts)
            size += len(data)
            if size > limit:
                raise InvalidArgument("image config too large")
            parts.append(data)
