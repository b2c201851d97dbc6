import hashlib
import json

import pytest
from hypothesis import given, strategies as st

from dockyard.errors import InvalidArgument, NotFound, Unsupported
from dockyard.oci import image
from dockyard.oci.image import Descriptor, Index, Manifest, Platform

D1 = "sha256:" + "11" * 32
D2 = "sha256:" + "22" * 32
D3 = "sha256:" + "33" * 32
D4 = "sha256:" + "44" * 32


def desc(media_type=image.OCI_MANIFEST, digest=D1, size=10, **extra):
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def manifest_bytes(**over):
    m = {"schemaVersion": 2, "mediaType": image.OCI_MANIFEST,
         "config": desc(image.OCI_CONFIG, D1, 100),
         "layers": [desc(image.OCI_LAYER_GZIP, D2, 2000), desc(image.OCI_LAYER_ZSTD, D3, 30)]}
    m.update(over)
    return json.dumps({k: v for k, v in m.items() if v is not None}).encode()


# --- media types ---

@pytest.mark.parametrize("media_type, compression", [
    (image.OCI_LAYER, "none"), (image.DOCKER_LAYER, "none"), (image.OCI_LAYER_ND, "none"),
    (image.OCI_LAYER_GZIP, "gzip"), (image.DOCKER_LAYER_GZIP, "gzip"),
    (image.DOCKER_FOREIGN_LAYER_GZIP, "gzip"), (image.OCI_LAYER_ND_GZIP, "gzip"),
    (image.OCI_LAYER_ZSTD, "zstd"), (image.OCI_LAYER_ND_ZSTD, "zstd"),
    (image.OCI_LAYER_GZIP + "; charset=utf-8", "gzip"),
    (image.OCI_CONFIG, None), ("application/x-whatever", None), ("", None),
])
def test_compression_of(media_type, compression):
    assert image.compression_of(media_type) == compression


def test_type_sets():
    assert set(image.MANIFEST_ACCEPT) == image.INDEX_TYPES | image.MANIFEST_TYPES
    assert len(image.MANIFEST_ACCEPT) == 4
    assert image.DOCKER_LAYER == "application/vnd.docker.image.rootfs.diff.tar"
    assert image.LAYER_TYPES.isdisjoint(image.CONFIG_TYPES | image.MANIFEST_TYPES)


# --- platforms ---

@pytest.mark.parametrize("text, expected", [
    ("linux/amd64", Platform("linux", "amd64")),
    ("linux/x86_64", Platform("linux", "amd64")),
    ("Linux/AMD64/v3", Platform("linux", "amd64", "v3")),
    ("linux/amd64/v1", Platform("linux", "amd64")),
    ("linux/aarch64", Platform("linux", "arm64")),
    ("linux/arm64/8", Platform("linux", "arm64", "v8")),
    ("linux/armhf", Platform("linux", "arm", "v7")),
    ("linux/armel", Platform("linux", "arm", "v6")),
    ("linux/arm", Platform("linux", "arm", "v7")),
    ("linux/arm/v5", Platform("linux", "arm", "v5")),
    ("linux/i386", Platform("linux", "386")),
    ("linux/s390x", Platform("linux", "s390x")),
    ("arm64", Platform("linux", "arm64")),
    ("macos/arm64", Platform("darwin", "arm64")),
])
def test_platform_parse(text, expected):
    assert Platform.parse(text) == expected


def test_platform_parse_os_only_takes_host_arch(monkeypatch):
    monkeypatch.setattr(image._os, "uname", lambda: _Uname("aarch64"))
    assert Platform.parse("linux") == Platform("linux", "arm64", "v8")


@pytest.mark.parametrize("text", ["", " ", "linux/", "/amd64", "linux//v7", "a/b/c/d",
                                  "linux/amd 64", "linux/amd64/v3;x", "bogus", None, "linux/é"])
def test_platform_parse_refuses_junk(text):
    with pytest.raises(InvalidArgument, match="platform"):
        Platform.parse(text)


def test_platform_format_and_dicts():
    p = Platform("windows", "amd64", "", "10.0.17763.1", ("win32k",))
    assert p.format() == "windows/amd64"
    assert Platform.parse("linux/arm/v6").format() == "linux/arm/v6"
    assert p.to_dict() == {"architecture": "amd64", "os": "windows",
                           "os.version": "10.0.17763.1", "os.features": ["win32k"]}
    assert Platform.from_dict(p.to_dict()) == p
    assert Platform.from_dict({"os": "linux", "architecture": "arm64", "variant": "v8"}) == \
        Platform("linux", "arm64", "v8")


