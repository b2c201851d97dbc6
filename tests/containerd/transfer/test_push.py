"""push against a real docker-registry: skipping what the registry has, cross-repository mounts,
monolithic and chunked uploads, and the round trip skopeo push → our pull → run → our push with
the same digests (checked with skopeo)."""

import hashlib
import json
import os
import subprocess
import sys
import uuid

import pytest

from dockyard.containerd.snapshots import mount_all, unmount_all
from dockyard.containerd.transfer import images_ops, progress as p
from dockyard.containerd.transfer.pull import pull
from dockyard.containerd.transfer.push import push
from dockyard.errors import NotFound
from dockyard.oci.defaults import default_spec
from tests.containerd.transfer.conftest import FAST, GOARCH, NS, build_image, publish, publish_index
from tests.fixtures.registry import FaultProxy

RUNC = os.path.join(os.path.dirname(sys.executable), "dockyard-runc")
LAYERS = [[("etc", "dir", b""), ("etc/a", "file", os.urandom(300_000))],
          [("etc/b", "file", os.urandom(200_000))]]


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as fp:
        yield fp


def skopeo_raw(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          check=True, capture_output=True, timeout=60).stdout


def uploads(proxy) -> list:
    return [r for r in proxy.requests if "/blobs/uploads/" in r.path and r.method in ("PUT", "PATCH")]


