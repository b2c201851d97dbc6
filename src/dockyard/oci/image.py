"""OCI image models: media types, descriptors, manifests, indexes, image configs, platforms.

Pure and stdlib-only, so every malformed input a registry or an archive can hand us is a unit
test. Sources: image-spec media-types.md, descriptor.md, manifest.md, image-index.md, config.md;
Docker's schema2 (distribution docs/spec/manifest-v2-2.md). Parsing never re-serialises: digests
are always of the exact bytes received, and callers keep those bytes."""

import json
import os as _os
from dataclasses import dataclass, field, replace

from dockyard.errors import InvalidArgument, NotFound, Unsupported
from dockyard.oci import digest as _digest

# --- media types (image-spec media-types.md; distribution manifest-v2-2.md) ---
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
_COMPRESSION = {
    OCI_LAYER: "none", OCI_LAYER_ND: "none", DOCKER_LAYER: "none",
    OCI_LAYER_GZIP: "gzip", OCI_LAYER_ND_GZIP: "gzip", DOCKER_LAYER_GZIP: "gzip",
    DOCKER_FOREIGN_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd", OCI_LAYER_ND_ZSTD: "zstd",
}
LAYER_TYPES = frozenset(_COMPRESSION)
# Send all four so a registry never falls back to schema1 (distribution-spec content-negotiation.md).
MANIFEST_ACCEPT = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST]

# Manifest cap as containerd and the distribution registry (4 MiB); configs can carry long
# histories, so allow more.
MAX_MANIFEST_SIZE = 4 << 20
MAX_CONFIG_SIZE = 8 << 20

# Content types that say nothing about which manifest this is.
_GENERIC_TYPES = frozenset({"", "application/json", "application/octet-stream", "text/plain"})


def _bare(media_type: str) -> str:
    """A media type without parameters (`; charset=utf-8`), lower-cased."""
    return media_type.split(";", 1)[0].strip().lower()


def compression_of(media_type: str) -> str | None:
    """"gzip", "zstd" or "none" for a known layer media type; None when we do not know it."""
    return _COMPRESSION.get(_bare(media_type or ""))


# --- platforms (image-index.md "platform"; containerd platforms normalisation) ---

_OS_ALIASES = {"macos": "darwin"}
# architecture alias -> (architecture, variant it implies or None to keep the given one)
_ARCH_ALIASES = {
    "x86_64": ("amd64", None), "x86-64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", None), "arm64": ("arm64", None),
    "armhf": ("arm", "v7"), "armel": ("arm", "v6"),
    "i386": ("386", None), "i686": ("386", None), "386": ("386", None),
}
_KNOWN_OS = frozenset({"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris",
                       "illumos", "android", "aix", "dragonfly", "plan9", "ios", "js", "wasip1"})
_KNOWN_ARCH = frozenset({"386", "amd64", "arm", "arm64", "ppc64", "ppc64le", "s390x", "riscv64",
                         "mips", "mipsle", "mips64", "mips64le", "loong64", "wasm", "sparc64"})


def _component_ok(s: str) -> bool:
    return bool(s) and all(c.isascii() and (c.isalnum() or c in "_-.") for c in s)


def _normalize_variant(arch: str, variant: str) -> str:
    if arch == "arm64":
        return {"8": "v8", "v8.0": "v8"}.get(variant, variant)
    if arch == "arm":
        if variant in ("", "7"):
            return "v7"
        return {"5": "v5", "6": "v6", "8": "v8"}.get(variant, variant)
    if arch == "amd64":
        return "" if variant in ("v1", "1") else variant
    return variant


