"""Pulls that must fail: each with a clear error, and nothing half-written left — no lease, no
ingest, and a garbage collection leaves the stores empty."""

import json

import pytest

from dockyard.containerd.transfer import progress as p
from dockyard.containerd.transfer.pull import pull
from dockyard.errors import InvalidArgument, NotFound, Unauthenticated, Unavailable
from tests.containerd.transfer.conftest import (FAST, NS, assert_nothing_left, build_image, publish,
                                                 publish_index, sha256)
from tests.fixtures.registry import FaultProxy, start_registry

LAYERS = [[("etc", "dir", b""), ("etc/a", "file", b"a" * 100_000)],
          [("etc/b", "file", bytes(range(256)) * 2000)]]


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as fp:
        yield fp


@pytest.fixture
def image(registry, repo):
    built = build_image(LAYERS, compression="none")
    publish(registry.host, repo, "v1", built)
    return built


def test_wrong_blob_digest(stores, proxy, repo, image):
    layer = image.layer_digests[1]
    proxy.add_rule(f"/blobs/{layer}", method="GET", corrupt=True)
    with pytest.raises(InvalidArgument, match=f"blob {layer} .*does not match its digest"):
        pull(stores, NS, f"{proxy.host}/{repo}:v1", registry_config=FAST)
    assert_nothing_left(stores)


def test_truncated_blob(stores, proxy, repo, image):
    layer = image.layer_digests[0]
    proxy.add_rule(f"/blobs/{layer}", method="GET", truncate_after=1000)
    with pytest.raises(Unavailable, match="interrupted|ended after"):
        pull(stores, NS, f"{proxy.host}/{repo}:v1", registry_config=FAST)
    assert_nothing_left(stores)


def test_manifest_for_another_platform_only(stores, registry, repo):
    other = build_image(LAYERS, arch="s390x")
    publish_index(registry.host, repo, "v1", {"linux/s390x": other, "linux/ppc64le": other})
    with pytest.raises(NotFound, match=r"no matching manifest for linux/\S+ in the manifest list "
                                       r"entries \(available: linux/s390x, linux/ppc64le\)"):
        pull(stores, NS, f"{registry.host}/{repo}:v1", registry_config=FAST)
    assert_nothing_left(stores)


@pytest.mark.parametrize("status,error,where", [
    (401, Unauthenticated, "/manifests/"), (404, NotFound, "/manifests/"), (500, Unavailable, "/manifests/"),
    (401, Unauthenticated, "/blobs/"), (404, NotFound, "/blobs/"), (500, Unavailable, "/blobs/"),
])
def test_registry_refuses(stores, proxy, repo, image, status, error, where):
    proxy.add_rule(where, status=status)
    with pytest.raises(error):
        pull(stores, NS, f"{proxy.host}/{repo}:v1", registry_config=FAST)
    assert_nothing_left(stores)


def test_registry_goes_away_mid_pull(stores, tmp_path, repo):
    reg = start_registry(tmp_path / "doomed")
    try:
        built = build_image(LAYERS)
        publish(reg.host, repo, "v1", built)

        def stop_on_first_download(event):
            if event.status == p.DOWNLOADING:
                reg.stop()

        with pytest.raises(Unavailable, match=reg.host):
            pull(stores, NS, f"{reg.host}/{repo}:v1", registry_config=FAST, progress=stop_on_first_download)
    finally:
        reg.stop()
    assert_nothing_left(stores)


def test_diff_id_not_matching_config(stores, registry, repo):
    built = build_image(LAYERS, diff_ids=[build_image(LAYERS).diff_ids[0], sha256(b"wrong")])
    publish(registry.host, repo, "v1", built)
    with pytest.raises(InvalidArgument, match="diff id"):
        pull(stores, NS, f"{registry.host}/{repo}:v1", registry_config=FAST)
    assert_nothing_left(stores)


def test_manifest_not_matching_requested_digest(stores, proxy, registry, repo, image):
    other = build_image([[("x", "file", b"x")]])
    publish(registry.host, repo, "other", other)
    # The registry (here, the proxy) answers the digest with another manifest.
    proxy.add_rule(f"/manifests/{image.digest}", status=200, body=other.manifest,
                   headers={"Content-Type": other.media_type, "Docker-Content-Digest": image.digest})
    with pytest.raises(InvalidArgument, match="digest"):
        pull(stores, NS, f"{proxy.host}/{repo}@{image.digest}", registry_config=FAST)
    assert_nothing_left(stores)


def test_layer_count_not_matching_config(stores, registry, repo):
    built = build_image(LAYERS)
    config = json.loads(built.config)
    config["rootfs"]["diff_ids"] = config["rootfs"]["diff_ids"][:1]
    built.config = json.dumps(config).encode()
    manifest = json.loads(built.manifest)
    manifest["config"].update(digest=sha256(built.config), size=len(built.config))
    built.manifest = json.dumps(manifest).encode()
    built.blobs = {sha256(b): b for b in built.layers + [built.config]}
    publish(registry.host, repo, "v1", built)
    with pytest.raises(InvalidArgument, match="1 diff ids for 2 layers"):
        pull(stores, NS, f"{registry.host}/{repo}:v1", registry_config=FAST)
    assert_nothing_left(stores)


def test_unknown_image(stores, registry, repo):
    with pytest.raises(NotFound, match="manifest unknown"):
        pull(stores, NS, f"{registry.host}/{repo}:nope", registry_config=FAST)
    assert_nothing_left(stores)
