"""The image routes of the Engine API (spec docker-engine-api-v1.45.yaml, tag "Image"; reference
engine-api.md §1.3, §1.7, §2):

    POST   /images/create          pull (fromImage, tag, platform) or import (fromSrc=-, repo, tag)
    GET    /images/json            list (all, filters, digests)
    GET    /images/{name}/json     inspect            GET /images/{name}/history
    POST   /images/{name}/tag      (repo, tag) → 201  POST /images/{name}/push (tag)
    DELETE /images/{name}          (force, noprune)   POST /images/prune (filters)
    GET    /images/get             save (names…)      GET /images/{name}/get
    POST   /images/load            (quiet)            GET /images/search → 501
    POST   /auth                   login check        GET /distribution/{name}/json

Names may hold slashes ("127.0.0.1:5000/team/app:1"), so the name routes take everything before
their last path element. Pull, push, load and import answer a JSON stream of Docker's progress
messages (E2 jsonmessage); like dockerd, the 200 is only sent with the first message, so an
operation that fails before it has anything to say (an unknown image, a refused login) is a plain
HTTP error the CLI prints; after that, errors go in-band with `errorDetail`.
"""

from __future__ import annotations

import re

from aiohttp import web

from dockyard.engine import jsonmessage
from dockyard.engine.api import DAEMON, httputil
from dockyard.engine.api.middleware import add_headers
from dockyard.engine.images import Auth, inspect, pull_reference, summary
from dockyard.errors import DockyardError, InvalidArgument, Unsupported

_BODY_CHUNK = 1 << 20
_PUSHED = re.compile(r"(?P<tag>\S+): digest: (?P<digest>sha256:[0-9a-f]{64}) size: (?P<size>\d+)\Z")


def _images(request: web.Request):
    return request.app[DAEMON].images


def _version(request: web.Request) -> str:
    return request.get("api_version") or "1.45"


def _auth_header(request: web.Request) -> Auth:
    return Auth.from_header(request.headers.get("X-Registry-Auth"))


async def _body(request: web.Request):
    """The request body, in chunks as they arrive (plain or chunked transfer encoding)."""
    async for data in request.content.iter_chunked(_BODY_CHUNK):
        yield data


async def _json_messages(request: web.Request, messages, convert) -> web.StreamResponse:
    """Streams `convert(m)` (a dict, or None to skip) of each message of the async iterator
    `messages`; the response starts with the first message, so earlier errors are HTTP ones."""
    first = None
    async for m in messages:
        first = convert(m)
        if first is not None:
            break
    writer = await httputil.json_stream(request)
    try:
        if first is not None:
            await writer.send(first)
            async for m in messages:
                obj = convert(m)
                if obj is not None:
                    await writer.send(obj)
    except DockyardError as e:
        await writer.send(jsonmessage.error_message(str(e)))
    except ConnectionResetError:
        return writer  # the client left: closing `messages` cancels the operation
    finally:
        await messages.aclose()
    await writer.close()
    return writer


def _progress(m) -> dict | None:
    return jsonmessage.progress_message(m) if m.status else None


# --- pull and import ---------------------------------------------------------------------------

async def create(request: web.Request) -> web.StreamResponse:
    q = request.query
    images = _images(request)
    from_image, from_src = q.get("fromImage", ""), q.get("fromSrc", "")
    if from_image:
        ref = pull_reference(from_image, q.get("tag", ""))
        messages = images.pull(ref, platform=q.get("platform", ""), auth=_auth_header(request))
        return await _json_messages(request, messages, _progress)
    if from_src:
        if from_src != "-":
            raise Unsupported("importing from a URL is not supported: send the tarball as the "
                              "request body with fromSrc=-")
        changes = q.getall("changes", [])
        messages = images.import_(_body(request), repo=q.get("repo", ""), tag=q.get("tag", ""),
                                  platform=q.get("platform", ""), message=q.get("message", ""),
                                  changes=[c for c in changes if c])
        return await _json_messages(request, messages, _import_status)
    raise InvalidArgument("either fromImage or fromSrc is required")


def _import_status(m) -> dict | None:
    if m.status.startswith("sha256:"):
        return {"status": m.status}  # dockerd's import answer: the new image's ID
    return _progress(m)


# --- list, inspect, history --------------------------------------------------------------------

async def list_images(request: web.Request) -> web.Response:
    httputil.query_bool(request, "all", False)  # no intermediate images here: validated only
    digests = httputil.query_bool(request, "digests", False)
    found = await _images(request).list(httputil.query_filters(request))
    out = []
    for info in found:
        s = summary(info, _version(request))
        if not digests and _older(request, (1, 42)):
            s.pop("RepoDigests", None)
        out.append(s)
    return httputil.json_response(out)


