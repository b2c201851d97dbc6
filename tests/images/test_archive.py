"""docker save / load archives (dockyard.images.archive): the three formats we read (Docker 25,
Docker <= 24 legacy, plain OCI layout), what we write, cross-checked with skopeo, and a table
of hostile archives that must fail cleanly without writing outside the staging directory."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument, SystemFailure
from dockyard.images.archive import ArchiveImage, read_archive, write_archive
from dockyard.oci import image as oci
from tests.fixtures import busybox


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cj(obj) -> bytes:
    return oci.canonical_json(obj)


def skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- fixtures ---


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """The busybox OCI layout (gzip layer) tagged latest."""
    return busybox.build_oci_layout(tmp_path_factory.mktemp("layout") / "oci")


@pytest.fixture(scope="module")
def image(layout):
    """The layout's blobs and descriptors, as a content store would hand them to save."""
    blobs = {"sha256:" + p.name: p.read_bytes() for p in (layout / "blobs/sha256").iterdir()}
    index = json.loads((layout / "index.json").read_bytes())
    manifest_desc = oci.Descriptor.from_dict(index["manifests"][0])
    manifest_desc = oci.Descriptor(manifest_desc.media_type, manifest_desc.digest,
                                   manifest_desc.size)
    manifest = oci.parse_manifest(blobs[manifest_desc.digest], manifest_desc.media_type)
    return blobs, manifest_desc, manifest


@pytest.fixture
def staging(tmp_path):
    d = tmp_path / "staging"
    d.mkdir()
    return d


def load(data: bytes, staging) -> "object":
    return read_archive(io.BytesIO(data), str(staging))


def write(images, blobs: dict) -> bytes:
    out = io.BytesIO()
    write_archive(out, images, lambda d: io.BytesIO(blobs[d]), blob_size=lambda d: len(blobs[d]))
    return out.getvalue()


def archive_image(names, manifest_desc, manifest, target=None) -> ArchiveImage:
    return ArchiveImage(names=names, target=target or manifest_desc, manifest=manifest_desc,
                        config=manifest.config, layers=list(manifest.layers))


def member(name: str, data: bytes = b"", kind=tarfile.REGTYPE, linkname: str = "",
           mode: int = 0o644) -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, linkname, mode, 0
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, data