@dataclass(frozen=True)
class Platform:
    """The platform an image runs on (image-index.md). Values are Go's GOOS/GOARCH names."""
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple = ()

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """Docker's `--platform`: "os", "arch", "os/arch" or "os/arch/variant", normalised."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument("invalid platform: must not be empty")
        parts = text.strip().lower().split("/")
        if len(parts) > 3 or not all(_component_ok(p) for p in parts):
            raise InvalidArgument(f"invalid platform {text[:80]!r}: want os[/arch[/variant]]")
        if len(parts) == 1:
            (word,) = parts
            word = _OS_ALIASES.get(word, word)
            if word in _KNOWN_OS:
                host = host_platform()
                return cls(word, host.architecture, host.variant)
            if word in _KNOWN_ARCH or word in _ARCH_ALIASES:
                return cls("linux", word).normalized()
            raise InvalidArgument(f"invalid platform {text[:80]!r}: unknown operating system "
                                  "or architecture")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "").normalized()

    def normalized(self) -> "Platform":
        """Aliases resolved as containerd does: x86_64→amd64, aarch64→arm64, armhf→arm/v7,
        arm without variant→arm/v7, amd64/v1→amd64."""
        os_ = self.os.lower()
        os_ = _OS_ALIASES.get(os_, os_)
        arch, variant = self.architecture.lower(), self.variant.lower()
        arch, implied = _ARCH_ALIASES.get(arch, (arch, None))
        if implied is not None and not variant:
            variant = implied
        return replace(self, os=os_, architecture=arch, variant=_normalize_variant(arch, variant))

    def format(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def from_dict(cls, d, what: str = "platform") -> "Platform":
        """From an OCI `platform` object, kept as given (matching normalises)."""
        if not isinstance(d, dict):
            raise InvalidArgument(f"{what}: must be an object")
        values = {}
        for key in ("os", "architecture", "variant", "os.version"):
            v = d.get(key, "")
            if not isinstance(v, str):
                raise InvalidArgument(f"{what}: {key} must be a string")
            values[key] = v
        if not values["os"] or not values["architecture"]:
            raise InvalidArgument(f"{what}: os and architecture are required")
        features = d.get("os.features") or []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise InvalidArgument(f"{what}: os.features must be a list of strings")
        return cls(values["os"], values["architecture"], values["variant"],
                   values["os.version"], tuple(features))

    def to_dict(self) -> dict:
        d = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        if self.variant:
            d["variant"] = self.variant
        return d


_MACHINES = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"), "aarch64_be": ("arm64", "v8"),
    "armv8l": ("arm", "v8"), "armv7l": ("arm", "v7"), "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"), "armv5tel": ("arm", "v5"), "armv5tejl": ("arm", "v5"),
    "i386": ("386", ""), "i486": ("386", ""), "i586": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "ppc64": ("ppc64", ""), "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""), "mips64": ("mips64", ""), "loongarch64": ("loong64", ""),
}


def host_platform() -> Platform:
    """The platform of this machine, from the kernel's machine name (this engine runs on Linux)."""
    machine = _os.uname().machine.lower()
    arch, variant = _MACHINES.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def _variant_vector(p: Platform) -> list[str]:
    """Variants acceptable for `p` (normalised), best first — containerd's platform vector:
    amd64 v3 → v2 → v1; arm v7 → v6 → v5; arm64 v8 and no variant are the same."""
    v = p.variant
    if p.architecture == "amd64" and v.startswith("v") and v[1:].isdigit():
        return [f"v{n}" for n in range(int(v[1:]), 1, -1)] + [""]
    if p.architecture == "arm" and v.startswith("v") and v[1:].isdigit():
        return [f"v{n}" for n in range(int(v[1:]), 4, -1)]
    if p.architecture == "arm64" and v in ("", "v8"):
        return ["v8", ""]
    return [v]


def _rank(want: Platform, have: Platform) -> int | None:
    """Position of `have` in want's fallback vector (0 = exact), or None if it cannot run."""
    want, have = want.normalized(), have.normalized()
    if want.os != have.os or want.architecture != have.architecture:
        return None
    vector = _variant_vector(want)
    try:
        return vector.index(have.variant)
    except ValueError:
        return None


def matches(want: Platform, have: Platform) -> bool:
    """Whether an image built for `have` runs on `want` (exact, or a variant `want` can run)."""
    return _rank(want, have) is not None


# --- descriptors, manifests, indexes ---