@pytest.mark.parametrize("d", [None, [], {"os": "linux"}, {"architecture": "amd64"},
                               {"os": 1, "architecture": "amd64"},
                               {"os": "linux", "architecture": "amd64", "variant": 7},
                               {"os": "linux", "architecture": "amd64", "os.features": "x"}])
def test_platform_from_dict_refuses(d):
    with pytest.raises(InvalidArgument, match="platform"):
        Platform.from_dict(d)


class _Uname:
    def __init__(self, machine):
        self.machine = machine


@pytest.mark.parametrize("machine, expected", [
    ("x86_64", "linux/amd64"), ("aarch64", "linux/arm64/v8"), ("armv7l", "linux/arm/v7"),
    ("armv6l", "linux/arm/v6"), ("i686", "linux/386"), ("ppc64le", "linux/ppc64le"),
    ("s390x", "linux/s390x"), ("riscv64", "linux/riscv64"),
])
def test_host_platform(monkeypatch, machine, expected):
    monkeypatch.setattr(image._os, "uname", lambda: _Uname(machine))
    assert image.host_platform().format() == expected


def test_host_platform_real():
    p = image.host_platform()
    assert p.os == "linux" and p.architecture and "/" not in p.architecture


@pytest.mark.parametrize("want, have, ok", [
    ("linux/amd64", "linux/amd64", True),
    ("linux/amd64", "linux/amd64/v2", False),
    ("linux/amd64/v3", "linux/amd64/v2", True),
    ("linux/amd64/v3", "linux/amd64", True),
    ("linux/amd64/v2", "linux/amd64/v3", False),
    ("linux/amd64", "linux/arm64", False),
    ("linux/amd64", "windows/amd64", False),
    ("linux/arm64", "linux/arm64/v8", True),
    ("linux/arm64/v8", "linux/arm64", True),
    ("linux/arm/v7", "linux/arm/v6", True),
    ("linux/arm/v7", "linux/arm/v5", True),
    ("linux/arm/v6", "linux/arm/v7", False),
    ("linux/arm/v7", "linux/arm", True),
    ("linux/arm64", "linux/arm/v7", False),
    ("linux/s390x", "linux/s390x", True),
])
def test_matches(want, have, ok):
    assert image.matches(Platform.parse(want), Platform.parse(have)) is ok


def test_matches_normalizes_raw_index_values():
    assert image.matches(Platform("linux", "amd64"), Platform("linux", "x86_64"))
    assert image.matches(Platform.parse("linux/arm64"), Platform("linux", "aarch64", "v8"))


def _entry(platform, digest, media_type=image.OCI_MANIFEST, annotations=None):
    return Descriptor(media_type, digest, 100, annotations or {},
                      Platform.from_dict(platform) if platform else None)


def _p(os_, arch, variant=""):
    d = {"os": os_, "architecture": arch}
    if variant:
        d["variant"] = variant
    return d


def test_select_first_match_in_index_order():
    index = Index(image.OCI_INDEX, (
        _entry(_p("linux", "arm64", "v8"), D1),
        _entry(_p("linux", "amd64"), D2),
        _entry(_p("linux", "amd64"), D3),
    ))
    assert image.select_manifest(index, Platform.parse("linux/amd64")).digest == D2
    assert image.select_manifest(index, Platform.parse("linux/arm64")).digest == D1


def test_select_prefers_best_variant_over_index_order():
    index = Index(image.OCI_INDEX, (
        _entry(_p("linux", "amd64"), D1),
        _entry(_p("linux", "amd64", "v2"), D2),
        _entry(_p("linux", "amd64", "v4"), D3),
    ))
    assert image.select_manifest(index, Platform.parse("linux/amd64/v3")).digest == D2
    assert image.select_manifest(index, Platform.parse("linux/amd64/v4")).digest == D3
    assert image.select_manifest(index, Platform.parse("linux/amd64")).digest == D1


def test_select_arm_fallback():
    index = Index(image.DOCKER_MANIFEST_LIST, (
        _entry(_p("linux", "arm", "v5"), D1, image.DOCKER_MANIFEST),
        _entry(_p("linux", "arm", "v6"), D2, image.DOCKER_MANIFEST),
    ))
    assert image.select_manifest(index, Platform.parse("linux/arm/v7")).digest == D2
    assert image.select_manifest(index, Platform.parse("linux/arm/v5")).digest == D1