def make_tar(members, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def raw_header(name: bytes, size: int = 0, typeflag: bytes = b"0", size_field=None) -> bytes:
    """A ustar header block built by hand, for headers tarfile will not write."""
    block = bytearray(512)
    block[0:len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = size_field if size_field is not None else b"%011o\0" % size
    block[136:148] = b"00000000000\0"
    block[156:157] = typeflag
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


# --- legacy (Docker <= 24) archives, built by hand as Docker 20.10 writes them ---


def legacy_layer(files: dict[str, bytes]) -> bytes:
    return make_tar([member(n, d) for n, d in files.items()])


def legacy_config(diff_ids: list[str], created: str) -> bytes:
    return cj({"architecture": "amd64", "os": "linux", "created": created,
               "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}})


def legacy_archive(fmt=tarfile.PAX_FORMAT, layer_dir_name=lambda i: f"{i:064x}"):
    """Two images sharing their base layer: the second one's base is a symlink, as Docker 20.10
    writes a layer it has already saved. Returns (tar bytes, base, top, configs)."""
    base = legacy_layer({"etc/base": b"base\n"})
    top = legacy_layer({"etc/top": b"top\n"})
    config1 = legacy_config([sha256(base)], "2020-01-01T00:00:00Z")
    config2 = legacy_config([sha256(base), sha256(top)], "2020-01-02T00:00:00Z")
    id1, id2, id3 = layer_dir_name(1), layer_dir_name(2), layer_dir_name(3)
    c1, c2 = sha256(config1).split(":")[1], sha256(config2).split(":")[1]
    manifest = [
        {"Config": f"{c1}.json", "RepoTags": ["busybox:latest"], "Layers": [f"{id1}/layer.tar"]},
        {"Config": f"{c2}.json", "RepoTags": ["localhost:5000/app:1", "app:2"],
         "Layers": [f"{id2}/layer.tar", f"{id3}/layer.tar"]},
    ]
    members = [member(f"{c1}.json", config1), member(f"{c2}.json", config2)]
    for layer_id, data in ((id1, base), (id3, top)):
        members += [member(layer_id, kind=tarfile.DIRTYPE, mode=0o755),
                    member(f"{layer_id}/VERSION", b"1.0"),
                    member(f"{layer_id}/json", b'{"id":"%s"}' % layer_id.encode()),
                    member(f"{layer_id}/layer.tar", data)]
    members += [member(id2, kind=tarfile.DIRTYPE, mode=0o755),
                member(f"{id2}/layer.tar", kind=tarfile.SYMTYPE,
                       linkname=os.path.relpath(f"{id1}/layer.tar", id2)),
                member("manifest.json", json.dumps(manifest).encode()),
                member("repositories", json.dumps({"busybox": {"latest": id1}}).encode())]
    return make_tar(members, fmt), base, top, (config1, config2)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT],
                         ids=["pax", "gnu", "ustar"])
def test_read_legacy_docker_20_10_archive(staging, fmt):
    # Long layer dir names exercise ustar's prefix field, GNU long names and pax paths.
    data, base, top, (config1, config2) = legacy_archive(
        fmt, layer_dir_name=lambda i: f"{'d' * 60}/{i:064x}")
    loaded = load(data, staging)
    assert [img.names for img in loaded.images] == [
        ["docker.io/library/busybox:latest"],
        ["localhost:5000/app:1", "docker.io/library/app:2"]]
    for img, config, layers in zip(loaded.images, (config1, config2), ([base], [base, top])):
        assert img.target.media_type == oci.DOCKER_MANIFEST
        assert img.manifest_digest == img.target.digest
        raw = img.synthesized[img.target.digest]
        assert sha256(raw) == img.target.digest and len(raw) == img.target.size
        manifest = oci.parse_manifest(raw, oci.DOCKER_MANIFEST)
        assert manifest.config == oci.Descriptor(oci.DOCKER_CONFIG, sha256(config), len(config))
        assert [(d.media_type, d.digest, d.size) for d in manifest.layers] == [
            (oci.DOCKER_LAYER, sha256(layer), len(layer)) for layer in layers]
        for d in (manifest.config, *manifest.layers):
            assert hashlib.sha256(Path(loaded.blobs[d.digest]).read_bytes()).hexdigest() == \
                d.digest.split(":")[1]
    assert set(loaded.blobs) == {sha256(x) for x in (base, top, config1, config2)}
    for path in loaded.blobs.values():
        assert os.path.dirname(os.path.dirname(path)) == str(staging)


def test_read_dot_prefixed_names(staging):
    """Docker 25's shape re-tarred with `./` prefixes and a root entry, as `tar -C dir .` does."""
    with tarfile.open(fileobj=io.BytesIO(busybox.tar_bytes([]) or b""), mode="r") as _:
        pass
    fixture = busybox.build_docker_archive(staging.parent / "busybox.tar").read_bytes()
    members = [member(".", kind=tarfile.DIRTYPE, mode=0o755)]
    with tarfile.open(fileobj=io.BytesIO(fixture)) as tar:
        for info in tar.getmembers():
            data = tar.extractfile(info).read() if info.isfile() else b""
            members.append(member("./" + info.name, data, info.type, mode=info.mode))
    loaded = load(make_tar(members, tarfile.GNU_FORMAT), staging)
    assert loaded.images[0].names == ["docker.io/library/busybox:latest"]


def test_read_fixture_docker_25_archive(staging, image):
    blobs, manifest_desc, manifest = image
    path = busybox.build_docker_archive(staging.parent / "busybox.tar", "busybox:latest")
    loaded = load(path.read_bytes(), staging)
    (img,) = loaded.images
    assert img.names == ["docker.io/library/busybox:latest"]
    assert img.target.media_type == oci.OCI_MANIFEST
    assert img.manifest_digest == img.target.digest
    assert img.synthesized == {}
    m = oci.parse_manifest(Path(loaded.blobs[img.target.digest]).read_bytes(), oci.OCI_MANIFEST)
    assert m.config.digest == manifest.config.digest  # same config as the gzip layout
    assert m.layers[0].media_type == oci.OCI_LAYER
    assert set(loaded.blobs) == {img.target.digest, m.config.digest, m.layers[0].digest}


def test_docker_25_names_from_both_sides_are_merged(staging, image):
    """index.json names one tag, manifest.json RepoTags another: one image, both names, the
    exact manifest from the OCI side (no synthesized one)."""
    blobs, manifest_desc, manifest = image
    data = write([archive_image(["docker.io/library/busybox:latest"], manifest_desc, manifest)],
                 blobs)
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for info in src.getmembers():
            content = src.extractfile(info).read() if info.isfile() else None
            if info.name == "manifest.json":
                doc = json.loads(content)
                doc[0]["RepoTags"].append("example.com/other:2")
                content = json.dumps(doc).encode()
                info.size = len(content)
            dst.addfile(info, io.BytesIO(content) if content is not None else None)
    (img,) = load(out.getvalue(), staging).images
    assert img.names == ["docker.io/library/busybox:latest", "example.com/other:2"]
    assert img.target == manifest_desc and img.synthesized == {}


# --- skopeo-written archives ---


def test_read_skopeo_docker_archive(staging, layout, image):
    blobs, manifest_desc, manifest = image
    path = staging.parent / "skopeo-docker.tar"
    skopeo("copy", "--quiet", f"oci:{layout}:latest", f"docker-archive:{path}:busybox:latest")
    loaded = load(path.read_bytes(), staging)
    (img,) = loaded.images
    assert img.names == ["docker.io/library/busybox:latest"]
    m = oci.parse_manifest(img.synthesized[img.target.digest], img.target.media_type)
    assert m.config.digest == manifest.config.digest
    # skopeo stores the layer uncompressed: its digest is the config's diff_id.
    config = oci.parse_config(blobs[manifest.config.digest])
    assert [layer.digest for layer in m.layers] == list(config.diff_ids)
    assert m.layers[0].media_type == oci.DOCKER_LAYER


def test_read_skopeo_oci_archive(staging, layout, image):
    blobs, manifest_desc, manifest = image
    path = staging.parent / "skopeo-oci.tar"
    skopeo("copy", "--quiet", f"oci:{layout}:latest", f"oci-archive:{path}:latest")
    loaded = load(path.read_bytes(), staging)
    (img,) = loaded.images
    assert img.names == [] and img.ref_name == "latest"  # a bare tag names no repository
    assert img.target == manifest_desc  # the exact manifest bytes survive
    for d in (manifest_desc, manifest.config, *manifest.layers):
        assert Path(loaded.blobs[d.digest]).read_bytes() == blobs[d.digest]


# --- writing ---


def test_write_round_trip_and_deterministic(staging, image):
    blobs, manifest_desc, manifest = image
    names = ["docker.io/library/busybox:latest", "127.0.0.1:5000/bb:1"]
    data = write([archive_image(names, manifest_desc, manifest)], blobs)
    assert data == write([archive_image(names, manifest_desc, manifest)], blobs)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {i.name: tar.extractfile(i).read() for i in tar.getmembers() if i.isfile()}
    assert json.loads(files["manifest.json"]) == [{
        "Config": "blobs/sha256/" + manifest.config.digest.split(":")[1],
        "RepoTags": ["busybox:latest", "127.0.0.1:5000/bb:1"],
        "Layers": ["blobs/sha256/" + manifest.layers[0].digest.split(":")[1]]}]
    index = json.loads(files["index.json"])
    assert [m["annotations"] for m in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/busybox:latest",
         "org.opencontainers.image.ref.name": "latest"},
        {"io.containerd.image.name": "127.0.0.1:5000/bb:1",
         "org.opencontainers.image.ref.name": "1"}]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads(files["repositories"]) == {
        "busybox": {"latest": manifest.layers[0].digest.split(":")[1]},
        "127.0.0.1:5000/bb": {"1": manifest.layers[0].digest.split(":")[1]}}
    (img,) = load(data, staging).images
    assert img.names == names and img.target == manifest_desc and img.synthesized == {}


def test_write_index_target_reads_back_host_manifest(staging, image):
    blobs, manifest_desc, manifest = image
    host = oci.host_platform()
    other = oci.Platform("linux", "s390x" if host.architecture != "s390x" else "ppc64le")
    index = cj({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        {**manifest_desc.to_dict(), "platform": other.to_dict()} | {"digest": sha256(b"absent")},
        {**manifest_desc.to_dict(), "platform": host.to_dict()}]})
    index_desc = oci.Descriptor(oci.OCI_INDEX, sha256(index), len(index))
    data = write([archive_image(["docker.io/library/busybox:1"], manifest_desc, manifest,
                                target=index_desc)], {**blobs, index_desc.digest: index})
    loaded = load(data, staging)
    (img,) = loaded.images
    assert img.target == index_desc and img.manifest_digest == manifest_desc.digest
    assert img.names == ["docker.io/library/busybox:1"]


