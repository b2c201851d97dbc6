"""`images`: ls, pull, push, rm, tag, save (export), load and import.

`ls` is ctr's `images ls`: REF, TYPE, DIGEST, SIZE, PLATFORMS, LABELS. Pull, push, save, load
and import run in the daemon (the Transfer service) and show its progress as Docker's CLI does
(ctr/progress.py); tag and rm are changes of image records (the Images service), as in ctr.
A reference may be given as the user types it ("busybox"): an image is looked up by that exact
name first, then by the normalized one ("docker.io/library/busybox:latest").

Registry credentials: `--user USER[:PASSWORD]` (the password is asked for on the terminal when
left out), or else the Docker config's entry for the registry (~/.docker/config.json, its
credential helpers), as `docker pull` finds them. They travel in the request, over the daemon's
unix socket, and nowhere else.

SIZE and PLATFORMS are read from the content store as ctr reads them: the size of every blob
the image reaches (index, manifests, configs, layers); the platforms of an index's manifests,
or of a lone manifest's config. A blob that is not in the store counts with its descriptor's
size and is not looked into (as after a single-platform pull of a multi-platform index)."""

import argparse
import contextlib
import getpass
import json
import os
import shutil
import sys

from dockyard.api.services.content.v1 import content_pb2 as content_pb
from dockyard.api.services.images.v1 import images_pb2 as pb
from dockyard.api.services.transfer.v1 import transfer_pb2 as transfer_pb
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.images import reference
from dockyard.oci import image as oci

from ..output import Table, labels, progress_bytes
from ..progress import ProgressDisplay
from . import verb, verbs

CHUNK = 1 << 20  # bytes per Import message

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


def _normalized(text: str) -> str:
    return str(reference.parse(text))


def image_name(session, text: str) -> str:
    """The name of the image `text` means: itself if an image has that name, else the
    normalized reference if one has that."""
    try:
        return session.images.Get(pb.GetImageRequest(name=text)).image.name
    except NotFound:
        try:
            normalized = _normalized(text)
        except InvalidArgument:
            raise NotFound(f"image {text[:200]}: not found") from None
        if normalized == text:
            raise
        return session.images.Get(pb.GetImageRequest(name=normalized)).image.name


def _read_blob(session, digest: str) -> bytes:
    return b"".join(r.data for r in session.content.Read(content_pb.ReadContentRequest(digest=digest)))


def image_config(session, name: str) -> tuple[oci.ImageConfig, str]:
    """The config of image `name` for this host (through an index, among the manifests the
    content store holds) and its top chain id: the snapshot a container of it starts from."""
    target = session.images.Get(pb.GetImageRequest(name=name)).image.target
    media_type, digest = target.media_type, target.digest
    if media_type in oci.INDEX_TYPES:
        index = oci.parse_manifest(_read_blob(session, digest), media_type)
        present = []
        for m in index.manifests:
            try:
                session.content.Info(content_pb.InfoRequest(digest=m.digest))
                present.append(m)
            except NotFound:
                continue
        chosen = oci.select_manifest(oci.Index(index.media_type, tuple(present)), oci.host_platform())
        media_type, digest = chosen.media_type, chosen.digest
    manifest = oci.parse_manifest(_read_blob(session, digest), media_type)
    if not isinstance(manifest, oci.Manifest):
        raise InvalidArgument(f"image {name}: {digest} is not an image manifest")
    config = oci.parse_config(_read_blob(session, manifest.config.digest))
    if not config.diff_ids:
        raise InvalidArgument(f"image {name} has no layers to run from")
    return config, oci.chain_ids(config.diff_ids)[-1]


def _registry_options(args, ref: str) -> transfer_pb.RegistryOptions:
    options = transfer_pb.RegistryOptions(plain_http=args.plain_http)
    if args.user:
        user, sep, password = args.user.partition(":")
        if not sep:
            if not sys.stdin.isatty():
                raise InvalidArgument("--user without a password needs a terminal to ask for it")
            password = getpass.getpass("Password: ")
        options.auth.username, options.auth.password = user, password
        return options
    from dockyard.images import credentials
    found = credentials.lookup(reference.parse(ref).domain)
    if found:
        options.auth.username, options.auth.password = found.username, found.password
        options.auth.identitytoken, options.auth.registrytoken = found.identitytoken, found.registrytoken
    return options


def _display() -> ProgressDisplay:
    return ProgressDisplay(sys.stdout, terminal=sys.stdout.isatty(),
                           width=shutil.get_terminal_size().columns)


def _follow(messages) -> list[transfer_pb.Progress]:
    """Shows the progress messages of a Transfer stream; returns the result messages."""
    display, results = _display(), []
    for m in messages:
        if m.images or m.digest:
            results.append(m)
        elif m.status:
            display.update(m)
    return results


def pull(session, args) -> int:
    if not reference.parse(args.ref, default_tag=None).object:
        print("Using default tag: latest", flush=True)
    request = transfer_pb.PullRequest(ref=args.ref, platform=args.platform or "",
                                      registry=_registry_options(args, args.ref),
                                      max_concurrent_downloads=args.max_concurrent_downloads,
                                      skip_unpack=args.skip_unpack)
    for result in _follow(session.transfer.Pull(request)):
        for image in result.images:
            print(image.name)
    return 0


