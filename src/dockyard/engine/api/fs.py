"""Container filesystem and usage routes (docker-engine-api-v1.45.yaml; moby api/server/router/
container/{container_routes.go,copy.go}):

    GET  /containers/{id}/top        ?ps_args          ContainerTopResponse
    GET  /containers/{id}/stats      ?stream ?one-shot  ContainerStatsResponse (a JSON stream)
    GET  /containers/{id}/changes                       [FilesystemChange]
    GET  /containers/{id}/export                        application/x-tar
    HEAD /containers/{id}/archive    ?path              X-Docker-Container-Path-Stat
    GET  /containers/{id}/archive    ?path              the header + application/x-tar
    PUT  /containers/{id}/archive    ?path ?noOverwriteDirNonDir ?copyUIDGID   body: a tar

`docker cp` (cli/command/container/cp.go) HEADs the destination (exists? a directory? a
symlink, whose linkTarget it follows), then PUTs a tar whose names it has already rebased onto
the destination's name; from a container it GETs the path and reads the stat header for the
entries' base name. The file work is in engine/fs.py, contained in the container's root.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from aiohttp import web

from dockyard.api.services.snapshots.v1 import snapshots_pb2 as spb
from dockyard.api.services.transfer.v1 import transfer_pb2 as xpb
from dockyard.containerd import snapshots as csnapshots
from dockyard.engine import fs, stats
from dockyard.errors import InvalidArgument, NotFound

from . import httputil
from .httputil import query_bool

log = logging.getLogger(__name__)

SNAPSHOTTER = "overlayfs"
STATS_INTERVAL = 1.0   # seconds between streamed samples, as dockerd's collector


def _daemon(request):
    from . import DAEMON
    return request.app[DAEMON]


def _container(request):
    return _daemon(request).store.get(request.match_info["id"])


# -- top, stats ---------------------------------------------------------------------------------------

async def container_top(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    c = _container(request)
    return httputil.json_response(await stats.top(daemon, c, request.query.get("ps_args", "")))


async def container_stats(request: web.Request) -> web.StreamResponse:
    daemon = _daemon(request)
    c = _container(request)
    stream = query_bool(request, "stream", True)
    one_shot = query_bool(request, "one-shot", False)
    if stream and one_shot:
        raise InvalidArgument("cannot have stream=true and one-shot=true")
    sampler = stats.Sampler(daemon, c)
    if not stream:
        first = await sampler.sample()
        if one_shot or not c.state.running:
            return httputil.json_response(first)
        # As dockerd: the second sample, so that precpu_stats is real and CPU % can be shown.
        await httputil.until_disconnected(request, asyncio.sleep(STATS_INTERVAL))
        return httputil.json_response(await sampler.sample())
    out = await httputil.json_stream(request)
    try:
        while True:
            try:
                sample = await sampler.sample()
            except NotFound:
                break   # removed
            await out.send(sample)
            await httputil.until_disconnected(request, asyncio.sleep(STATS_INTERVAL))
    except ConnectionResetError:
        return out
    await out.close()
    return out


# -- changes, export ----------------------------------------------------------------------------------

async def _snapshot_mounts(daemon, cid: str) -> list:
    cd = daemon.containerd
    reply = await cd.call(cd.snapshots.Mounts, spb.MountsRequest(snapshotter=SNAPSHOTTER, key=cid))
    return [csnapshots.Mount(m.type, m.source, list(m.options)) for m in reply.mounts]


async def container_changes(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    c = _container(request)
    upper, lowers = fs.overlay_dirs(await _snapshot_mounts(daemon, c.id))
    return httputil.json_response(await asyncio.to_thread(fs.changes, upper, lowers))


async def container_export(request: web.Request) -> web.StreamResponse:
    daemon = _daemon(request)
    c = _container(request)
    cd = daemon.containerd
    call = cd.transfer.Export(xpb.ExportRequest(snapshot_key=c.id))
    chunks = call.__aiter__()
    try:
        first = await chunks.__anext__()   # an error before any byte is still a status
    except StopAsyncIteration:
        first = None
    except grpc.RpcError as e:
        raise cd.errors(e) from None
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await response.prepare(request)
    try:
        if first is not None:
            await response.write(first.data)
            async for chunk in chunks:
                await response.write(chunk.data)
    except (ConnectionResetError, asyncio.CancelledError):
        call.cancel()
        raise
    except grpc.RpcError as e:
        log.warning("export of %s cut short: %s", c.id, cd.errors(e))
        _abort(request)
        return response
    await response.write_eof()
    return response


def _abort(request: web.Request) -> None:
    """End a response whose headers went out: the client sees a truncated body, not a tar
    that looks whole."""
    if request.transport is not None:
        request.transport.abort()


# -- archive ------------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _root(daemon, c, *, writable: bool = False):
    """The container's root as an fd (engine/fs.py Root): its init's while it runs, else its
    snapshot mounted on a private directory."""
    root = None
    if c.state.running and c.state.pid:
        try:
            root = await asyncio.to_thread(fs.Root.of_process, c.state.pid, c.id)
        except fs._NotRunning:  # noqa: SLF001 - exited meanwhile: the snapshot it is
            root = None
    if root is None:
        mounts = await _snapshot_mounts(daemon, c.id)
        scratch = f"{daemon.config.exec_root}/fs"
        root = await asyncio.to_thread(fs.Root.of_snapshot, mounts, scratch, writable=writable)
    try:
        yield root
    finally:
        await asyncio.to_thread(root.close)


def _path(request) -> str:
    if "path" not in request.query:
        raise InvalidArgument("path is required")   # moby: "bad parameter: path cannot be empty"
    return fs.container_path(request.query["path"])


async def archive_head(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    c = _container(request)
    path = _path(request)
    async with _root(daemon, c) as root:
        st = await asyncio.to_thread(fs.stat_path, root.fd, path, c.name)
    return web.Response(status=200, headers={fs.STAT_HEADER: fs.encode_stat(st)})


class _ToResponse:
    """A binary writable for a worker thread that writes into the streaming response."""

    def __init__(self, response: web.StreamResponse, loop: asyncio.AbstractEventLoop):
        self.response, self.loop = response, loop

    def write(self, data) -> int:
        asyncio.run_coroutine_threadsafe(self.response.write(bytes(data)), self.loop).result()
        return len(data)


async def archive_get(request: web.Request) -> web.StreamResponse:
    daemon = _daemon(request)
    c = _container(request)
    path = _path(request)
    async with _root(daemon, c) as root:
        st, found = await asyncio.to_thread(fs.locate, root.fd, path, c.name)
        try:
            skip = fs.virtual_devs(root.pid) if root.pid else set()
            response = web.StreamResponse(headers={"Content-Type": "application/x-tar",
                                                   fs.STAT_HEADER: fs.encode_stat(st)})
            await response.prepare(request)
            out = _ToResponse(response, asyncio.get_running_loop())
            try:
                await asyncio.to_thread(fs.write_archive, found, path, out, skip_devs=skip)
            except ConnectionResetError:
                return response
            except Exception as e:  # noqa: BLE001 - after the 200 only a cut connection can tell
                log.warning("archive of %s:%s cut short: %s", c.id, path, e)
                _abort(request)
                return response
        finally:
            found.close()
    await response.write_eof()
    return response


class _FromRequest:
    """A readable for a worker thread over the request body (chunked or not)."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop):
        self.request, self.loop = request, loop

    def read(self, n: int = -1) -> bytes:
        n = 1 << 20 if n is None or n < 0 else n
        return asyncio.run_coroutine_threadsafe(self.request.content.read(n), self.loop).result()