def test_select_skips_attestations_and_unknown_types():
    index = Index(image.OCI_INDEX, (
        _entry(_p("unknown", "unknown"), D1),
        _entry(_p("linux", "amd64"), D2,
               annotations={"vnd.docker.reference.type": "attestation-manifest"}),
        _entry(_p("linux", "amd64"), D3, media_type="application/vnd.example+json"),
        _entry(_p("linux", "amd64"), D4, media_type=image.OCI_INDEX),
    ))
    with pytest.raises(NotFound):
        image.select_manifest(index, Platform.parse("linux/amd64"))


def test_select_not_found_lists_available():
    index = Index(image.OCI_INDEX, (
        _entry(_p("linux", "arm64", "v8"), D1),
        _entry(_p("unknown", "unknown"), D2),
        _entry(_p("linux", "s390x"), D3),
        _entry(_p("linux", "s390x"), D4),
    ))
    with pytest.raises(NotFound) as e:
        image.select_manifest(index, Platform.parse("linux/amd64"))
    assert str(e.value) == ("no matching manifest for linux/amd64 in the manifest list entries "
                            "(available: linux/arm64/v8, linux/s390x)")


def test_select_entry_without_platform_is_last_resort():
    index = Index(image.OCI_INDEX, (_entry(None, D1), _entry(_p("linux", "amd64"), D2)))
    assert image.select_manifest(index, Platform.parse("linux/amd64")).digest == D2
    assert image.select_manifest(index, Platform.parse("linux/arm64")).digest == D1


def test_select_empty_index():
    with pytest.raises(NotFound, match=r"\(available: none\)"):
        image.select_manifest(Index(image.OCI_INDEX, ()), Platform.parse("linux/amd64"))


# --- descriptors ---

def test_descriptor_round_trip():
    d = {"mediaType": image.OCI_MANIFEST, "digest": D1, "size": 7143,
         "annotations": {"a": "b"}, "platform": {"architecture": "arm", "os": "linux",
                                                  "variant": "v7"},
         "urls": ["https://example.com/blob"]}
    got = Descriptor.from_dict(d)
    assert got.platform == Platform("linux", "arm", "v7")
    assert got.urls == ("https://example.com/blob",)
    assert got.to_dict() == d
    assert Descriptor(image.OCI_CONFIG, D1, 0).to_dict() == {
        "mediaType": image.OCI_CONFIG, "digest": D1, "size": 0}


def test_descriptor_matches_containerd_metadata_field_order():
    from dockyard.containerd.metadata import Descriptor as MetaDescriptor
    a = Descriptor(image.OCI_CONFIG, D1, 5, {"k": "v"})
    b = MetaDescriptor(image.OCI_CONFIG, D1, 5, {"k": "v"})
    assert (a.media_type, a.digest, a.size, a.annotations) == \
        (b.media_type, b.digest, b.size, b.annotations)


@pytest.mark.parametrize("d, what", [
    (None, "must be an object"),
    ({"digest": D1, "size": 1}, "mediaType"),
    (desc(media_type=5), "mediaType"),
    (desc(digest="sha256:abc"), "invalid digest"),
    (desc(digest=None), "invalid digest"),
    (desc(size=-1), "size"),
    (desc(size="10"), "size"),
    (desc(size=True), "size"),
    (desc(size=1.5), "size"),
    (desc(annotations={"a": 1}), "annotations"),
    (desc(annotations=["a"]), "annotations"),
    (desc(platform={"os": "linux"}), "platform"),
    (desc(urls="http://x"), "urls"),
])
def test_descriptor_refuses(d, what):
    with pytest.raises(InvalidArgument, match=what):
        Descriptor.from_dict(d, "manifest: layers[0]")


# --- manifests ---