def push(session, args) -> int:
    name = image_name(session, args.ref)
    request = transfer_pb.PushRequest(ref=name, registry=_registry_options(args, name),
                                      chunk_size=args.chunk_size or 0)
    _follow(session.transfer.Push(request))
    return 0


def rm(session, args) -> int:
    """ctr's `images rm`: each name removed is printed; a missing one is an error after the
    others are done."""
    missing = []
    for text in args.refs:
        try:
            name = image_name(session, text)
            session.images.Delete(pb.DeleteImageRequest(name=name, sync=args.sync))
        except NotFound:
            missing.append(text)
            continue
        print(name)
    if missing:
        raise NotFound(f"image {', '.join(missing)[:400]}: not found")
    return 0


def tag(session, args) -> int:
    source = session.images.Get(pb.GetImageRequest(name=image_name(session, args.source))).image
    for text in args.targets:
        target = _normalized(text)
        image = pb.Image(name=target, labels=source.labels, target=source.target)
        try:
            session.images.Create(pb.CreateImageRequest(image=image))
        except Conflict:
            if not args.force:
                raise Conflict(f"image {target}: already exists (use --force to move it)") from None
            session.images.Update(pb.UpdateImageRequest(image=image))
        print(target)
    return 0


def save(session, args) -> int:
    names = [image_name(session, text) for text in args.refs]
    if not args.output and sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal: use -o FILE or redirect")
    chunks = session.transfer.Export(transfer_pb.ExportRequest(names=names))
    if not args.output:
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk.data)
        out.flush()
        return 0
    try:
        with open(args.output, "wb") as out:
            for chunk in chunks:
                out.write(chunk.data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(args.output)  # no half-written archive left behind
        raise
    return 0


def _open_input(path: str | None):
    if not path or path == "-":
        if sys.stdin.isatty():
            raise InvalidArgument("nothing to read: give a file, or redirect stdin")
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as e:
        raise InvalidArgument(f"cannot open {path}: {e.strerror}") from None


def _import(session, options: transfer_pb.ImportOptions, source) -> list[transfer_pb.Progress]:
    def requests():
        yield transfer_pb.ImportRequest(options=options)
        while data := source.read(CHUNK):
            yield transfer_pb.ImportRequest(data=data)
    return _follow(session.transfer.Import(requests()))


def load(session, args) -> int:
    source = _open_input(args.input)
    _import(session, transfer_pb.ImportOptions(format="auto"), source)
    return 0


def import_(session, args) -> int:
    source = _open_input(args.file)
    _import(session, transfer_pb.ImportOptions(format="rootfs", name=args.name,
                                               platform=args.platform or ""), source)
    return 0


def _registry_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-u", "--user", metavar="USER[:PASSWORD]", help="registry user and password")
    p.add_argument("--plain-http", action="store_true",
                   help="allow plain HTTP to the registry (loopback registries always are)")


def configure(parser) -> None:
    sub = verbs(parser)
    p = verb(sub, "ls", ls, "list images known to dockyard-containerd", aliases=["list"])
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image refs")
    p.add_argument("filters", metavar="FILTER", nargs="*")

    p = verb(sub, "pull", pull, "pull an image from a registry and unpack it")
    p.add_argument("--platform", help="the platform to pull (os/arch[/variant]; default this host's)")
    p.add_argument("--max-concurrent-downloads", type=int, default=3, metavar="N",
                   help="layers downloaded at once (default 3)")
    p.add_argument("--skip-unpack", action="store_true", help="fetch the content only, make no snapshots")
    _registry_flags(p)
    p.add_argument("ref", metavar="REF")

    p = verb(sub, "push", push, "push an image to its registry")
    p.add_argument("--chunk-size", type=int, metavar="BYTES",
                   help="upload blobs in chunks of this size (default: each in one request)")
    _registry_flags(p)
    p.add_argument("ref", metavar="REF")

    p = verb(sub, "rm", rm, "remove images", aliases=["remove", "delete", "del"])
    p.add_argument("--sync", action="store_true",
                   help="wait for the garbage collection the removal allows")
    p.add_argument("refs", metavar="REF", nargs="+")

    p = verb(sub, "tag", tag, "give an image other names")
    p.add_argument("--force", action="store_true", help="move a name that exists already")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("targets", metavar="TARGET", nargs="+")

    p = verb(sub, "save", save, "write images to a docker-save archive", aliases=["export"])
    p.add_argument("-o", "--output", metavar="FILE", help="the archive to write (default stdout)")
    p.add_argument("refs", metavar="REF", nargs="+")

    p = verb(sub, "load", load, "load images from a docker-save or OCI archive")
    p.add_argument("-i", "--input", metavar="FILE", help="the archive to read (default stdin)")

    p = verb(sub, "import", import_, "make a one-layer image from a root filesystem tarball")
    p.add_argument("--platform", help="the platform the image is for (default this host's)")
    p.add_argument("file", metavar="FILE", help='the tarball (plain or compressed); "-" for stdin')
    p.add_argument("name", metavar="NAME")
