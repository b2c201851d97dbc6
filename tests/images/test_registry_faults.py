"""The client facing a misbehaving registry (FaultProxy in front of a real one): retries,
resumed blob reads, corrupted manifests, error statuses, dropped uploads."""

import hashlib
import json
import os

import pytest

from dockyard.errors import InvalidArgument, NotFound, Unauthenticated, Unavailable
from dockyard.images.registry import Registry, RegistryConfig
from tests.fixtures.registry import free_port

FAST = RegistryConfig(retry_backoff=0.01, retries=3)


@pytest.fixture
def proxy(registry, fault_proxy):
    return fault_proxy(registry.host)


@pytest.fixture
def reg(proxy):
    r = Registry(proxy.host, config=FAST)
    yield r
    r.close()


def _layer(reg, repo, digest):
    return json.loads(reg.get_manifest(repo, digest).data)["layers"][0]


def test_retries_on_500_then_succeeds(reg, proxy, busybox_in_registry):
    repo, digest = busybox_in_registry
    proxy.add_rule(r"/manifests/", status=500, times=2)
    assert reg.get_manifest(repo, "latest").digest == digest
    assert len(proxy.requests_matching("/manifests/")) == 3


def test_gives_up_after_retries_with_registry_message(reg, proxy, busybox_in_registry):
    proxy.add_rule(r"/manifests/", status=503)
    with pytest.raises(Unavailable, match="503"):
        reg.get_manifest(busybox_in_registry[0], "latest")
    assert len(proxy.requests_matching("/manifests/")) == 1 + FAST.retries


def test_500_without_retries_left_reports_the_registry_error(proxy, busybox_in_registry):
    reg = Registry(proxy.host, config=RegistryConfig(retries=0))
    proxy.add_rule(r"/manifests/", status=500)
    with pytest.raises(Unavailable, match="injected status 500"):
        reg.get_manifest(busybox_in_registry[0], "latest")


def test_429_is_retried(reg, proxy, busybox_in_registry):
    proxy.add_rule(r"/manifests/", status=429, headers={"Retry-After": "0"}, times=1)
    assert reg.get_manifest(*busybox_in_registry).digest == busybox_in_registry[1]


def test_connection_drop_is_retried(reg, proxy, busybox_in_registry):
    proxy.add_rule(r"/manifests/", drop=True, times=2)
    assert reg.get_manifest(*busybox_in_registry).digest == busybox_in_registry[1]


def test_unreachable_registry_is_unavailable():
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    reg = Registry(host, config=FAST)
    with pytest.raises(Unavailable, match=f"registry {host}: connection refused"):
        reg.ping()


def test_blob_drop_mid_body_then_resume_with_range(reg, proxy, busybox_in_registry):
    repo, digest = busybox_in_registry
    layer = _layer(reg, repo, digest)
    cut = layer["size"] // 2
    proxy.add_rule(r"/blobs/sha256:", method="GET", truncate_after=cut, times=1)
    with pytest.raises(Unavailable, match=f"interrupted at offset {cut}"):
        with reg.open_blob(repo, layer["digest"]) as stream:
            while stream.read(65536):
                pass
    proxy.add_rule(r"/blobs/sha256:", method="GET", truncate_after=1000, times=1)
    out = bytearray()
    assert reg.fetch_blob(repo, layer["digest"], out.extend, size=layer["size"]) == layer["size"]
    assert "sha256:" + hashlib.sha256(out).hexdigest() == layer["digest"]
    gets = proxy.requests_matching(r"/blobs/sha256:", "GET")
    assert gets[-1].headers.get("range") == "bytes=1000-"


def test_blob_drop_every_time_gives_up(reg, proxy, busybox_in_registry):
    repo, digest = busybox_in_registry
    layer = _layer(reg, repo, digest)
    proxy.add_rule(r"/blobs/sha256:", method="GET", truncate_after=10)
    with pytest.raises(Unavailable, match="interrupted"):
        reg.fetch_blob(repo, layer["digest"], lambda b: None)