def test_write_untagged_and_shared_blobs(staging, image):
    blobs, manifest_desc, manifest = image
    data = write([archive_image([], manifest_desc, manifest),
                  archive_image(["docker.io/library/busybox:latest"], manifest_desc, manifest)],
                 blobs)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert len(names) == len(set(names))  # each blob once
    (img,) = load(data, staging).images  # one target, so one image
    assert img.names == ["docker.io/library/busybox:latest"]


def test_write_to_unseekable_stream(image):
    blobs, manifest_desc, manifest = image

    class Sink:
        def __init__(self):
            self.chunks = []

        def write(self, b):
            self.chunks.append(bytes(b))
            return len(b)

    sink = Sink()
    write_archive(sink, [archive_image(["busybox"], manifest_desc, manifest)],
                  lambda d: io.BytesIO(blobs[d]), blob_size=lambda d: len(blobs[d]))
    assert b"".join(sink.chunks) == write(
        [archive_image(["busybox"], manifest_desc, manifest)], blobs)


@pytest.mark.parametrize("damage", ["flipped", "short"])
def test_write_refuses_corrupt_store_blob(image, damage):
    blobs, manifest_desc, manifest = image
    bad = dict(blobs)
    layer = manifest.layers[0].digest
    bad[layer] = blobs[layer][:-1] + bytes([blobs[layer][-1] ^ 1]) if damage == "flipped" \
        else blobs[layer][:-10]
    with pytest.raises(SystemFailure):
        write_archive(io.BytesIO(), [archive_image(["busybox"], manifest_desc, manifest)],
                      lambda d: io.BytesIO(bad[d]), blob_size=lambda d: len(blobs[d]))


