"""pull against a real docker-registry: what lands in the stores, labels for GC, progress,
parallel downloads, resume, and what is not fetched twice. Also tag and remove."""

import os

import pytest

from dockyard.containerd import gc
from dockyard.containerd.snapshots import mount_all, unmount_all
from dockyard.containerd.transfer import images_ops, progress as p
from dockyard.containerd.transfer.pull import pull
from dockyard.errors import NotFound
from dockyard.oci.image import Platform, chain_ids
from tests.containerd.transfer.conftest import (FAST, GOARCH, NS, OCI_INDEX, build_image, publish,
                                                 publish_index, sha256)
from tests.fixtures.registry import FaultProxy

BASE = [("etc", "dir", b""), ("etc/base", "file", b"base\n" * 1000)]


def layers(n: int, size: int = 200_000) -> list[list[tuple]]:
    return [[("data", "dir", b""), (f"data/{i}", "file", os.urandom(size))] for i in range(n)]


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as fp:
        yield fp


def blob_gets(proxy, digest=None) -> list:
    return [r for r in proxy.requests_matching(r"/blobs/sha256:" + (digest or ""), "GET")]


def test_pull_busybox_fixture(stores, busybox_ref, events, mnt):
    ref, digest = busybox_ref
    image = pull(stores, NS, ref, progress=events, registry_config=FAST)
    assert image.name == ref
    assert image.target.digest == digest
    assert image.target.media_type == "application/vnd.oci.image.manifest.v1+json"

    manifest = stores.content.info(NS, digest)
    config_digest = manifest.labels["containerd.io/gc.ref.content.config"]
    layer_digest = manifest.labels["containerd.io/gc.ref.content.l.0"]
    host = ref.split("/")[0]
    for d in (digest, config_digest, layer_digest):
        assert stores.content.info(NS, d).labels[f"containerd.io/distribution.source.{host}"] == "fixture/busybox"
    top = stores.content.info(NS, config_digest).labels["containerd.io/gc.ref.snapshot.overlayfs"]
    assert [s.name for s in stores.snapshotter.list(NS)] == [top]
    assert stores.leases.list(NS) == [] and stores.content.list_statuses(NS) == []

    short = layer_digest[7:19]
    assert events[0] == p.Progress("latest", "Pulling from fixture/busybox")
    statuses = events.statuses(short)
    for status in (p.PULLING_FS_LAYER, p.DOWNLOADING, p.VERIFYING, p.DOWNLOAD_COMPLETE, p.EXTRACTING,
                   p.PULL_COMPLETE):
        assert status in statuses
    assert statuses[-1] == p.PULL_COMPLETE
    downloading = [e for e in events if e.id == short and e.status == p.DOWNLOADING]
    assert downloading[-1].current == downloading[-1].total == stores.content.info(NS, layer_digest).size
    assert [e.status for e in events if e.id == ""] == [
        f"Digest: {digest}", f"Status: Downloaded newer image for {ref.removesuffix(':latest')}:latest"]

    stores.snapshotter.view(NS, "look", top)
    mount_all(stores.snapshotter.mounts(NS, "look"), mnt)
    try:
        assert os.access(os.path.join(mnt, "bin/busybox"), os.X_OK)
    finally:
        unmount_all(mnt)
    stores.snapshotter.remove(NS, "look")


def test_second_pull_fetches_nothing_and_is_up_to_date(stores, registry, proxy, repo, events):
    built = build_image([BASE] + layers(2))
    publish(registry.host, repo, "v1", built)
    ref = f"{proxy.host}/{repo}:v1"
    pull(stores, NS, ref, registry_config=FAST)
    proxy.clear()
    pull(stores, NS, ref, registry_config=FAST, progress=events)
    assert blob_gets(proxy) == []
    assert events[-1].status == f"Status: Image is up to date for {ref}"
    for d in built.layer_digests:
        assert events.statuses(d[7:19]) == [p.ALREADY_EXISTS]


