"""GET /system/df: disk usage as `docker system df` shows it (docker-engine-api-v1.45.yaml
`/system/df`; engine-api.md §1.9; moby daemon/disk_usage.go).

- `LayersSize`: the unpacked size of every image layer, each counted once — the usage of each
  layer's committed snapshot (a snapshot's usage is its own diff, not its parents');
- `Images`: ImageSummary (engine/images.summary) with `Size` (the whole stack), `SharedSize`
  (the layers another image uses too) and `Containers` (how many containers use the image);
- `Containers`: ContainerSummary with `SizeRw`/`SizeRootFs`, as `GET /containers/json?all=1&size=1`;
- `Volumes` and `BuildCache`: empty lists until volumes and a builder exist.

`?type=` (API 1.42; repeatable: container, image, volume, build-cache) computes only those; the
others are null, as in dockerd.
"""

from __future__ import annotations

import collections

from aiohttp import web

from dockyard.api.services.snapshots.v1 import snapshots_pb2
from dockyard.engine.api import DAEMON, httputil
from dockyard.engine.images import SNAPSHOTTER, rpc, summary
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.oci import image as oci

TYPES = ("container", "image", "volume", "build-cache")


async def _layer_usage(daemon, chain_ids: set[str]) -> dict[str, int]:
    ctr = daemon.containerd
    usage = {}
    for chain in chain_ids:
        try:
            u = await rpc(ctr.snapshots.Usage(snapshots_pb2.UsageRequest(snapshotter=SNAPSHOTTER, key=chain)))
            usage[chain] = int(u.size)
        except DockyardError:
            usage[chain] = 0  # not unpacked: takes no room as a layer
    return usage


async def _images(daemon, api_version: str, containers: list[dict]) -> tuple[int, list[dict]]:
    infos = await daemon.images.all()
    chains = {info.id: oci.chain_ids(info.diff_ids) if info.diff_ids else [] for info in infos}
    users = collections.Counter(chain for cs in chains.values() for chain in set(cs))
    usage = await _layer_usage(daemon, set(users))
    in_use = collections.Counter(c.get("ImageID", "") for c in containers)
    out = []
    for info in infos:
        d = summary(info, api_version)
        d["Size"] = sum(usage[chain] for chain in chains[info.id])
        d["SharedSize"] = sum(usage[chain] for chain in chains[info.id] if users[chain] > 1)
        d["Containers"] = in_use.get(info.id, 0)
        out.append(d)
    return sum(usage.values()), out


async def disk_usage(daemon, api_version: str, types: set[str]) -> dict:
    containers = await daemon.containers.list(all=True, size="container" in types)
    result: dict = {"LayersSize": 0, "Images": None, "Containers": None, "Volumes": None,
                    "BuildCache": None}
    if "image" in types:
        result["LayersSize"], result["Images"] = await _images(daemon, api_version, containers)
    if "container" in types:
        result["Containers"] = containers
    if "volume" in types:
        result["Volumes"] = []
    if "build-cache" in types:
        result["BuildCache"] = []
    return result


async def system_df(request: web.Request) -> web.Response:
    types = set(request.query.getall("type", []))
    for t in types:
        if t not in TYPES:
            raise InvalidArgument(f"unknown object type: {t}")
    result = await disk_usage(request.app[DAEMON], request.get("api_version", "1.45"), types or set(TYPES))
    return httputil.json_response(result)


def routes() -> list[web.RouteDef]:
    return [web.get("/system/df", system_df)]
