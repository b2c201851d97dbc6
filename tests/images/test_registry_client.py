"""The distribution client against a real docker-registry: manifests, blobs, ranges, uploads
(monolithic, chunked), cross-repository mounts and manifest pushes."""

import hashlib
import json
import os

import pytest

from dockyard.errors import InvalidArgument, NotFound
from dockyard.images.registry import Registry, RegistryConfig
from dockyard.oci import image
from tests.fixtures.registry import fixture_oci_layout

FAST = RegistryConfig(retry_backoff=0.01)


def layout_blob(digest: str) -> bytes:
    return (fixture_oci_layout() / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def fixture_manifest(digest: str) -> dict:
    return json.loads(layout_blob(digest))


@pytest.fixture
def reg(registry):
    r = Registry(registry.host, config=FAST)
    yield r
    r.close()


def test_ping(reg):
    reg.ping()


def test_get_manifest_by_tag_and_digest(reg, busybox_in_registry):
    repo, digest = busybox_in_registry
    by_tag = reg.get_manifest(repo, "latest")
    assert by_tag.digest == digest
    assert by_tag.data == layout_blob(digest)  # the exact bytes skopeo pushed
    assert by_tag.media_type == image.OCI_MANIFEST
    by_digest = reg.get_manifest(repo, digest)
    assert by_digest.data == by_tag.data and by_digest.digest == digest
    assert isinstance(image.parse_manifest(by_tag.data, by_tag.media_type), image.Manifest)


def test_head_manifest(reg, busybox_in_registry):
    repo, digest = busybox_in_registry
    desc = reg.head_manifest(repo, "latest")
    assert (desc.media_type, desc.digest, desc.size) == (
        image.OCI_MANIFEST, digest, len(layout_blob(digest)))
    assert reg.head_manifest(repo, "no-such-tag") is None
    assert reg.head_manifest("no/such-repo", "latest") is None


def test_manifest_unknown_is_not_found(reg, busybox_in_registry):
    repo, _ = busybox_in_registry
    with pytest.raises(NotFound, match=f"manifest unknown: {repo}:nope"):
        reg.get_manifest(repo, "nope")
    missing = "sha256:" + "0" * 64
    with pytest.raises(NotFound, match=f"manifest unknown: {repo}@{missing}"):
        reg.get_manifest(repo, missing)


@pytest.mark.parametrize("repo,ref", [("UPPER", "latest"), ("a/../b", "latest"),
                                      ("ok", "bad tag"), ("ok", "sha256:abc"), ("", "x")])
def test_bad_names_refused_before_any_request(reg, repo, ref):
    with pytest.raises(InvalidArgument):
        reg.get_manifest(repo, ref)


def test_blob_exists_open_and_ranges(reg, busybox_in_registry):
    repo, digest = busybox_in_registry
    layer = fixture_manifest(digest)["layers"][0]
    data = layout_blob(layer["digest"])
    assert reg.blob_exists(repo, layer["digest"])
    assert not reg.blob_exists(repo, "sha256:" + "1" * 64)
    with reg.open_blob(repo, layer["digest"]) as stream:
        assert stream.size == len(data) and stream.offset == 0
        got = b"".join(iter(lambda: stream.read(7000), b""))
    assert got == data
    offset = len(data) // 3
    with reg.open_blob(repo, layer["digest"], offset) as stream:
        assert stream.offset == offset and stream.size == len(data)
        assert b"".join(iter(lambda: stream.read(65536), b"")) == data[offset:]
    with pytest.raises(NotFound, match="blob unknown"):
        reg.open_blob(repo, "sha256:" + "2" * 64)


def test_fetch_blob(reg, busybox_in_registry):
    repo, digest = busybox_in_registry
    layer = fixture_manifest(digest)["layers"][0]
    out = bytearray()
    assert reg.fetch_blob(repo, layer["digest"], out.extend, size=layer["size"]) == layer["size"]
    assert hashlib.sha256(out).hexdigest() == layer["digest"].split(":")[1]
    with pytest.raises(InvalidArgument, match="larger than"):
        reg.fetch_blob(repo, layer["digest"], lambda b: None, size=layer["size"] - 1)


def _reader(data: bytes):
    return lambda offset, n: data[offset:offset + n]


@pytest.mark.parametrize("chunk_size", [None, 1 << 16, 100_000])
def test_upload_then_read_back(reg, chunk_size):
    data = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repo = f"upload/c{chunk_size or 0}"
    assert not reg.blob_exists(repo, digest)
    reg.upload_blob(repo, digest, len(data), _reader(data), chunk_size=chunk_size)
    assert reg.blob_exists(repo, digest)
    out = bytearray()
    reg.fetch_blob(repo, digest, out.extend)
    assert out == data


def test_upload_empty_blob(reg):
    digest = "sha256:" + hashlib.sha256(b"").hexdigest()
    for chunk in (None, 1024):
        reg.upload_blob(f"upload/empty{chunk or 0}", digest, 0, _reader(b""), chunk_size=chunk)
        assert reg.blob_exists(f"upload/empty{chunk or 0}", digest)


def test_upload_with_wrong_digest_is_refused(reg):
    data = b"some bytes"
    wrong = "sha256:" + hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(InvalidArgument, match="digest"):
        reg.upload_blob("upload/wrong", wrong, len(data), _reader(data))
    assert not reg.blob_exists("upload/wrong", wrong)


def test_cross_repo_mount(reg):
    data = os.urandom(5000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    reg.upload_blob("mount/source", digest, len(data), _reader(data))
    assert reg.mount_blob("mount/target", digest, "mount/source") is True
    assert reg.blob_exists("mount/target", digest)
    # A blob the source does not have: the registry opens an upload instead (202), we cancel it.
    absent = "sha256:" + hashlib.sha256(b"absent").hexdigest()
    assert reg.mount_blob("mount/target", absent, "mount/source") is False
    assert not reg.blob_exists("mount/target", absent)


def test_put_manifest_round_trip(reg, busybox_in_registry):
    src, digest = busybox_in_registry
    manifest = fixture_manifest(digest)
    dst = "copies/busybox"
    for desc in [manifest["config"], *manifest["layers"]]:
        assert reg.mount_blob(dst, desc["digest"], src)
    data = layout_blob(digest)
    assert reg.put_manifest(dst, "v1", data, image.OCI_MANIFEST) == digest
    fetched = reg.get_manifest(dst, "v1")
    assert (fetched.data, fetched.digest) == (data, digest)
    # by digest; the digest must be that of the bytes
    assert reg.put_manifest(dst, digest, data, image.OCI_MANIFEST) == digest
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        reg.put_manifest(dst, "sha256:" + "3" * 64, data, image.OCI_MANIFEST)


def test_put_manifest_with_missing_blobs_is_refused(reg):
    config = b"{}"
    manifest = image.canonical_json({
        "schemaVersion": 2, "mediaType": image.OCI_MANIFEST,
        "config": {"mediaType": image.OCI_CONFIG, "size": len(config),
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
        "layers": []})
    with pytest.raises(InvalidArgument, match="blob unknown"):
        reg.put_manifest("missing/blobs", "v1", manifest, image.OCI_MANIFEST)


def test_parallel_reads_share_one_registry(reg, busybox_in_registry):
    from concurrent.futures import ThreadPoolExecutor
    repo, digest = busybox_in_registry
    layer = fixture_manifest(digest)["layers"][0]

    def fetch(_):
        out = bytearray()
        reg.fetch_blob(repo, layer["digest"], out.extend)
        return hashlib.sha256(out).hexdigest()

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(fetch, range(16))) == {layer["digest"].split(":")[1]}