def test_layers_in_parallel_mixed_compression(stores, registry, proxy, repo, mnt):
    built = build_image([BASE] + layers(4), compression=["gzip", "zstd", "none", "gzip", "zstd"])
    publish(registry.host, repo, "v1", built)
    # A delay on every blob: with 3 at a time the downloads overlap, and still land in order.
    proxy.add_rule(r"/blobs/sha256:", method="GET", delay=0.2)
    image = pull(stores, NS, f"{proxy.host}/{repo}:v1", registry_config=FAST, max_concurrent_downloads=3)
    assert image.target.digest == built.digest
    assert len(blob_gets(proxy)) == 6  # 5 layers + config, each once
    top = chain_ids(built.diff_ids)[-1]
    stores.snapshotter.view(NS, "look", top)
    mount_all(stores.snapshotter.mounts(NS, "look"), mnt)
    try:
        assert sorted(os.listdir(os.path.join(mnt, "data"))) == ["0", "1", "2", "3"]
    finally:
        unmount_all(mnt)
    stores.snapshotter.remove(NS, "look")


def test_one_download_at_a_time_says_waiting(stores, registry, repo, events):
    built = build_image(layers(3))
    publish(registry.host, repo, "v1", built)
    pull(stores, NS, f"{registry.host}/{repo}:v1", registry_config=FAST, max_concurrent_downloads=1,
         progress=events)
    shorts = [d[7:19] for d in built.layer_digests]
    assert p.WAITING not in events.statuses(shorts[0])
    assert p.WAITING in events.statuses(shorts[1]) and p.WAITING in events.statuses(shorts[2])


def test_blobs_already_present_are_not_fetched(stores, registry, proxy, repo, events):
    one = build_image([BASE, [("a", "file", b"one")]])
    two = build_image([BASE, [("b", "file", b"two")]])
    publish(registry.host, repo, "one", one)
    publish(registry.host, repo, "two", two)
    pull(stores, NS, f"{proxy.host}/{repo}:one", registry_config=FAST)
    proxy.clear()
    pull(stores, NS, f"{proxy.host}/{repo}:two", registry_config=FAST, progress=events)
    shared = one.layer_digests[0]
    assert blob_gets(proxy, shared[7:]) == []
    assert events.statuses(shared[7:19]) == [p.ALREADY_EXISTS]
    assert len(blob_gets(proxy, two.layer_digests[1][7:])) == 1


def test_pull_by_digest_names_the_image_by_digest(stores, registry, repo):
    built = build_image([BASE])
    publish(registry.host, repo, "v1", built)
    image = pull(stores, NS, f"{registry.host}/{repo}@{built.digest}", registry_config=FAST)
    assert image.name == f"{registry.host}/{repo}@{built.digest}"
    assert image.target.digest == built.digest


def test_index_selects_this_platform_and_fetches_only_it(stores, registry, proxy, repo):
    here = build_image([BASE, [("mine", "file", b"host")]])
    other = build_image([[("s390x", "file", b"other")]], arch="s390x")
    index = publish_index(registry.host, repo, "multi", {f"linux/{GOARCH}": here, "linux/s390x": other})
    image = pull(stores, NS, f"{proxy.host}/{repo}:multi", registry_config=FAST)
    assert image.target.media_type == OCI_INDEX
    assert image.target.digest == sha256(index)
    labels = stores.content.info(NS, sha256(index)).labels
    assert {labels["containerd.io/gc.ref.content.m.0"], labels["containerd.io/gc.ref.content.m.1"]} == {
        here.digest, other.digest}
    assert blob_gets(proxy, other.layer_digests[0][7:]) == []
    assert proxy.requests_matching(f"/manifests/{other.digest}") == []
    # The explicit other platform works too, and is kept beside it.
    pull(stores, NS, f"{registry.host}/{repo}:multi", platform=Platform.parse("linux/s390x"), registry_config=FAST)
    assert other.config and stores.content.info(NS, other.layer_digests[0])


def test_explicit_platform_must_match_a_single_manifest(stores, registry, repo):
    built = build_image([BASE], arch="s390x")
    publish(registry.host, repo, "v1", built)
    with pytest.raises(NotFound, match="does not match the specified platform"):
        pull(stores, NS, f"{registry.host}/{repo}:v1", platform=Platform.parse("linux/amd64"),
             registry_config=FAST)


