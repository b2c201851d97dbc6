"""`images ls`, as ctr's `images ls`: REF, TYPE, DIGEST, SIZE, PLATFORMS, LABELS. Pulling and
running from an image come with the images issue.

SIZE and PLATFORMS are read from the content store as ctr reads them: the size of every blob
the image reaches (index, manifests, configs, layers); the platforms of an index's manifests,
or of a lone manifest's config. A blob that is not in the store counts with its descriptor's
size and is not looked into (as after a single-platform pull of a multi-platform index)."""

import json

from dockyard.api.services.content.v1 import content_pb2 as content_pb
from dockyard.api.services.images.v1 import images_pb2 as pb
from dockyard.errors import DockyardError

from ..output import Table, labels, progress_bytes
from . import verb, verbs

INDEXES = {"application/vnd.oci.image.index.v1+json",
           "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFESTS = {"application/vnd.oci.image.manifest.v1+json",
             "application/vnd.docker.distribution.manifest.v2+json"}
_MAX_BLOB = 4 << 20  # manifests and configs are small; anything larger is not one


def _read_json(session, digest: str, size: int):
    if size > _MAX_BLOB:
        return None
    try:
        data = b"".join(r.data for r in session.content.Read(content_pb.ReadContentRequest(digest=digest)))
        return json.loads(data)
    except (DockyardError, ValueError):
        return None


def _platform(p: dict) -> str:
    # containerd platforms.Format: os/arch[/variant]
    parts = [p.get("os") or "unknown", p.get("architecture") or "unknown"]
    return "/".join(parts + ([p["variant"]] if p.get("variant") else []))


def _walk(session, media_type: str, digest: str, size: int, platforms: set[str], depth: int = 0) -> int:
    """The bytes of the blob and everything it reaches; adds what it finds to `platforms`."""
    if depth > 4 or (media_type not in INDEXES and media_type not in MANIFESTS):
        return size
    doc = _read_json(session, digest, size)
    if not isinstance(doc, dict):
        return size
    total = size
    if media_type in INDEXES:
        for m in doc.get("manifests") or []:
            if not isinstance(m, dict):
                continue
            if isinstance(m.get("platform"), dict):
                platforms.add(_platform(m["platform"]))
            total += _walk(session, m.get("mediaType", ""), m.get("digest", ""), int(m.get("size", 0)),
                           platforms, depth + 1)
        return total
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    total += int(config.get("size", 0))
    total += sum(int(layer.get("size", 0)) for layer in doc.get("layers") or [] if isinstance(layer, dict))
    if depth == 0 and config.get("digest"):
        found = _read_json(session, config["digest"], int(config.get("size", 0)))
        if isinstance(found, dict) and found.get("architecture"):
            platforms.add(_platform(found))
    return total


def ls(session, args) -> int:
    found = session.images.List(pb.ListImagesRequest(filters=args.filters)).images
    if args.quiet:
        for image in found:
            print(image.name)
        return 0
    table = Table(minwidth=1, padding=1)
    table.row("REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS\t")
    for image in found:
        t = image.target
        platforms: set[str] = set()
        size = _walk(session, t.media_type, t.digest, t.size, platforms)
        table.row(f"{image.name}\t{t.media_type}\t{t.digest}\t{progress_bytes(size)}\t"
                  f"{','.join(sorted(platforms)) or '-'}\t{labels(image.labels)}\t")
    table.write()
    return 0


def configure(parser) -> None:
    sub = verbs(parser)
    p = verb(sub, "ls", ls, "list images known to dockyard-containerd", aliases=["list"])
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image refs")
    p.add_argument("filters", metavar="FILTER", nargs="*")