def _string_map(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise InvalidArgument(f"{what}: must be an object of strings")
    return dict(value)


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (descriptor.md). The first four fields are those of
    `dockyard.containerd.metadata.Descriptor`."""
    media_type: str
    digest: str
    size: int
    annotations: dict = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple = ()
    artifact_type: str = ""

    @classmethod
    def from_dict(cls, d, what: str = "descriptor") -> "Descriptor":
        if not isinstance(d, dict):
            raise InvalidArgument(f"{what}: must be an object")
        media_type = d.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidArgument(f"{what}: mediaType must be a non-empty string")
        dig = d.get("digest")
        try:
            _digest.validate(dig)
        except InvalidArgument as e:
            raise InvalidArgument(f"{what}: {e}") from None
        size = d.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"{what}: size must be a non-negative integer")
        annotations = _string_map(d.get("annotations"), f"{what}: annotations")
        platform = None
        if d.get("platform") is not None:
            platform = Platform.from_dict(d["platform"], f"{what}: platform")
        urls = d.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidArgument(f"{what}: urls must be a list of strings")
        artifact_type = d.get("artifactType", "")
        if not isinstance(artifact_type, str):
            raise InvalidArgument(f"{what}: artifactType must be a string")
        return cls(media_type, dig, size, annotations, platform, tuple(urls), artifact_type)

    def to_dict(self) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d


@dataclass(frozen=True)
class Manifest:
    """An image manifest (manifest.md; Docker schema2)."""
    media_type: str
    config: Descriptor
    layers: tuple
    annotations: dict = field(default_factory=dict)
    subject: Descriptor | None = None

    def to_dict(self) -> dict:
        d = {"schemaVersion": 2, "mediaType": self.media_type, "config": self.config.to_dict(),
             "layers": [layer.to_dict() for layer in self.layers]}
        if self.subject is not None:
            d["subject"] = self.subject.to_dict()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


@dataclass(frozen=True)
class Index:
    """An image index / Docker manifest list (image-index.md)."""
    media_type: str
    manifests: tuple
    annotations: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"schemaVersion": 2, "mediaType": self.media_type,
             "manifests": [m.to_dict() for m in self.manifests]}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


def _load_json(data: bytes, limit: int, what: str) -> dict:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"{what}: must be bytes")
    if len(data) > limit:
        raise InvalidArgument(f"{what} is {len(data)} bytes, larger than the {limit} byte limit")
    try:
        obj = json.loads(bytes(data))
    except (ValueError, RecursionError) as e:
        raise InvalidArgument(f"{what} is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return obj


def _schema1() -> Unsupported:
    return Unsupported("schema1 manifests are not supported (Docker removed them in 28.2); "
                       "repush the image")


def parse_manifest(data: bytes, content_type: str = "") -> Manifest | Index:
    """Parse a manifest or index from the exact bytes a registry or archive gave us.

    The type comes from the body's `mediaType`, else `content_type`, else the shape (OCI types);
    when both say, they must agree (distribution-spec: a manifest's mediaType must match its
    Content-Type). Generic content types (application/json, octet-stream) say nothing."""
    ct = _bare(content_type or "")
    if ct in (DOCKER_SCHEMA1_SIGNED, _DOCKER_SCHEMA1):
        raise _schema1()
    obj = _load_json(data, MAX_MANIFEST_SIZE, "manifest")
    version = obj.get("schemaVersion")
    if version == 1 and not isinstance(version, bool):
        raise _schema1()
    if version != 2 or isinstance(version, bool):
        raise InvalidArgument(f"manifest: schemaVersion must be 2, not {str(version)[:20]}")
    body_mt = obj.get("mediaType")
    if body_mt is not None and not isinstance(body_mt, str):
        raise InvalidArgument("manifest: mediaType must be a string")
    body_mt = body_mt or ""
    if ct in _GENERIC_TYPES:
        ct = ""
    if body_mt and ct and _bare(body_mt) != ct:
        raise InvalidArgument(f"manifest: mediaType {body_mt[:100]!r} does not match the "
                              f"content type {ct[:100]!r}")
    media_type = body_mt or ct
    if not media_type:
        if "manifests" in obj:
            media_type = OCI_INDEX
        elif "config" in obj and "layers" in obj:
            media_type = OCI_MANIFEST
        else:
            raise InvalidArgument("manifest: no mediaType and neither manifests nor config/layers")
    if media_type in (DOCKER_SCHEMA1_SIGNED, _DOCKER_SCHEMA1):
        raise _schema1()
    annotations = _string_map(obj.get("annotations"), "manifest: annotations")
    if media_type in INDEX_TYPES:
        # A document must not be readable both ways (image-spec's guard against type confusion).
        if "config" in obj or "layers" in obj:
            raise InvalidArgument("index: has config/layers fields of an image manifest")
        manifests = obj.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidArgument("index: manifests must be a list")
        return Index(media_type, tuple(Descriptor.from_dict(m, f"index: manifests[{i}]")
                                       for i, m in enumerate(manifests)), annotations)
    if media_type in MANIFEST_TYPES:
        if "manifests" in obj:
            raise InvalidArgument("manifest: has the manifests field of an index")
        config = Descriptor.from_dict(obj.get("config"), "manifest: config")
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise InvalidArgument("manifest: layers must be a list")
        subject = None
        if obj.get("subject") is not None:
            subject = Descriptor.from_dict(obj["subject"], "manifest: subject")
        return Manifest(media_type, config,
                        tuple(Descriptor.from_dict(layer, f"manifest: layers[{i}]")
                              for i, layer in enumerate(layers)),
                        annotations, subject)
    raise Unsupported(f"unsupported manifest media type {media_type[:100]!r}")


def _is_attestation(desc: Descriptor) -> bool:
    if desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    p = desc.platform
    return p is not None and p.os == "unknown" and p.architecture == "unknown"


def select_manifest(index: Index, want: Platform) -> Descriptor:
    """The manifest of `index` for platform `want`: the best variant in containerd's fallback
    order, the first such entry in index order (image-index.md: "the first matching entry SHOULD
    be used"). Attestations and unknown media types are skipped; an entry without a platform
    is a last resort, as containerd takes it."""
    best, best_rank = None, None
    unplatformed = None
    available = []
    for desc in index.manifests:
        if desc.media_type not in MANIFEST_TYPES or _is_attestation(desc):
            continue
        if desc.platform is None:
            unplatformed = unplatformed or desc
            continue
        name = desc.platform.format()
        if name not in available:
            available.append(name)
        rank = _rank(want, desc.platform)
        if rank is not None and (best_rank is None or rank < best_rank):
            best, best_rank = desc, rank
    if best is not None:
        return best
    if unplatformed is not None:
        return unplatformed
    listed = ", ".join(available) or "none"
    raise NotFound(f"no matching manifest for {want.format()} in the manifest list entries "
                   f"(available: {listed})")


# --- image config (config.md) ---


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config (config.md) the engine acts on; `raw` keeps the rest."""
    raw: dict
    os: str
    architecture: str
    variant: str
    diff_ids: tuple
    config: dict
    history: tuple
    created: str

    @property
    def platform(self) -> Platform:
        os_version = self.raw.get("os.version", "")
        features = self.raw.get("os.features") or []
        return Platform(self.os, self.architecture, self.variant,
                        os_version if isinstance(os_version, str) else "",
                        tuple(f for f in features if isinstance(f, str))
                        if isinstance(features, list) else ())


def parse_config(data: bytes) -> ImageConfig:
    obj = _load_json(data, MAX_CONFIG_SIZE, "image config")
    strings = {}
    for key in ("os", "architecture", "variant", "created"):
        v = obj.get(key)
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise InvalidArgument(f"image config: {key} must be a string")
        strings[key] = v
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict):
        raise InvalidArgument("image config: rootfs must be an object")
    if rootfs.get("type") != "layers":
        raise InvalidArgument(f"image config: rootfs.type must be 'layers', "
                              f"not {str(rootfs.get('type'))[:40]!r}")
    diff_ids = rootfs.get("diff_ids")
    if diff_ids is None:
        diff_ids = []
    if not isinstance(diff_ids, list):
        raise InvalidArgument("image config: rootfs.diff_ids must be a list")
    for i, d in enumerate(diff_ids):
        try:
            _digest.validate(d)
        except InvalidArgument as e:
            raise InvalidArgument(f"image config: rootfs.diff_ids[{i}]: {e}") from None
    config = obj.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise InvalidArgument("image config: config must be an object")
    history = obj.get("history")
    if history is None:
        history = []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise InvalidArgument("image config: history must be a list of objects")
    return ImageConfig(obj, strings["os"], strings["architecture"], strings["variant"],
                       tuple(diff_ids), config, tuple(history), strings["created"])


def chain_ids(diff_ids) -> list[str]:
    """ChainIDs of a layer stack (config.md "Layer ChainID"): ChainID(L0) = DiffID(L0);
    ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        _digest.validate(d)
        out.append(d if not out else _digest.sha256(f"{out[-1]} {d}".encode()))
    return out


def canonical_json(obj) -> bytes:
    """Deterministic JSON for documents we write (sorted keys, no spaces, UTF-8)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