def test_write_refuses_bad_name(image):
    blobs, manifest_desc, manifest = image
    out = io.BytesIO()
    with pytest.raises(InvalidArgument):
        write_archive(out, [archive_image(["Busybox"], manifest_desc, manifest)],
                      lambda d: io.BytesIO(blobs[d]), blob_size=lambda d: len(blobs[d]))
    assert out.getvalue() == b""


def test_skopeo_reads_what_we_write(tmp_path, image):
    blobs, manifest_desc, manifest = image
    path = tmp_path / "ours.tar"
    path.write_bytes(write([archive_image(["docker.io/library/busybox:latest"], manifest_desc,
                                          manifest)], blobs))
    config = oci.parse_config(blobs[manifest.config.digest])
    inspected = json.loads(skopeo("inspect", f"docker-archive:{path}"))
    assert inspected["Architecture"] == config.architecture
    # It reads the gzip layer through manifest.json and reports it by its uncompressed digest.
    assert inspected["Layers"] == list(config.diff_ids)
    # Through docker-archive: our config and layers; through oci-archive: our exact manifest.
    skopeo("copy", "--quiet", f"docker-archive:{path}", f"oci:{tmp_path / 'via-docker'}:x")
    copied = json.loads((tmp_path / "via-docker/index.json").read_bytes())["manifests"][0]
    copied_manifest = json.loads(
        (tmp_path / "via-docker/blobs/sha256" / copied["digest"].split(":")[1]).read_bytes())
    copied_config = (tmp_path / "via-docker/blobs/sha256" /
                     copied_manifest["config"]["digest"].split(":")[1]).read_bytes()
    # Converting to an OCI manifest, skopeo re-serialises the config: same document.
    assert json.loads(copied_config) == json.loads(blobs[manifest.config.digest])
    skopeo("copy", "--quiet", f"oci-archive:{path}:latest", f"oci:{tmp_path / 'via-oci'}:x")
    copied = json.loads((tmp_path / "via-oci/index.json").read_bytes())["manifests"][0]
    assert copied["digest"] == manifest_desc.digest