def test_interrupted_blob_resumes_from_its_offset(stores, registry, proxy, repo):
    built = build_image(layers(1, 1_000_000), compression="none")
    publish(registry.host, repo, "v1", built)
    layer = built.layer_digests[0]
    proxy.add_rule(f"/blobs/{layer}", method="GET", truncate_after=300_000, times=1)
    image = pull(stores, NS, f"{proxy.host}/{repo}:v1", registry_config=FAST)
    assert image.target.digest == built.digest
    gets = blob_gets(proxy, layer[7:])
    assert len(gets) == 2
    assert "range" not in gets[0].headers
    start = int(gets[1].headers["range"].removeprefix("bytes=").split("-")[0])
    assert 0 < start <= 300_000
    assert stores.content.info(NS, layer).size == len(built.layers[0])


def test_ingest_left_by_a_dead_pull_is_resumed(stores, registry, proxy, repo):
    built = build_image(layers(1, 500_000), compression="none")
    publish(registry.host, repo, "v1", built)
    layer, blob = built.layer_digests[0], built.layers[0]
    w = stores.content.writer(NS, f"pull-{layer}", total=len(blob), expected=layer)
    w.write(blob[:123_456])
    w.close()  # as if the process died here
    pull(stores, NS, f"{proxy.host}/{repo}:v1", registry_config=FAST)
    gets = blob_gets(proxy, layer[7:])
    assert [g.headers.get("range") for g in gets] == ["bytes=123456-"]
    assert stores.content.list_statuses(NS) == []


def test_pull_without_unpack(stores, registry, repo, events):
    built = build_image([BASE])
    publish(registry.host, repo, "v1", built)
    pull(stores, NS, f"{registry.host}/{repo}:v1", registry_config=FAST, unpack=False, progress=events)
    assert stores.snapshotter.list(NS) == []
    assert events.statuses(built.layer_digests[0][7:19])[-1] == p.PULL_COMPLETE
    assert stores.content.info(NS, built.layer_digests[0])


def test_tag_and_remove_with_gc(stores, registry, repo):
    built = build_image([BASE, [("x", "file", b"x")]])
    publish(registry.host, repo, "v1", built)
    ref = f"{registry.host}/{repo}:v1"
    pull(stores, NS, ref, registry_config=FAST)
    tagged = images_ops.tag(stores, NS, ref, "mine:1")
    assert tagged.name == "docker.io/library/mine:1"
    assert tagged.target.digest == built.digest
    images_ops.remove(stores, NS, ref)
    # Still referenced by the tag: nothing collected.
    assert stores.content.info(NS, built.digest)
    assert len(stores.snapshotter.list(NS)) == 2
    removed = images_ops.remove(stores, NS, "mine:1")
    assert removed.removed
    assert stores.content.list(NS) == [] and stores.snapshotter.list(NS) == []
    with pytest.raises(NotFound):
        images_ops.remove(stores, NS, "mine:1")


def test_concurrent_pulls_of_one_image(stores, registry, repo):
    import threading
    built = build_image([BASE] + layers(2))
    publish(registry.host, repo, "v1", built)
    errors = []

    def run():
        try:
            pull(stores, NS, f"{registry.host}/{repo}:v1", registry_config=FAST)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stores.snapshotter.list(NS)) == 3
    assert stores.leases.list(NS) == [] and stores.content.list_statuses(NS) == []
    gc.collect(stores.db, stores.content, {"overlayfs": stores.snapshotter})
    assert len(stores.snapshotter.list(NS)) == 3


def test_docker_schema2_media_types(stores, registry, repo):
    built = build_image([BASE])
    built.manifest = (built.manifest
                      .replace(b"application/vnd.oci.image.manifest.v1+json",
                               b"application/vnd.docker.distribution.manifest.v2+json")
                      .replace(b"application/vnd.oci.image.config.v1+json",
                               b"application/vnd.docker.container.image.v1+json")
                      .replace(b"application/vnd.oci.image.layer.v1.tar+gzip",
                               b"application/vnd.docker.image.rootfs.diff.tar.gzip"))
    built.media_type = "application/vnd.docker.distribution.manifest.v2+json"
    publish(registry.host, repo, "v1", built)
    image = pull(stores, NS, f"{registry.host}/{repo}:v1", registry_config=FAST)
    assert image.target.media_type == built.media_type
    assert image.target.digest == built.digest
    assert [s.name for s in stores.snapshotter.list(NS)] == chain_ids(built.diff_ids)