def _under_writable_mount(c, dest: str) -> bool:
    for m in c.mounts or []:
        target = (m.get("Destination") or "").rstrip("/")
        if target and m.get("RW", True) and (dest == target or dest.startswith(target + "/")):
            return True
    return False


async def archive_put(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    c = _container(request)
    path = _path(request)
    options = fs.ExtractOptions(no_overwrite_dir_non_dir=query_bool(request, "noOverwriteDirNonDir"))
    copy_uid_gid = query_bool(request, "copyUIDGID")
    async with _root(daemon, c, writable=True) as root:
        if (c.host_config or {}).get("ReadonlyRootfs"):
            dest = await asyncio.to_thread(fs.resolve_link, root.fd, path)
            if not _under_writable_mount(c, dest):
                raise InvalidArgument("container rootfs is marked read-only")
        user = (c.config or {}).get("User") or ""
        if copy_uid_gid and user:
            options.owner = await asyncio.to_thread(fs.lookup_user, root.fd, user)
        body = _FromRequest(request, asyncio.get_running_loop())
        spool = f"{daemon.config.data_root}/tmp"
        await asyncio.to_thread(fs.extract, root.fd, path, c.name, body, spool, options)
    return web.Response(status=200)


def routes() -> list:
    return [
        ("GET", "/containers/{id}/top", container_top),
        ("GET", "/containers/{id}/stats", container_stats),
        ("GET", "/containers/{id}/changes", container_changes),
        ("GET", "/containers/{id}/export", container_export),
        ("HEAD", "/containers/{id}/archive", archive_head),
        ("GET", "/containers/{id}/archive", archive_get),
        ("PUT", "/containers/{id}/archive", archive_put),
    ]