def test_corrupted_manifest_is_refused(reg, proxy, busybox_in_registry):
    repo, digest = busybox_in_registry
    proxy.add_rule(r"/manifests/", corrupt=True)
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        reg.get_manifest(repo, digest)  # by digest: the bytes must hash to it
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        reg.get_manifest(repo, "latest")  # by tag: Docker-Content-Digest disagrees


def test_injected_statuses_map_to_errors(reg, proxy, busybox_in_registry):
    repo, _ = busybox_in_registry
    proxy.add_rule(r"/manifests/a404", status=404)
    proxy.add_rule(r"/manifests/a401", status=401)
    proxy.add_rule(r"/manifests/a403", status=403)
    proxy.add_rule(r"/manifests/a400", status=400)
    with pytest.raises(NotFound, match=f"manifest unknown: {repo}:a404"):
        reg.get_manifest(repo, "a404")
    with pytest.raises(Unauthenticated, match="authentication required"):
        reg.get_manifest(repo, "a401")
    with pytest.raises(Unauthenticated, match="denied: injected: injected status 403"):
        reg.get_manifest(repo, "a403")
    with pytest.raises(InvalidArgument, match="injected status 400"):
        reg.get_manifest(repo, "a400")


def test_oversized_manifest_is_refused(reg, proxy, busybox_in_registry):
    proxy.add_rule(r"/manifests/", status=200, body=b" " * ((4 << 20) + 1),
                   headers={"Docker-Content-Digest": busybox_in_registry[1]})
    with pytest.raises(InvalidArgument, match="larger than"):
        reg.get_manifest(busybox_in_registry[0], "latest")


def test_chunked_upload_resumes_after_a_dropped_patch(reg, proxy):
    data = os.urandom(200_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    proxy.add_rule(r"/blobs/uploads/", method="PATCH", drop=True, times=1)
    reg.upload_blob("faults/chunked", digest, len(data),
                    lambda o, n: data[o:o + n], chunk_size=50_000)
    assert reg.blob_exists("faults/chunked", digest)
    patches = proxy.requests_matching(r"/blobs/uploads/", "PATCH")
    assert [p.headers["content-range"] for p in patches][:2] == ["0-49999", "0-49999"]


def test_chunked_upload_416_asks_status(reg, proxy):
    data = os.urandom(120_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    proxy.add_rule(r"/blobs/uploads/", method="PATCH", status=416, times=1)
    reg.upload_blob("faults/c416", digest, len(data), lambda o, n: data[o:o + n],
                    chunk_size=40_000)
    assert reg.blob_exists("faults/c416", digest)


def test_monolithic_upload_restarts_after_a_drop(reg, proxy):
    data = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    proxy.add_rule(r"/blobs/uploads/", method="PUT", status=500, times=1)
    reg.upload_blob("faults/mono", digest, len(data), lambda o, n: data[o:o + n])
    assert reg.blob_exists("faults/mono", digest)
    assert len(proxy.requests_matching(r"/blobs/uploads/$", "POST")) == 2
    # a drop: sent again (on a fresh connection, or a fresh session)
    data = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    proxy.add_rule(r"/blobs/uploads/", method="PUT", drop=True, times=1)
    reg.upload_blob("faults/mono", digest, len(data), lambda o, n: data[o:o + n])
    assert reg.blob_exists("faults/mono", digest)


def test_upload_source_short_read_is_not_retried(reg, proxy):
    digest = "sha256:" + hashlib.sha256(b"x" * 10).hexdigest()
    from dockyard.errors import SystemFailure
    with pytest.raises(SystemFailure, match="short read"):
        reg.upload_blob("faults/short", digest, 10, lambda o, n: b"x")
    assert len(proxy.requests_matching(r"/blobs/uploads/$", "POST")) == 1


def test_too_many_redirects(reg, proxy, busybox_in_registry):
    proxy.add_rule(r"/manifests/", redirect_to=proxy.host)
    with pytest.raises(Unavailable, match="redirects"):
        reg.get_manifest(busybox_in_registry[0], "latest")
