"""Fixtures for pull / unpack / push: local stores in a temporary containerd root, a real
docker-registry (one per session, repositories unique per test), and builders for test images.

Test images are made here from tar entries and uploaded with plain HTTP requests (the monolithic
upload of distribution-spec: POST, then PUT ?digest=), so the setup depends neither on our push
nor on the registry client under test; the busybox fixture goes up with skopeo.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import platform
import tarfile
import uuid
from dataclasses import dataclass, field

import pytest
import zstandard

from dockyard.containerd import gc
from dockyard.containerd.content import LocalContentStore
from dockyard.containerd.metadata import MetadataDB
from dockyard.containerd.snapshots import OverlaySnapshotter, unmount_all
from dockyard.containerd.transfer.stores import Stores
from dockyard.images.transport import RegistryConfig
from tests.fixtures.host import mounts_under

if os.geteuid() != 0:
    pytest.skip("pull and unpack write overlay whiteouts and owners: root needed", allow_module_level=True)

NS = "testing"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
               "none": "application/vnd.oci.image.layer.v1.tar"}
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
FAST = RegistryConfig(retries=1, retry_backoff=0.01, timeout=10)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --- layers and images ----------------------------------------------------------------------

def tar_layer(entries: list[tuple]) -> bytes:
    """A pax tar from (path, kind, payload[, mode]) with kind file|dir|symlink|link|whiteout|opaque;
    payload is the file's bytes or the link target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, payload, *rest in entries:
            mode = rest[0] if rest else (0o755 if kind == "dir" else 0o644)
            if kind == "whiteout":
                d, base = os.path.split(path)
                path, kind, payload = os.path.join(d, ".wh." + base), "file", b""
            elif kind == "opaque":
                path, kind, payload = os.path.join(path, ".wh..wh..opq"), "file", b""
            info = tarfile.TarInfo(path)
            info.mode, info.mtime, info.uid, info.gid = mode, 946684800, 0, 0
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            else:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if kind == "file" else None)
    return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


@dataclass
class Built:
    """An image ready to upload: blobs by digest, the manifest, and what tests check against."""
    manifest: bytes
    config: bytes
    layers: list[bytes]  # compressed, in order
    diff_ids: list[str]
    blobs: dict[str, bytes] = field(default_factory=dict)
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def layer_digests(self) -> list[str]:
        return [sha256(b) for b in self.layers]

    def descriptor(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest), **extra}


def build_image(layers: list[list[tuple]], *, compression: str | list[str] = "gzip", arch: str = GOARCH,
                os_: str = "linux", diff_ids: list[str] | None = None, cmd=("sh",)) -> Built:
    kinds = [compression] * len(layers) if isinstance(compression, str) else list(compression)
    tars = [tar_layer(entries) for entries in layers]
    blobs = [compress(t, k) for t, k in zip(tars, kinds)]
    real_diff_ids = [sha256(t) for t in tars]
    config = canonical({"architecture": arch, "os": os_, "created": "2000-01-01T00:00:00Z",
                        "config": {"Cmd": list(cmd)},
                        "rootfs": {"type": "layers", "diff_ids": diff_ids or real_diff_ids},
                        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))]})
    manifest = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPES[k], "digest": sha256(b), "size": len(b)}
                   for b, k in zip(blobs, kinds)]})
    built = Built(manifest, config, blobs, real_diff_ids)
    built.blobs = {sha256(b): b for b in blobs + [config]}
    return built


def build_index(images: dict[str, Built]) -> bytes:
    """An OCI index of `images` keyed by "os/arch[/variant]"."""
    entries = []
    for plat, built in images.items():
        os_, arch, *variant = plat.split("/")
        p = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        entries.append(built.descriptor(platform=p))
    return canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


# --- a plain HTTP uploader (setup only) -----------------------------------------------------

def _request(host: str, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Length": str(len(body)), **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
    finally:
        conn.close()


def upload_blob(host: str, repo: str, data: bytes) -> None:
    status, headers, body = _request(host, "POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202, body
    location = headers["location"]
    if location.startswith("http"):
        location = "/" + location.split("/", 3)[3]
    sep = "&" if "?" in location else "?"
    status, _, body = _request(host, "PUT", f"{location}{sep}digest={sha256(data)}", data,
                               {"Content-Type": "application/octet-stream"})
    assert status == 201, body


def upload_manifest(host: str, repo: str, ref: str, data: bytes, media_type: str) -> None:
    status, _, body = _request(host, "PUT", f"/v2/{repo}/manifests/{ref}", data, {"Content-Type": media_type})
    assert status == 201, body


def publish(host: str, repo: str, tag: str, built: Built) -> str:
    for data in built.blobs.values():
        upload_blob(host, repo, data)
    upload_manifest(host, repo, tag, built.manifest, built.media_type)
    return built.digest


def publish_index(host: str, repo: str, tag: str, images: dict[str, Built]) -> bytes:
    for built in images.values():
        publish(host, repo, built.digest, built)
    index = build_index(images)
    upload_manifest(host, repo, tag, index, OCI_INDEX)
    return index


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def repo() -> str:
    return f"t/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def stores(tmp_path):
    root = str(tmp_path / "containerd")
    db = MetadataDB(root)
    snapshotter = OverlaySnapshotter(os.path.join(root, "snapshots"))
    yield Stores(LocalContentStore(os.path.join(root, "content"), db), snapshotter, db.images, db.leases, db)
    snapshotter.close()
    db.close()
    assert mounts_under(str(tmp_path)) == []


@pytest.fixture
def mnt(tmp_path):
    target = str(tmp_path / "mnt")
    os.mkdir(target)
    yield target
    unmount_all(target)


class Events(list):
    """A progress callback that keeps what it is told."""

    def __call__(self, event) -> None:
        self.append(event)

    def statuses(self, id: str | None = None) -> list[str]:
        return [e.status for e in self if id is None or e.id == id]


@pytest.fixture
def events() -> Events:
    return Events()


def assert_nothing_left(stores: Stores) -> None:
    """After a failed operation: no lease or ingest left, and a collection removes every blob
    and snapshot (the stores started empty)."""
    assert stores.leases.list(NS) == []
    assert stores.content.list_statuses(NS) == []
    gc.collect(stores.db, stores.content, {stores.snapshotter_name: stores.snapshotter})
    assert stores.content.list(NS) == []
    assert stores.snapshotter.list(NS) == []
    assert stores.images.list(NS) == []