# --- hostile and malformed archives ---


def docker25(extra=(), drop=(), replace=None) -> bytes:
    """The busybox Docker 25 fixture with members added, dropped or replaced."""
    members = []
    with tarfile.open(fileobj=io.BytesIO(_fixture_archive())) as tar:
        for info in tar.getmembers():
            if info.name in drop:
                continue
            data = tar.extractfile(info).read() if info.isfile() else b""
            if replace and info.name in replace:
                data = replace[info.name]
            members.append(member(info.name, data, info.type, mode=info.mode))
    return make_tar(members + list(extra))


_FIXTURE = {}


def _fixture_archive() -> bytes:
    if "tar" not in _FIXTURE:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            _FIXTURE["tar"] = busybox.build_docker_archive(Path(d) / "b.tar").read_bytes()
    return _FIXTURE["tar"]


def _fixture_json(name: str):
    with tarfile.open(fileobj=io.BytesIO(_fixture_archive())) as tar:
        return json.loads(tar.extractfile(name).read())


def with_manifest_json(entries, *extra) -> bytes:
    return docker25(extra=extra, drop=("index.json",),
                    replace={"manifest.json": json.dumps(entries).encode()})


def legacy_with_layers(layers, *extra) -> bytes:
    """manifest.json naming the fixture config and the given layer paths."""
    entry = _fixture_json("manifest.json")[0]
    return with_manifest_json([{**entry, "Layers": layers}], *extra)


def pax_record(key: str, value: str) -> bytes:
    """One "<len> key=value\n" record; <len> counts its own digits."""
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def pax_member(records: bytes) -> bytes:
    return raw_header(b"././@PaxHeader", len(records), b"x") + records + \
        bytes(-len(records) % 512)


