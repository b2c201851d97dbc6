"""Image archives: what `docker save` writes and `docker load` reads, and OCI layouts in a tar.

Three shapes are read (a Docker 25 archive is two of them at once):

* Docker >= 25 `docker save`: an OCI image layout (`oci-layout`, `index.json`,
  `blobs/<alg>/<hex>`; image-spec image-layout.md) plus `manifest.json`
  (`[{"Config", "RepoTags", "Layers"}]`, paths into blobs/) and `repositories` for old loaders.
* Docker <= 24 `docker save` (Debian's docker.io 20.10): `manifest.json`, the config as
  `<hex>.json`, each layer as `<v1 id>/layer.tar` (uncompressed) beside `<v1 id>/json` and
  `VERSION`, `repositories`. A layer already written for an earlier image is a symlink
  `../<other id>/layer.tar`. skopeo's `docker-archive:` is this shape with `<hex>.tar` layers.
* A plain OCI image layout (skopeo `oci-archive:`, containerd's export): `index.json` whose
  descriptors are named by the `io.containerd.image.name` or
  `org.opencontainers.image.ref.name` annotations.

`write_archive` writes the Docker 25 shape, which both Docker <= 24 (through manifest.json) and
OCI tools (through index.json) load.

The input may be gzip- or zstd-compressed (`docker save | gzip`), as `docker load` accepts.
Reading assumes a hostile tar. The tar is parsed here rather than by `tarfile`, which reads
extended headers whole into memory and extracts by name: each regular file is copied into a
fresh directory under `staging` with a name of our own (`entry-<n>`), so no archive name ever
becomes a path on disk and nothing can land outside `staging`. Names are still validated (no
absolute paths, no `..`, no NUL, bounded length) and must be unique; symlinks and hard links
exist only in the member table and resolve inside the archive's own namespace (an absolute
target or one climbing above the archive root is refused); devices, fifos and sparse files are
refused; headers and JSON documents are size-capped (layers are bounded only by the disk:
NoSpace). Every `blobs/<alg>/<hex>` file is checked against its name, and every blob an image
needs must be present with the size its descriptor says. Legacy layers that are uncompressed are
checked against the config's diff_ids here; compressed layers are checked when unpacked.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Callable, Iterable

from dockyard.errors import InvalidArgument, NoSpace, NotFound, SystemFailure
from dockyard.images import compression, reference
from dockyard.oci import digest as oci_digest
from dockyard.oci import image as oci

IMAGE_NAME = "io.containerd.image.name"  # containerd's full-name annotation (Docker 25 too)
REF_NAME = "org.opencontainers.image.ref.name"  # image-spec annotations.md
LAYOUT_VERSION = "1.0.0"

_BLOCK = 512
_CHUNK = 1 << 20
_MAX_ENTRIES = 100_000
_MAX_NAME = 4096  # PATH_MAX: no real archive needs more
_MAX_PAX = 1 << 20  # an extended header larger than this is an attack, not metadata
_MAX_MEMBER = 1 << 42  # 4 TiB: a size field beyond this is corrupt
_MAX_SYMLINK_HOPS = 40  # as Linux's MAXSYMLINKS
_MAX_INDEX_JSON = oci.MAX_MANIFEST_SIZE
_MAX_DOCKER_JSON = oci.MAX_CONFIG_SIZE  # manifest.json / repositories list every image
_REFERENCE_TYPE = "vnd.docker.reference.type"  # buildx marks attestation manifests with it


# --- what read_archive returns / write_archive takes ---


@dataclass(frozen=True)
class LoadedImage:
    """One image found in an archive.

    `names` are full normalized references ("docker.io/library/busybox:latest"); empty for an
    untagged image. `ref_name` is an OCI `org.opencontainers.image.ref.name` that is only a tag
    ("latest", as skopeo's oci-archive: writes), which names nothing by itself: a loader may
    combine it with a repository the user gives. `target` is what the names should point at (a
    manifest or an index), `manifest_digest` the platform manifest to unpack. `synthesized`
    holds documents made up for legacy archives (their manifest), digest -> exact bytes; they
    are not among LoadedArchive.blobs."""
    names: list[str]
    target: oci.Descriptor
    manifest_digest: str
    synthesized: dict[str, bytes] = field(default_factory=dict)
    ref_name: str = ""


@dataclass(frozen=True)
class LoadedArchive:
    blobs: dict[str, str]  # digest -> file in staging, verified
    images: list[LoadedImage]


@dataclass(frozen=True)
class ArchiveImage:
    """An image to save. `names` are full references (manifest.json gets their familiar form);
    `target` is the image's manifest or index; `manifest` the platform manifest chosen by the
    caller (== target when target is a manifest), `config` and `layers` its parts."""
    names: list[str]
    target: oci.Descriptor
    manifest: oci.Descriptor
    config: oci.Descriptor
    layers: list[oci.Descriptor]


# --- the tar reader ---


@dataclass
class _Member:
    kind: str  # "file", "dir", "symlink"
    path: str = ""  # staging file (files)
    size: int = 0
    sha256: str = ""  # "sha256:<hex>" of the content (files)
    target: str = ""  # symlink target, as written in the archive


def _cstr(field_: bytes) -> bytes:
    return field_.split(b"\0", 1)[0]


def _number(field_: bytes, what: str) -> int:
    """A tar numeric field: octal text, or GNU base-256 when the high bit is set."""
    if field_[0] & 0x80:
        if field_[0] == 0xFF:
            raise InvalidArgument(f"corrupt tar header: negative {what}")
        return int.from_bytes(bytes([field_[0] & 0x7F]) + field_[1:], "big")
    text = field_.replace(b"\0", b" ").strip()
    if not text:
        return 0
    if not all(48 <= c <= 55 for c in text):
        raise InvalidArgument(f"corrupt tar header: {what} is not an octal number")
    return int(text, 8)


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"archive entry name is not UTF-8 ({what})") from None


def _clean_name(name: str, what: str = "archive entry") -> str:
    """An archive-relative name with "." and empty components dropped; refuses absolute names,
    `..`, NUL and over-long names. "" means the archive root."""
    if "\0" in name:
        raise InvalidArgument(f"{what} {name[:100]!r}: name contains NUL")
    if len(name) > _MAX_NAME:
        raise InvalidArgument(f"{what} {name[:100]!r}…: name longer than {_MAX_NAME} bytes")
    if name.startswith("/"):
        raise InvalidArgument(f"{what} {name[:200]!r}: absolute names are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"{what} {name[:200]!r}: '..' is not allowed")
    return "/".join(parts)


def _pax_records(data: bytes) -> dict[str, str]:
    """POSIX pax extended header records: "<len> <key>=<value>\\n" (IEEE 1003.1 pax)."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos, pos + 20)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise InvalidArgument("corrupt tar pax header: bad record length")
        end = pos + int(digits)
        if end <= space + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise InvalidArgument("corrupt tar pax header: bad record")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq:
            raise InvalidArgument("corrupt tar pax header: record without '='")
        out[_decode(key, "pax key")] = _decode(value, "pax value")
        pos = end
    return out


class _TarReader:
    """Reads a tar stream (ustar, pax, GNU long names) member by member into staging."""

    def __init__(self, stream: BinaryIO, staging: str):
        self._stream = stream
        self._staging = staging
        self._seq = 0
        self.members: dict[str, _Member] = {}

    def _read(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self._stream.read(min(n - got, _CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise InvalidArgument(f"archive is truncated ({what})")
        return data

    def _skip(self, size: int, what: str) -> None:
        left = size + (-size % _BLOCK)
        while left:
            n = len(self._read(min(left, _CHUNK)))
            if not n:
                raise InvalidArgument(f"archive is truncated ({what})")
            left -= n

    def _padding(self, size: int, what: str) -> None:
        if size % _BLOCK:
            self._read_exact(_BLOCK - size % _BLOCK, what)

    def _small(self, size: int, limit: int, what: str) -> bytes:
        if size > limit:
            raise InvalidArgument(f"archive {what} is {size} bytes, larger than {limit}")
        data = self._read_exact(size, what)
        self._padding(size, what)
        return data

    def read_all(self) -> dict[str, _Member]:
        pax: dict[str, str] = {}
        long_name = long_link = None
        first = True
        count = 0
        while True:
            block = self._read(_BLOCK)
            if not block and first:
                raise InvalidArgument("not a tar archive: the input is empty")
            if len(block) != _BLOCK:
                raise InvalidArgument("archive is truncated (in a tar header)")
            if block == bytes(_BLOCK):
                return self.members  # end of archive; a second zero block may follow
            self._check_sum(block, first)
            first = False
            count += 1
            if count > _MAX_ENTRIES:
                raise InvalidArgument(f"archive has more than {_MAX_ENTRIES} entries")
            typeflag = block[156:157]
            size = _number(block[124:136], "size")
            if size > _MAX_MEMBER:
                raise InvalidArgument("corrupt tar header: impossible size")
            if typeflag == b"x":
                pax = _pax_records(self._small(size, _MAX_PAX, "pax header"))
                continue
            if typeflag == b"g":
                _pax_records(self._small(size, _MAX_PAX, "pax global header"))  # validated, unused
                continue
            if typeflag in (b"L", b"K"):
                text = _decode(_cstr(self._small(size, _MAX_NAME + 1, "GNU long name")),
                               "GNU long name")
                if typeflag == b"L":
                    long_name = text
                else:
                    long_link = text
                continue
            name = pax.get("path", long_name)
            if name is None:
                raw = _cstr(block[0:100])
                if block[257:263] == b"ustar\0":  # POSIX ustar: prefix field
                    prefix = _cstr(block[345:500])
                    if prefix:
                        raw = prefix + b"/" + raw
                name = _decode(raw, "name")
            link = pax.get("linkpath", long_link)
            if link is None:
                link = _decode(_cstr(block[157:257]), "link name")
            if "size" in pax:
                if not pax["size"].isdigit() or int(pax["size"]) > _MAX_MEMBER:
                    raise InvalidArgument(f"archive entry {name[:200]!r}: bad pax size")
                size = int(pax["size"])
            if any(k.startswith("GNU.sparse.") for k in pax):
                raise InvalidArgument(f"archive entry {name[:200]!r}: sparse files are not "
                                      "allowed in an image archive")
            self._add(typeflag, name, link, size)
            pax, long_name, long_link = {}, None, None

    @staticmethod
    def _check_sum(block: bytes, first: bool) -> None:
        try:
            want = _number(block[148:156], "checksum")
        except InvalidArgument:
            want = -1
        unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
        signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
        if want not in (unsigned, signed):
            raise InvalidArgument("not a tar archive" if first else
                                  "corrupt tar header: checksum mismatch")

    def _add(self, typeflag: bytes, raw_name: str, link: str, size: int) -> None:
        name = _clean_name(raw_name)
        what = f"archive entry {raw_name[:200]!r}"
        if typeflag in (b"0", b"\0", b"7"):
            kind = "file"
        elif typeflag == b"5":
            kind = "dir"
        elif typeflag in (b"1", b"2"):
            kind = "link" if typeflag == b"1" else "symlink"
        elif typeflag in (b"3", b"4"):
            raise InvalidArgument(f"{what}: device files are not allowed in an image archive")
        elif typeflag == b"6":
            raise InvalidArgument(f"{what}: fifos are not allowed in an image archive")
        else:
            raise InvalidArgument(f"{what}: unsupported tar entry type {typeflag!r}")
        if not name:
            if kind != "dir":
                raise InvalidArgument(f"{what}: not a valid name")
            self._skip(size, raw_name)
            return
        old = self.members.get(name)
        if old is not None and not (kind == "dir" and old.kind == "dir"):
            raise InvalidArgument(f"{what} appears twice in the archive")
        if kind == "file":
            self.members[name] = self._store(size, what)
            return
        self._skip(size, what)  # links and dirs carry no data; skip any they claim
        if kind == "dir":
            self.members[name] = _Member("dir")
        elif kind == "symlink":
            if not link or "\0" in link or len(link) > _MAX_NAME:
                raise InvalidArgument(f"{what}: bad symlink target")
            self.members[name] = _Member("symlink", target=link)
        else:
            # A hard link names an earlier member; it shares that member's staged file.
            target = self.members.get(_clean_name(link, f"{what}: hard link target"))
            if target is None or target.kind != "file":
                raise InvalidArgument(f"{what}: hard link to {link[:200]!r}, which is not an "
                                      "earlier file in the archive")
            self.members[name] = target

    def _store(self, size: int, what: str) -> _Member:
        path = os.path.join(self._staging, f"entry-{self._seq}")
        self._seq += 1
        h = hashlib.sha256()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            with open(fd, "wb") as f:
                left = size
                while left:
                    chunk = self._stream.read(min(left, _CHUNK))
                    if not chunk:
                        raise InvalidArgument(f"archive is truncated (in {what})")
                    h.update(chunk)
                    f.write(chunk)
                    left -= len(chunk)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"no space left to stage the archive in {self._staging}") from None
            raise SystemFailure(f"staging the archive in {self._staging}: {e.strerror}") from None
        self._padding(size, what)
        return _Member("file", path=path, size=size, sha256="sha256:" + h.hexdigest())


# --- interpreting the members ---


class _Archive:
    """The staged members of one archive, and the blobs verified so far."""

    def __init__(self, members: dict[str, _Member]):
        self.members = members
        self.blobs: dict[str, str] = {}
        self._sizes: dict[str, int] = {}

    def lookup(self, name: str, what: str) -> _Member | None:
        """The file `name` names, following symlinks inside the archive; None if absent."""
        pending = _clean_name(name, what).split("/")
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    raise InvalidArgument(f"{what} {name[:200]!r}: a symlink points outside "
                                          "the archive")
                resolved.pop()
                continue
            resolved.append(part)
            m = self.members.get("/".join(resolved))
            if m is not None and m.kind == "symlink":
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise InvalidArgument(f"{what} {name[:200]!r}: too many levels of symlinks")
                if m.target.startswith("/"):
                    raise InvalidArgument(f"{what} {name[:200]!r}: symlink to an absolute path "
                                          f"{m.target[:200]!r}")
                resolved.pop()
                pending = m.target.split("/") + pending
        m = self.members.get("/".join(resolved))
        return m if m is not None and m.kind == "file" else None

    def require(self, name: str, what: str) -> _Member:
        m = self.lookup(name, what)
        if m is None:
            raise InvalidArgument(f"archive is missing {what} {name[:200]!r}")
        return m

    def verify_blobs(self) -> None:
        """Check every blobs/<alg>/<hex> file against its name (image-layout.md "blobs")."""
        for name in sorted(self.members):
            parts = name.split("/")
            if len(parts) != 3 or parts[0] != "blobs" or parts[1] not in ("sha256", "sha512"):
                continue
            m = self.lookup(name, "blob")
            if m is None:
                continue  # a directory, or a dangling symlink: missing if anything needs it
            d = f"{parts[1]}:{parts[2]}"
            try:
                oci_digest.validate(d)
            except InvalidArgument:
                raise InvalidArgument(f"archive entry {name[:200]!r}: not a valid blob name") \
                    from None
            actual = m.sha256 if parts[1] == "sha256" else _file_digest(m.path, d)
            if actual != d:
                raise InvalidArgument(f"blob {d}: content does not match its digest "
                                      f"(it hashes to {actual})")
            self.blobs[d] = m.path
            self._sizes[d] = m.size

    def blob(self, desc: oci.Descriptor, what: str) -> str:
        """The staged file of a blob a descriptor names, size checked."""
        path = self.blobs.get(desc.digest)
        if path is None:
            raise InvalidArgument(f"archive is missing blob {desc.digest} ({what})")
        if self._sizes[desc.digest] != desc.size:
            raise InvalidArgument(f"blob {desc.digest} ({what}) is {self._sizes[desc.digest]} "
                                  f"bytes, its descriptor says {desc.size}")
        return path

    def add_blob(self, m: _Member) -> str:
        self.blobs[m.sha256] = m.path
        self._sizes[m.sha256] = m.size
        return m.sha256


def _file_digest(path: str, like: str) -> str:
    h = oci_digest.Hasher(like)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def _read_small(path: str, size: int, limit: int, what: str) -> bytes:
    if size > limit:
        raise InvalidArgument(f"{what} is {size} bytes, larger than the {limit} byte limit")
    with open(path, "rb") as f:
        return f.read(limit + 1)


def _json(data: bytes, what: str):
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise InvalidArgument(f"{what} is not valid JSON: {str(e)[:120]}") from None


@dataclass
class _Found:
    names: list[str]
    target: oci.Descriptor
    manifest_digest: str
    config_digest: str
    synthesized: dict[str, bytes] = field(default_factory=dict)
    ref_name: str = ""


def _full_name(text: str, what: str) -> str:
    try:
        return str(reference.parse(text))
    except InvalidArgument as e:
        raise InvalidArgument(f"{what}: {e}") from None


def _layer_compression(path: str) -> str:
    with open(path, "rb") as f:
        return compression.detect(f.read(4))


def _check_manifest(arc: _Archive, manifest: oci.Manifest, what: str) -> None:
    """The config and every layer of `manifest` are in the archive; the config is valid and
    lists as many diff_ids as there are layers."""
    path = arc.blob(manifest.config, f"config of {what}")
    config = oci.parse_config(_read_small(path, manifest.config.size, oci.MAX_CONFIG_SIZE,
                                          f"config of {what}"))
    for i, layer in enumerate(manifest.layers):
        arc.blob(layer, f"layer {i} of {what}")
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidArgument(f"{what}: {len(manifest.layers)} layers but the config lists "
                              f"{len(config.diff_ids)} diff_ids")


def _load_manifest(arc: _Archive, desc: oci.Descriptor, what: str) -> oci.Manifest | oci.Index:
    path = arc.blob(desc, what)
    return oci.parse_manifest(_read_small(path, desc.size, oci.MAX_MANIFEST_SIZE, what),
                              desc.media_type)


def _from_index_entry(arc: _Archive, desc: oci.Descriptor, i: int) -> _Found | None:
    """An image from one index.json descriptor; None for content that is not an image."""
    what = f"index.json manifests[{i}]"
    if desc.media_type in oci.MANIFEST_TYPES:
        chosen = desc
        manifest = _load_manifest(arc, desc, what)
    elif desc.media_type in oci.INDEX_TYPES:
        index = _load_manifest(arc, desc, what)
        # Only platforms whose manifests were saved count (Docker saves the host's only).
        present = tuple(m for m in index.manifests
                        if m.media_type in oci.MANIFEST_TYPES and m.digest in arc.blobs)
        if not present:
            raise InvalidArgument(f"{what}: the archive holds none of the index's manifests")
        try:
            chosen = oci.select_manifest(replace(index, manifests=present), oci.host_platform())
        except NotFound:  # an image for another platform can still be loaded
            images = [m for m in present if m.annotations.get(_REFERENCE_TYPE)
                      != "attestation-manifest"]
            if not images:
                raise InvalidArgument(f"{what}: the archive holds no image manifest of the "
                                      "index") from None
            chosen = images[0]
        manifest = _load_manifest(arc, chosen, f"{what} ({chosen.digest})")
    else:
        return None
    if not isinstance(manifest, oci.Manifest):
        raise InvalidArgument(f"{what}: {chosen.digest} is not an image manifest")
    _check_manifest(arc, manifest, what)
    annotations = desc.annotations
    names, ref_name = [], ""
    if annotations.get(IMAGE_NAME):
        names.append(_full_name(annotations[IMAGE_NAME], f"{what}: {IMAGE_NAME}"))
    elif annotations.get(REF_NAME):
        try:  # image-spec: usually just a tag ("latest"); some tools write a full name
            ref_name = reference.validate_tag(annotations[REF_NAME])
        except InvalidArgument:
            names.append(_full_name(annotations[REF_NAME], f"{what}: {REF_NAME}"))
    target = oci.Descriptor(desc.media_type, desc.digest, desc.size)
    return _Found(names, target, chosen.digest, manifest.config.digest, ref_name=ref_name)


def _from_docker_entry(arc: _Archive, entry, i: int) -> _Found:
    """The image one manifest.json entry describes, with a manifest made up for it."""
    what = f"manifest.json entry {i}"
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{what}: must be an object")
    config_path, layer_paths = entry.get("Config"), entry.get("Layers")
    tags = entry.get("RepoTags") or []
    if not isinstance(config_path, str) or not config_path:
        raise InvalidArgument(f"{what}: Config must be a path")
    if not isinstance(layer_paths, list) or not all(isinstance(p, str) for p in layer_paths):
        raise InvalidArgument(f"{what}: Layers must be a list of paths")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidArgument(f"{what}: RepoTags must be a list of strings")
    names = [_full_name(t, f"{what}: RepoTags") for t in tags]
    config_member = arc.require(config_path, f"config of {what}")
    config_bytes = _read_small(config_member.path, config_member.size, oci.MAX_CONFIG_SIZE,
                               f"config of {what}")
    config = oci.parse_config(config_bytes)
    config_digest = arc.add_blob(config_member)
    if len(layer_paths) != len(config.diff_ids):
        raise InvalidArgument(f"{what}: {len(layer_paths)} layers but the config lists "
                              f"{len(config.diff_ids)} diff_ids")
    # Legacy: make up the manifest Docker <= 24 never stored. Uncompressed layers (what it
    # writes) are their own diff_ids, so those are checked now; compressed ones at unpack.
    layers = []
    for n, layer_path in enumerate(layer_paths):
        m = arc.require(layer_path, f"layer {n} of {what}")
        layer_digest = arc.add_blob(m)
        compression = _layer_compression(m.path)
        if compression == "none" and layer_digest != config.diff_ids[n]:
            raise InvalidArgument(f"{what}: layer {layer_path[:200]!r} is {layer_digest}, the "
                                  f"config says {config.diff_ids[n]}")
        layers.append((compression, layer_digest, m.size))
    if any(c == "zstd" for c, _, _ in layers):  # no Docker media type for zstd
        manifest_type, config_type = oci.OCI_MANIFEST, oci.OCI_CONFIG
        layer_types = {"none": oci.OCI_LAYER, "gzip": oci.OCI_LAYER_GZIP,
                       "zstd": oci.OCI_LAYER_ZSTD}
    else:
        manifest_type, config_type = oci.DOCKER_MANIFEST, oci.DOCKER_CONFIG
        layer_types = {"none": oci.DOCKER_LAYER, "gzip": oci.DOCKER_LAYER_GZIP}
    manifest = oci.Manifest(
        manifest_type, oci.Descriptor(config_type, config_digest, config_member.size),
        tuple(oci.Descriptor(layer_types[c], d, size) for c, d, size in layers))
    data = oci.canonical_json(manifest.to_dict())
    target = oci.Descriptor(manifest_type, oci_digest.sha256(data), len(data))
    return _Found(names, target, target.digest, config_digest, {target.digest: data})


def _images(arc: _Archive) -> list[LoadedImage]:
    index_member = arc.lookup("index.json", "index.json")
    docker_member = arc.lookup("manifest.json", "manifest.json")
    if index_member is None and docker_member is None:
        raise InvalidArgument("archive has neither manifest.json nor index.json: it is not a "
                              "docker save archive or an OCI image layout")
    layout = arc.lookup("oci-layout", "oci-layout")
    if layout is not None:
        obj = _json(_read_small(layout.path, layout.size, 4096, "oci-layout"), "oci-layout")
        if not isinstance(obj, dict) or not isinstance(obj.get("imageLayoutVersion"), str):
            raise InvalidArgument("oci-layout: imageLayoutVersion must be a string")
    found: list[_Found] = []
    if index_member is not None:
        index = oci.parse_manifest(
            _read_small(index_member.path, index_member.size, _MAX_INDEX_JSON, "index.json"),
            oci.OCI_INDEX)
        if not isinstance(index, oci.Index):
            raise InvalidArgument("index.json is not an image index")
        for i, desc in enumerate(index.manifests):
            f = _from_index_entry(arc, desc, i)
            if f is not None:
                found.append(f)
    if docker_member is not None:
        entries = _json(_read_small(docker_member.path, docker_member.size, _MAX_DOCKER_JSON,
                                    "manifest.json"), "manifest.json")
        if not isinstance(entries, list):
            raise InvalidArgument("manifest.json must be a JSON list")
        for i, entry in enumerate(entries):
            legacy = _from_docker_entry(arc, entry, i)
            # Docker 25: the same image is in index.json; keep its exact manifest, add names.
            same = [f for f in found if f.config_digest == legacy.config_digest]
            if same:
                same[0].names.extend(legacy.names)
            else:
                found.append(legacy)
    # One image per target, names in archive order without repeats.
    merged: dict[str, _Found] = {}
    for f in found:
        into = merged.setdefault(f.target.digest, f)
        if into is not f:
            into.names.extend(f.names)
            into.ref_name = into.ref_name or f.ref_name
    if not merged:
        raise InvalidArgument("archive contains no images")
    return [LoadedImage(list(dict.fromkeys(f.names)), f.target, f.manifest_digest,
                        f.synthesized, f.ref_name) for f in merged.values()]


def read_archive(stream: BinaryIO, staging: str) -> LoadedArchive:
    """Read a `docker save` archive (Docker <= 24 or >= 25) or an OCI layout tar from
    `stream` (plain, gzip or zstd), staging its files in a new directory under the existing
    directory `staging`, which the caller removes afterwards. Raises InvalidArgument for
    anything malformed or hostile, NoSpace when staging fills the disk."""
    try:
        private = tempfile.mkdtemp(prefix="archive-", dir=staging)
    except OSError as e:
        raise SystemFailure(f"staging directory {staging}: {e.strerror}") from None
    stream = compression.decompressed(stream, what="archive")  # `docker save | gzip` loads too
    arc = _Archive(_TarReader(stream, private).read_all())
    arc.verify_blobs()
    images = _images(arc)
    return LoadedArchive(arc.blobs, images)


# --- writing ---


class _VerifiedReader:
    """Hands a blob's bytes to tarfile, checking them against the digest at the end."""

    def __init__(self, f: BinaryIO, d: str, size: int):
        self._f, self._digest, self._left = f, d, size
        self._hash = oci_digest.Hasher(d)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(self._left if n is None or n < 0 else min(n, self._left))
        self._hash.update(data)
        self._left -= len(data)
        if self._left == 0 and self._hash.digest() != self._digest:
            raise SystemFailure(f"blob {self._digest} does not match its digest in the "
                                "content store")
        return data


def _blob_name(d: str) -> str:
    alg, hex_ = oci_digest.validate(d).split(":", 1)
    return f"blobs/{alg}/{hex_}"


def _tar_info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0, 0, 0, "", ""
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


def _documents(images: Iterable[ArchiveImage]) -> dict[str, bytes]:
    """index.json, manifest.json, oci-layout and repositories for `images`."""
    index_entries, docker_entries, repositories = [], {}, {}
    for img in images:
        refs = [reference.parse(n, default_tag=None) for n in img.names]
        target = img.target.to_dict()
        if not refs:
            index_entries.append(target)
        for ref in refs:
            annotations = {**img.target.annotations, IMAGE_NAME: str(ref)}
            if ref.tag:
                annotations[REF_NAME] = ref.tag
            index_entries.append({**target, "annotations": annotations})
        tags = [ref.familiar() for ref in refs if ref.tag and not ref.digest]
        entry = docker_entries.setdefault(img.config.digest, {
            "Config": _blob_name(img.config.digest),
            "RepoTags": [],
            "Layers": [_blob_name(layer.digest) for layer in img.layers],
        })
        entry["RepoTags"].extend(t for t in tags if t not in entry["RepoTags"])
        for ref in refs:
            if ref.tag and not ref.digest and img.layers:
                repositories.setdefault(ref.familiar_name(), {})[ref.tag] = \
                    oci_digest.hex_of(img.layers[-1].digest)
    for entry in docker_entries.values():
        entry["RepoTags"] = entry["RepoTags"] or None  # Docker writes null for untagged
    docs = {
        "index.json": oci.canonical_json({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                                          "manifests": index_entries}),
        "manifest.json": oci.canonical_json(list(docker_entries.values())),
        "oci-layout": oci.canonical_json({"imageLayoutVersion": LAYOUT_VERSION}),
    }
    if repositories:
        docs["repositories"] = oci.canonical_json(repositories)
    return docs


def write_archive(out: BinaryIO, images: list[ArchiveImage],
                  read_blob: Callable[[str], BinaryIO], *,
                  blob_size: Callable[[str], int]) -> None:
    """Write `images` to `out` (any writable binary stream, seekable or not) in Docker 25's
    `docker save` shape. Each blob is streamed once (in digest order, so the output is
    deterministic) and checked against its digest as it goes; names are full references."""
    docs = _documents(images)  # first: a bad name fails before anything is written
    blobs = set()
    for img in images:
        blobs.update(d.digest for d in (img.target, img.manifest, img.config, *img.layers))
    names = {_blob_name(d): d for d in blobs}
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_tar_info("blobs", directory=True))
            for alg in sorted({name.split("/")[1] for name in names}):
                tar.addfile(_tar_info(f"blobs/{alg}", directory=True))
            for name in sorted(names):
                d = names[name]
                size = blob_size(d)
                f = read_blob(d)
                try:
                    tar.addfile(_tar_info(name, size), _VerifiedReader(f, d, size))
                finally:
                    f.close()
            for name, data in sorted(docs.items()):
                tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
    except tarfile.TarError as e:
        raise SystemFailure(f"writing the archive: {e}") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace("no space left to write the archive") from None
        if e.errno is None:  # tarfile's "unexpected end of data": a blob shorter than its size
            raise SystemFailure(f"writing the archive: {e}") from None
        raise SystemFailure(f"writing the archive: {e.strerror}") from None