def test_parse_oci_manifest():
    m = image.parse_manifest(manifest_bytes(annotations={"x": "y"}), image.OCI_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.media_type == image.OCI_MANIFEST
    assert m.config == Descriptor(image.OCI_CONFIG, D1, 100)
    assert [layer.digest for layer in m.layers] == [D2, D3]
    assert m.annotations == {"x": "y"}
    assert m.subject is None


def test_parse_docker_manifest_as_registries_serve_it():
    body = json.dumps({
        "schemaVersion": 2, "mediaType": image.DOCKER_MANIFEST,
        "config": desc(image.DOCKER_CONFIG, D1, 1457),
        "layers": [desc(image.DOCKER_LAYER_GZIP, D2, 2152262)],
    }, indent=3).encode()
    m = image.parse_manifest(body, image.DOCKER_MANIFEST + "; charset=utf-8")
    assert m.media_type == image.DOCKER_MANIFEST
    assert image.compression_of(m.layers[0].media_type) == "gzip"


def test_parse_index():
    body = json.dumps({
        "schemaVersion": 2, "mediaType": image.OCI_INDEX,
        "manifests": [desc(platform=_p("linux", "amd64")),
                      desc(digest=D2, platform=_p("unknown", "unknown"),
                           annotations={"vnd.docker.reference.type": "attestation-manifest",
                                        "vnd.docker.reference.digest": D1})],
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }).encode()
    idx = image.parse_manifest(body)
    assert isinstance(idx, Index)
    assert len(idx.manifests) == 2
    assert image.select_manifest(idx, Platform.parse("linux/amd64")).digest == D1
    assert idx.annotations == {"org.opencontainers.image.ref.name": "latest"}


def test_parse_infers_type_when_nobody_says():
    assert image.parse_manifest(manifest_bytes(mediaType=None)).media_type == image.OCI_MANIFEST
    idx = image.parse_manifest(json.dumps({"schemaVersion": 2, "manifests": []}).encode(),
                               "application/json")
    assert idx.media_type == image.OCI_INDEX
    assert image.parse_manifest(manifest_bytes(mediaType=None),
                                image.DOCKER_MANIFEST).media_type == image.DOCKER_MANIFEST


def test_parse_subject():
    m = image.parse_manifest(manifest_bytes(subject=desc(digest=D4)))
    assert m.subject.digest == D4


def test_manifest_to_dict_round_trip():
    m = image.parse_manifest(manifest_bytes(annotations={"a": "b"}))
    assert image.parse_manifest(image.canonical_json(m.to_dict())) == m
    idx = Index(image.OCI_INDEX, (_entry(_p("linux", "amd64"), D1),))
    assert image.parse_manifest(image.canonical_json(idx.to_dict())) == idx


@pytest.mark.parametrize("ct", [image.DOCKER_SCHEMA1_SIGNED,
                                "application/vnd.docker.distribution.manifest.v1+json"])
def test_schema1_by_content_type(ct):
    with pytest.raises(Unsupported, match="schema1 manifests are not supported"):
        image.parse_manifest(b'{"schemaVersion": 1, "name": "x", "fsLayers": []}', ct)


def test_schema1_by_body():
    with pytest.raises(Unsupported, match="repush the image"):
        image.parse_manifest(b'{"schemaVersion": 1, "name": "x", "fsLayers": []}')


@pytest.mark.parametrize("data, ct, what", [
    (b"", "", "not valid JSON"),
    (b"\xff\xfe", "", "not valid JSON"),
    (b"[1, 2]", "", "JSON object"),
    (b"[" * 100000, "", "not valid JSON"),
    (manifest_bytes(schemaVersion=3), "", "schemaVersion"),
    (manifest_bytes(schemaVersion="2"), "", "schemaVersion"),
    (manifest_bytes(schemaVersion=True), "", "schemaVersion"),
    (manifest_bytes(schemaVersion=None), "", "schemaVersion"),
    (manifest_bytes(), image.DOCKER_MANIFEST, "does not match"),
    (manifest_bytes(), image.OCI_INDEX, "does not match"),
    (manifest_bytes(mediaType=5), "", "mediaType must be a string"),
    (manifest_bytes(config=None), "", "config"),
    (manifest_bytes(config="x"), "", "config"),
    (manifest_bytes(layers={"a": 1}), "", "layers must be a list"),
    (manifest_bytes(layers=[desc(size=-5)]), "", r"layers\[0\]: size"),
    (manifest_bytes(layers=[desc(), desc(digest="sha256:xyz")]), "", r"layers\[1\]"),
    (manifest_bytes(annotations={"a": None}), "", "annotations"),
    (manifest_bytes(manifests=[]), "", "manifests field of an index"),
    (manifest_bytes(mediaType=image.OCI_INDEX, manifests=[]), "", "config/layers"),
    (manifest_bytes(mediaType=None, config=None), "", "neither manifests nor config"),
    (json.dumps({"schemaVersion": 2, "mediaType": image.OCI_INDEX,
                 "manifests": "x"}).encode(), "", "manifests must be a list"),
    (json.dumps({"schemaVersion": 2, "mediaType": image.OCI_INDEX,
                 "manifests": [desc(platform=[])]}).encode(), "", r"manifests\[0\]: platform"),
])
def test_parse_manifest_refuses(data, ct, what):
    with pytest.raises(InvalidArgument, match=what):
        image.parse_manifest(data, ct)


def test_parse_manifest_unknown_type():
    with pytest.raises(Unsupported, match="unsupported manifest media type"):
        image.parse_manifest(manifest_bytes(mediaType="application/vnd.example.thing+json"))


def test_parse_manifest_size_limit():
    pad = " " * (image.MAX_MANIFEST_SIZE - len(manifest_bytes()))
    assert image.parse_manifest(manifest_bytes() + pad.encode())
    with pytest.raises(InvalidArgument, match="byte limit"):
        image.parse_manifest(manifest_bytes() + pad.encode() + b" ")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["schemaVersion", "mediaType", "config",
                                                       "layers", "manifests", "digest", "size",
                                                       "platform", "annotations", "os"]),
                                      inner, max_size=5),
                    max_leaves=20),
       st.sampled_from(["", image.OCI_MANIFEST, image.OCI_INDEX, "application/json"]))