def _older(request: web.Request, version: tuple[int, int]) -> bool:
    try:
        major, minor = (int(x) for x in _version(request).split(".", 1))
    except ValueError:
        return False
    return (major, minor) < version


async def inspect_image(request: web.Request) -> web.Response:
    info = await _images(request).resolve(request.match_info["name"])
    return httputil.json_response(inspect(info, _version(request)))


async def history(request: web.Request) -> web.Response:
    return httputil.json_response(await _images(request).history(request.match_info["name"]))


# --- names -------------------------------------------------------------------------------------

async def tag(request: web.Request) -> web.Response:
    await _images(request).tag(request.match_info["name"], request.query.get("repo", ""),
                               request.query.get("tag", ""))
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    force = httputil.query_bool(request, "force", False)
    noprune = httputil.query_bool(request, "noprune", False)
    return httputil.json_response(await _images(request).remove(request.match_info["name"], force, noprune))


async def prune(request: web.Request) -> web.Response:
    return httputil.json_response(await _images(request).prune(httputil.query_filters(request)))


# --- push --------------------------------------------------------------------------------------

async def push(request: web.Request) -> web.StreamResponse:
    auth = _auth_header(request)
    messages = _images(request).push(request.match_info["name"], request.query.get("tag", ""), auth=auth)
    pending: list[dict] = []

    def convert(m) -> dict | None:
        if m.digest and not m.status:
            return None  # the result: the aux message below carries it
        if not m.status:
            return None
        obj = jsonmessage.progress_message(m)
        pushed = _PUSHED.match(m.status)
        if pushed:  # dockerd follows this line with the aux the CLI (and docker-py) read
            pending.append(jsonmessage.aux_message({"Tag": pushed["tag"], "Digest": pushed["digest"],
                                                    "Size": int(pushed["size"])}))
        return obj

    async def with_aux():
        async for m in messages:
            yield m
            while pending:
                yield _Raw(pending.pop(0))

    def route(m):
        return m.obj if isinstance(m, _Raw) else convert(m)

    return await _json_messages(request, with_aux(), route)


class _Raw:
    """An already converted message, passed through `_json_messages` as is."""

    def __init__(self, obj: dict):
        self.obj = obj


# --- save and load -----------------------------------------------------------------------------

async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    chunks = _images(request).save(names)
    first = b""
    async for data in chunks:
        if data:
            first = data
            break
    response = web.StreamResponse(status=200)
    response.content_type = "application/x-tar"
    response.enable_chunked_encoding()
    request[httputil.STREAM] = response
    add_headers(request, response.headers)
    await response.prepare(request)
    try:
        if first:
            await response.write(first)
            async for data in chunks:
                await response.write(data)
    except (DockyardError, ConnectionResetError):
        # After the 200 there is no way to tell a tar reader: cut the stream short (the
        # client's tar reader fails on the truncated archive, as with dockerd).
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        await chunks.aclose()
    await response.write_eof()
    return response


async def save_many(request: web.Request) -> web.StreamResponse:
    names = [n for n in request.query.getall("names", []) if n]
    if not names:
        raise InvalidArgument("no images to save: give names=")
    return await _save(request, names)


async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def load(request: web.Request) -> web.StreamResponse:
    quiet = httputil.query_bool(request, "quiet", False)

    def convert(m) -> dict | None:
        if m.status.startswith("Loaded image"):
            return jsonmessage.stream_message(m.status + "\n")
        return None if quiet else _progress(m)

    return await _json_messages(request, _images(request).load(_body(request)), convert)


# --- registries --------------------------------------------------------------------------------

async def auth(request: web.Request) -> web.Response:
    body = await httputil.read_json(request)
    return httputil.json_response(await _images(request).login(Auth.from_dict(body)))


async def search(request: web.Request) -> web.Response:
    if not request.query.get("term"):
        raise InvalidArgument("term is required")
    raise Unsupported("search is not supported: dockyardd has no Docker Hub access")


async def distribution(request: web.Request) -> web.Response:
    return httputil.json_response(await _images(request).distribution(
        request.match_info["name"], _auth_header(request)))


def routes() -> list[web.RouteDef]:
    # The fixed paths first: "/images/json" must not be read as an image named "json".
    return [
        web.post("/images/create", create),
        web.get("/images/json", list_images),
        web.get("/images/search", search),
        web.get("/images/get", save_many),
        web.post("/images/load", load),
        web.post("/images/prune", prune),
        web.get(r"/images/{name:.+}/json", inspect_image),
        web.get(r"/images/{name:.+}/history", history),
        web.get(r"/images/{name:.+}/get", save_one),
        web.post(r"/images/{name:.+}/tag", tag),
        web.post(r"/images/{name:.+}/push", push),
        web.delete(r"/images/{name:.+}", remove),
        web.post("/auth", auth),
        web.get(r"/distribution/{name:.+}/json", distribution),
    ]