def _hostile_cases():
    layer_hex = _fixture_json("manifest.json")[0]["Layers"][0]
    fixture = _fixture_archive()
    with tarfile.open(fileobj=io.BytesIO(fixture)) as tar:
        third = tar.getmembers()[2].offset  # a header block, not data
    return {
        # names
        "dotdot-name": docker25(extra=[member("../escape", b"x")]),
        "nested-dotdot-name": docker25(extra=[member("blobs/../../escape", b"x")]),
        "absolute-name": docker25(extra=[member("/tmp/dockyard-h4-escape", b"x")]),
        "nul-in-pax-name": pax_member(pax_record("path", "evil\0name")) + raw_header(b"x", 0)
        + bytes(1024),
        "long-gnu-name": make_tar([member("a" * 5000, b"x")], tarfile.GNU_FORMAT),
        "duplicate-file": docker25(extra=[member("manifest.json", b"[]")]),
        "file-then-dir": docker25(extra=[member("oci-layout", kind=tarfile.DIRTYPE)]),
        # links
        "layer-symlink-escapes": legacy_with_layers(
            ["x/layer.tar"], member("x/layer.tar", kind=tarfile.SYMTYPE,
                                    linkname="../../etc/passwd")),
        "layer-symlink-absolute": legacy_with_layers(
            ["x/layer.tar"], member("x/layer.tar", kind=tarfile.SYMTYPE, linkname="/etc/passwd")),
        "dir-symlink-escapes": legacy_with_layers(
            ["up/etc/passwd"], member("up", kind=tarfile.SYMTYPE, linkname="..")),
        "symlink-loop": legacy_with_layers(
            ["a/layer.tar"], member("a", kind=tarfile.SYMTYPE, linkname="b"),
            member("b", kind=tarfile.SYMTYPE, linkname="a")),
        "hardlink-absolute": docker25(extra=[member("h", kind=tarfile.LNKTYPE,
                                                    linkname="/etc/passwd")]),
        "hardlink-dotdot": docker25(extra=[member("h", kind=tarfile.LNKTYPE,
                                                  linkname="../../etc/passwd")]),
        "hardlink-to-missing": docker25(extra=[member("h", kind=tarfile.LNKTYPE,
                                                      linkname="nothing")]),
        "hardlink-to-later": make_tar([member("h", kind=tarfile.LNKTYPE, linkname="f"),
                                       member("f", b"x")]),
        # entry types
        "char-device": docker25(extra=[member("dev", kind=tarfile.CHRTYPE)]),
        "block-device": docker25(extra=[member("dev", kind=tarfile.BLKTYPE)]),
        "fifo": docker25(extra=[member("fifo", kind=tarfile.FIFOTYPE)]),
        "sparse": pax_member(pax_record("GNU.sparse.major", "1")) + raw_header(b"x", 0)
        + bytes(1024),
        "unknown-type": raw_header(b"x", 0, b"Z") + bytes(1024),
        # sizes
        "huge-pax-header": raw_header(b"pax", 2 << 20, b"x") + bytes(1024),
        "huge-size-field": raw_header(b"x", size_field=b"\x80" + b"\xff" * 11),
        "negative-size-field": raw_header(b"x", size_field=b"\xff" * 12),
        "huge-manifest-json": docker25(replace={"manifest.json": b" " * (9 << 20)}),
        "huge-config": with_manifest_json([{"Config": "big.json", "Layers": []}],
                           member("big.json", b" " * (9 << 20))),
        # the tar itself
        "not-a-tar": os.urandom(4096),
        "empty": b"",
        "truncated-member": fixture[:len(fixture) // 2],
        "truncated-header": fixture[:700],
        "bad-checksum-later": fixture[:third] + b"X" + fixture[third + 1:],
        "corrupt-gzip": gzip.compress(fixture)[:-100],
        # content
        "no-manifest": docker25(drop=("manifest.json", "index.json")),
        "bad-json": docker25(replace={"manifest.json": b"[{"}),
        "manifest-json-not-list": docker25(replace={"manifest.json": b"{}"},
                                           drop=("index.json",)),
        "config-path-dotdot": with_manifest_json([{"Config": "../../etc/passwd", "Layers": []}]),
        "config-path-absolute": with_manifest_json([{"Config": "/etc/passwd", "Layers": []}]),
        "layer-path-dotdot": legacy_with_layers(["../../etc/shadow"]),
        "missing-layer": legacy_with_layers(["nope/layer.tar"]),
        "layer-count-mismatch": legacy_with_layers([layer_hex, layer_hex]),
        "layer-not-diff-id": legacy_with_layers(["other.tar"], member("other.tar", b"\0" * 1024)),
        # Same size, one bit flipped, OCI side only: nothing but the digest check can see it.
        "blob-digest-mismatch": docker25(drop=("manifest.json",),
                                         replace={layer_hex: _flip_last_bit(layer_hex)}),
        "bad-blob-name": docker25(extra=[member("blobs/sha256/nothex", b"x")]),
        "missing-manifest-blob": docker25(
            drop=("manifest.json", "blobs/sha256/" + _oci_manifest_hex())),
        "bad-repo-tag": with_manifest_json([{**_fixture_json("manifest.json")[0],
                                             "RepoTags": ["UPPER:case"]}]),
        "index-size-mismatch": docker25(drop=("manifest.json",), replace={
            "index.json": cj({"schemaVersion": 2, "manifests": [
                {**_fixture_json("index.json")["manifests"][0], "size": 1}]})}),
    }


def _flip_last_bit(name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(_fixture_archive())) as tar:
        data = tar.extractfile(name).read()
    return data[:-1] + bytes([data[-1] ^ 1])


def _oci_manifest_hex() -> str:
    return _fixture_json("index.json")["manifests"][0]["digest"].split(":")[1]


HOSTILE = _hostile_cases()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_refused_and_contained(tmp_path, case):
    canary = tmp_path / "canary"
    canary.write_bytes(b"untouched")
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(InvalidArgument) as err:
        read_archive(io.BytesIO(HOSTILE[case]), str(staging))
    message = str(err.value)
    assert message and "\n" not in message
    assert sorted(os.listdir(tmp_path)) == ["canary", "staging"]
    assert canary.read_bytes() == b"untouched"
    assert not os.path.exists("/tmp/dockyard-h4-escape")
    # Only our own flat staging files: no archive name became a path.
    for private in staging.iterdir():
        assert private.is_dir() and not private.is_symlink()
        assert all(name.startswith("entry-") and (private / name).is_file()
                   for name in os.listdir(private))


def test_hostile_messages_say_what_is_wrong(staging):
    cases = {"dotdot-name": "'..'", "absolute-name": "absolute", "char-device": "device",
             "layer-symlink-escapes": "outside the archive", "blob-digest-mismatch": "does not match its digest",
             "not-a-tar": "not a tar archive", "no-manifest": "neither manifest.json",
             "huge-manifest-json": "larger than", "duplicate-file": "twice",
             "missing-layer": "missing"}
    for case, words in cases.items():
        with pytest.raises(InvalidArgument, match=words.replace(".", r"\.")):
            read_archive(io.BytesIO(HOSTILE[case]), str(staging))


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_read_compressed_archive(staging, kind):
    """`docker save | gzip` (and zstd) loads as docker load does."""
    import zstandard
    fixture = _fixture_archive()
    data = (gzip.compress(fixture) if kind == "gzip"
            else zstandard.ZstdCompressor().compress(fixture))
    (img,) = load(data, staging).images
    assert img.names == ["docker.io/library/busybox:latest"]


def test_pax_names_are_honoured(staging):
    """A pax `path` record overrides the header name (and is checked like any name)."""
    fixture = _fixture_archive()
    with tarfile.open(fileobj=io.BytesIO(fixture)) as tar:
        first = tar.getmembers()[0]
    assert first.name == "blobs"
    renamed = pax_member(pax_record("path", "../outside")) + fixture[first.offset:]
    with pytest.raises(InvalidArgument, match="'..' is not allowed"):
        load(renamed, staging)


# --- Debian's docker 20.10 as the peer: it loads what we save, we load what it saves ---


def _two_images(blobs, manifest_desc, manifest):
    """busybox, and an image built on the same base layer plus one more: Docker 20.10 saves
    the shared layer once and links the second image's copy to it."""
    extra = make_tar([member("etc/extra", b"extra\n")])
    config = json.loads(blobs[manifest.config.digest])
    config["rootfs"]["diff_ids"].append(sha256(extra))
    config["created"] = "2000-01-02T00:00:00Z"
    config_bytes = cj(config)
    config_desc = oci.Descriptor(oci.OCI_CONFIG, sha256(config_bytes), len(config_bytes))
    layers = [*manifest.layers, oci.Descriptor(oci.OCI_LAYER, sha256(extra), len(extra))]
    m2 = oci.Manifest(oci.OCI_MANIFEST, config_desc, tuple(layers))
    m2_bytes = cj(m2.to_dict())
    m2_desc = oci.Descriptor(oci.OCI_MANIFEST, sha256(m2_bytes), len(m2_bytes))
    all_blobs = {**blobs, sha256(extra): extra, config_desc.digest: config_bytes,
                 m2_desc.digest: m2_bytes}
    images = [archive_image(["docker.io/library/busybox:latest"], manifest_desc, manifest),
              archive_image(["127.0.0.1:5000/app:1"], m2_desc, m2)]
    return images, all_blobs, (manifest.config.digest, config_desc.digest)


@pytest.mark.root
def test_docker_20_10_loads_ours_and_we_load_its_save(tmp_path, image):
    from tests.fixtures.dockerd import Dockerd, missing_tools
    why = missing_tools()
    if why:
        pytest.skip(why)
    images, blobs, config_digests = _two_images(*image)
    ours = tmp_path / "ours.tar"
    ours.write_bytes(write(images, blobs))
    theirs = tmp_path / "theirs.tar"
    with Dockerd() as d:
        r = d.cli("load", "-i", str(ours))
        assert r.returncode == 0, r.stderr
        assert "Loaded image: busybox:latest" in r.stdout
        assert "Loaded image: 127.0.0.1:5000/app:1" in r.stdout
        ids = d.cli("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
        assert sorted(ids.stdout.split("\n")[:-1]) == sorted([
            f"busybox:latest {config_digests[0]}", f"127.0.0.1:5000/app:1 {config_digests[1]}"])
        r = d.cli("save", "-o", str(theirs), "busybox:latest", "127.0.0.1:5000/app:1")
        assert r.returncode == 0, r.stderr
    with tarfile.open(theirs) as tar:
        assert any(m.issym() and m.name.endswith("/layer.tar") for m in tar.getmembers())
    staging = tmp_path / "staging"
    staging.mkdir()
    with open(theirs, "rb") as f:
        loaded = read_archive(f, str(staging))
    by_name = {tuple(img.names): img for img in loaded.images}
    assert set(by_name) == {("docker.io/library/busybox:latest",), ("127.0.0.1:5000/app:1",)}
    for names, config_digest in zip([("docker.io/library/busybox:latest",),
                                     ("127.0.0.1:5000/app:1",)], config_digests):
        img = by_name[names]
        m = oci.parse_manifest(img.synthesized[img.target.digest], img.target.media_type)
        assert m.config.digest == config_digest
        diff_ids = oci.parse_config(Path(loaded.blobs[config_digest]).read_bytes()).diff_ids
        assert [layer.digest for layer in m.layers] == list(diff_ids)


def oci_layout_tar(blobs: dict, index_entries: list) -> bytes:
    members = [member("blobs", kind=tarfile.DIRTYPE, mode=0o755),
               member("blobs/sha256", kind=tarfile.DIRTYPE, mode=0o755)]
    members += [member("blobs/sha256/" + d.split(":")[1], data) for d, data in blobs.items()]
    members += [member("oci-layout", cj({"imageLayoutVersion": "1.0.0"})),
                member("index.json", cj({"schemaVersion": 2, "manifests": index_entries}))]
    return make_tar(members)


def test_foreign_platform_index_picks_the_image_not_the_attestation(staging, image):
    blobs, manifest_desc, manifest = image
    host = oci.host_platform()
    other = oci.Platform("linux", "s390x" if host.architecture != "s390x" else "ppc64le")
    attestation = cj({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                      "config": manifest.config.to_dict(), "layers": []})
    index = cj({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        {"mediaType": oci.OCI_MANIFEST, "digest": sha256(attestation), "size": len(attestation),
         "platform": {"os": "unknown", "architecture": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        {**manifest_desc.to_dict(), "platform": other.to_dict()}]})
    data = oci_layout_tar({**blobs, sha256(attestation): attestation, sha256(index): index},
                          [{"mediaType": oci.OCI_INDEX, "digest": sha256(index),
                            "size": len(index),
                            "annotations": {"org.opencontainers.image.ref.name":
                                            "example.com/multi:1"}}])
    (img,) = load(data, staging).images
    assert img.manifest_digest == manifest_desc.digest
    assert img.target == oci.Descriptor(oci.OCI_INDEX, sha256(index), len(index))
    assert img.names == ["example.com/multi:1"] and img.ref_name == ""


def test_unknown_index_entries_are_skipped_but_an_empty_archive_is_refused(staging, image):
    blobs, manifest_desc, manifest = image
    artifact = {"mediaType": "application/vnd.example.thing", "digest": sha256(b"x"), "size": 1}
    data = oci_layout_tar(blobs, [artifact, manifest_desc.to_dict()])
    (img,) = load(data, staging).images
    assert img.target == manifest_desc
    with pytest.raises(InvalidArgument, match="no images"):
        load(oci_layout_tar(blobs, [artifact]), staging)