def test_parse_manifest_only_raises_ours(obj, ct):
    try:
        image.parse_manifest(json.dumps(obj).encode(), ct)
    except (InvalidArgument, Unsupported):
        pass


# --- configs ---

def config_bytes(**over):
    c = {"architecture": "amd64", "os": "linux", "created": "2000-01-01T00:00:00Z",
         "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
         "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
         "history": [{"created_by": "ADD rootfs"}]}
    c.update(over)
    return json.dumps({k: v for k, v in c.items() if v is not None}).encode()


def test_parse_config():
    c = image.parse_config(config_bytes(variant="v3", **{"os.version": "x"}))
    assert c.diff_ids == (D1, D2)
    assert c.config == {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
    assert c.history == ({"created_by": "ADD rootfs"},)
    assert c.created == "2000-01-01T00:00:00Z"
    assert c.platform == Platform("linux", "amd64", "v3", "x")
    assert c.raw["rootfs"]["type"] == "layers"


def test_parse_config_minimal():
    c = image.parse_config(b'{"architecture":"arm64","os":"linux","rootfs":'
                           b'{"type":"layers","diff_ids":[]},"config":null}')
    assert c.diff_ids == () and c.config == {} and c.history == () and c.created == ""
    assert c.platform.format() == "linux/arm64"


@pytest.mark.parametrize("data, what", [
    (b"nope", "not valid JSON"),
    (b"1", "JSON object"),
    (config_bytes(rootfs=None), "rootfs must be an object"),
    (config_bytes(rootfs={"type": "layers+base", "diff_ids": []}), "rootfs.type"),
    (config_bytes(rootfs={"type": "layers", "diff_ids": "x"}), "diff_ids must be a list"),
    (config_bytes(rootfs={"type": "layers", "diff_ids": [D1, "sha256:short"]}),
     r"diff_ids\[1\]"),
    (config_bytes(architecture=5), "architecture must be a string"),
    (config_bytes(config=[]), "config must be an object"),
    (config_bytes(history=[1]), "history"),
])
def test_parse_config_refuses(data, what):
    with pytest.raises(InvalidArgument, match=what):
        image.parse_config(data)


def test_parse_config_size_limit():
    big = config_bytes(history=[{"comment": "x" * image.MAX_CONFIG_SIZE}])
    with pytest.raises(InvalidArgument, match="byte limit"):
        image.parse_config(big)


# --- chain ids, canonical json ---

def test_chain_ids_by_the_spec_formula():
    assert image.chain_ids([]) == []
    assert image.chain_ids([D1]) == [D1]
    c2 = "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    c3 = "sha256:" + hashlib.sha256(f"{c2} {D3}".encode()).hexdigest()
    assert image.chain_ids([D1, D2, D3]) == [D1, c2, c3]


def test_chain_ids_known_value():
    # computed outside Python: printf 'sha256:11…11 sha256:22…22' | sha256sum
    assert image.chain_ids([D1, D2])[1] == \
        "sha256:9932074217c35353d2e03a3f5a86549f7c67bfeb0ba53e23d69f4d4c8f7958f5"


def test_chain_ids_refuse_bad_digest():
    with pytest.raises(InvalidArgument):
        image.chain_ids([D1, "sha256:nope"])


def test_canonical_json():
    assert image.canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == \
        '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode()