def run_in(rootfs: str, tmp_path, args: list[str]) -> subprocess.CompletedProcess:
    """Run `args` in a container whose root is `rootfs`, with dockyard-runc."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    config = default_spec(args)
    config["process"]["terminal"] = False
    config["root"] = {"path": rootfs, "readonly": False}
    config["linux"]["cgroupsPath"] = f"/dockyard-test/{uuid.uuid4().hex[:12]}"
    (bundle / "config.json").write_text(json.dumps(config))
    return subprocess.run([RUNC, "--root", str(tmp_path / "runc-state"), "run", "--bundle", str(bundle),
                           "t" + uuid.uuid4().hex[:12]], capture_output=True, text=True, timeout=60)


def test_round_trip_skopeo_pull_run_push(stores, registry, busybox_ref, tmp_path, mnt, repo, events):
    ref, digest = busybox_ref
    image = pull(stores, NS, ref, registry_config=FAST)
    top = stores.content.info(NS, stores.content.info(NS, digest).labels["containerd.io/gc.ref.content.config"]
                              ).labels["containerd.io/gc.ref.snapshot.overlayfs"]
    stores.snapshotter.prepare(NS, "rootfs", top)
    mount_all(stores.snapshotter.mounts(NS, "rootfs"), mnt)
    try:
        assert os.access(os.path.join(mnt, "bin/busybox"), os.X_OK)
        r = run_in(mnt, tmp_path, ["/bin/busybox", "echo", "hello from a pulled image"])
        assert r.returncode == 0, r.stderr
        assert r.stdout == "hello from a pulled image\n"
    finally:
        unmount_all(mnt)
    stores.snapshotter.remove(NS, "rootfs")

    target = f"{registry.host}/{repo}:copy"
    images_ops.tag(stores, NS, image.name, target)
    pushed = push(stores, NS, target, registry_config=FAST, progress=events)
    assert pushed == digest
    raw = skopeo_raw(target)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    # Same registry, another repository: the layer was mounted, not uploaded.
    assert any(e.status == "Mounted from fixture/busybox" for e in events)
    assert events[0].status == f"The push refers to repository [{registry.host}/{repo}]"
    assert events[-1].status == f"copy: digest: {digest} size: {image.target.size}"


def test_push_skips_blobs_the_registry_has(stores, registry, proxy, repo, events):
    built = build_image(LAYERS)
    publish(registry.host, repo, "v1", built)
    ref = f"{proxy.host}/{repo}:v1"
    pull(stores, NS, ref, registry_config=FAST)
    assert push(stores, NS, ref, registry_config=FAST, progress=events) == built.digest
    assert uploads(proxy) == []
    for d in built.layer_digests:
        assert events.statuses(d[7:19]) == [p.PREPARING, p.LAYER_EXISTS]


@pytest.mark.parametrize("chunk_size", [None, 64 << 10], ids=["monolithic", "chunked"])
def test_push_uploads_what_is_missing(stores, registry, proxy, repo, events, chunk_size):
    built = build_image(LAYERS)
    publish(registry.host, repo, "v1", built)
    pull(stores, NS, f"{registry.host}/{repo}:v1", registry_config=FAST)
    # Another registry (well, host name) for the same content: nothing there, no mount source.
    other = f"{proxy.host}/{repo}-copy:v2"
    images_ops.tag(stores, NS, f"{registry.host}/{repo}:v1", other)
    stores_labels_before = stores.content.info(NS, built.layer_digests[0]).labels
    assert not any(proxy.host in k for k in stores_labels_before)
    # Through the proxy's host name the registry's blobs in `repo` are in another repository of
    # the same registry, and our labels name the direct host, so no mount is tried: uploads.
    assert push(stores, NS, other, registry_config=FAST, progress=events, chunk_size=chunk_size) == built.digest
    patches = [r for r in uploads(proxy) if r.method == "PATCH"]
    if chunk_size is None:
        assert patches == []
    else:
        assert len(patches) >= 300_000 // chunk_size
    for d in built.layer_digests:
        assert events.statuses(d[7:19])[-1] == p.PUSHED
        assert p.PUSHING in events.statuses(d[7:19])
    assert skopeo_raw(f"{registry.host}/{repo}-copy:v2") == built.manifest
    labels = stores.content.info(NS, built.layer_digests[0]).labels
    assert labels[f"containerd.io/distribution.source.{proxy.host}"] == f"{repo}-copy"


def test_push_mounts_across_repositories(stores, registry, proxy, repo, events):
    built = build_image(LAYERS)
    publish(registry.host, repo, "v1", built)
    pull(stores, NS, f"{proxy.host}/{repo}:v1", registry_config=FAST)
    target = f"{proxy.host}/{repo}/mounted:v1"
    images_ops.tag(stores, NS, f"{proxy.host}/{repo}:v1", target)
    proxy.clear()
    push(stores, NS, target, registry_config=FAST, progress=events)
    mounts = [r for r in proxy.requests if r.method == "POST" and "mount=" in r.path]
    assert len(mounts) == 3  # two layers and the config
    assert uploads(proxy) == []
    for d in built.layer_digests:
        assert events.statuses(d[7:19])[-1] == f"Mounted from {repo}"


def test_partial_index_pushes_the_host_platform_manifest(stores, registry, repo, events):
    here = build_image(LAYERS)
    other = build_image([[("o", "file", b"o")]], arch="s390x")
    publish_index(registry.host, repo, "multi", {f"linux/{GOARCH}": here, "linux/s390x": other})
    pull(stores, NS, f"{registry.host}/{repo}:multi", registry_config=FAST)
    target = f"{registry.host}/{repo}-single:v1"
    images_ops.tag(stores, NS, f"{registry.host}/{repo}:multi", target)
    assert push(stores, NS, target, registry_config=FAST, progress=events) == here.digest
    assert p.PARTIAL_INDEX in events.statuses("")
    assert skopeo_raw(target) == here.manifest


def test_whole_index_is_pushed_when_all_is_here(stores, registry, repo):
    here = build_image(LAYERS)
    other = build_image([[("o", "file", b"o")]], arch="s390x")
    index = publish_index(registry.host, repo, "multi", {f"linux/{GOARCH}": here, "linux/s390x": other})
    pull(stores, NS, f"{registry.host}/{repo}:multi", registry_config=FAST, unpack=False)
    from dockyard.oci.image import Platform
    pull(stores, NS, f"{registry.host}/{repo}:multi", registry_config=FAST, unpack=False,
         platform=Platform.parse("linux/s390x"))
    target = f"{registry.host}/{repo}-all:v1"
    images_ops.tag(stores, NS, f"{registry.host}/{repo}:multi", target)
    push(stores, NS, target, registry_config=FAST)
    assert skopeo_raw(target) == index


def test_push_of_an_unknown_image(stores, registry):
    with pytest.raises(NotFound, match="not found"):
        push(stores, NS, f"{registry.host}/nothing/here:v1", registry_config=FAST)
