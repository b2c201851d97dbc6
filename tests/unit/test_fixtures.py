import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dockyard.oci.schema import IMAGE_SCHEMA_DIR, Validator, validate_runtime_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # `tests` is not installed; the builder lives in tests/fixtures

from tests.fixtures import busybox  # noqa: E402


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_valid(entry: str, document: dict) -> None:
    assert Validator(IMAGE_SCHEMA_DIR, entry).errors(document) == []


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return busybox.build_all(tmp_path_factory.mktemp("fixtures"))


# --- rootfs ---

def test_rootfs_has_busybox_and_applets(built):
    rootfs = built / "rootfs"
    assert (rootfs / "bin/busybox").read_bytes() == Path(busybox.BUSYBOX).read_bytes()
    assert os.readlink(rootfs / "bin/sh") == "busybox"
    assert os.readlink(rootfs / "usr/bin/env") == "../../bin/busybox"
    applets = subprocess.run([busybox.BUSYBOX, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        path = rootfs / applet
        assert path.is_symlink() or applet == "bin/busybox", applet
        assert path.resolve() == (rootfs / "bin/busybox").resolve(), applet


def test_rootfs_etc_and_dirs(built):
    rootfs = built / "rootfs"
    passwd = (rootfs / "etc/passwd").read_text().splitlines()
    assert passwd[0].startswith("root:x:0:0:")
    assert any(line.startswith("nobody:x:65534:65534:") for line in passwd)
    assert any(line.startswith("daemon:x:1:1:") for line in passwd)
    assert "tty:x:5:" in (rootfs / "etc/group").read_text()
    for name in ("hostname", "hosts", "resolv.conf"):
        assert (rootfs / "etc" / name).is_file()
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    for name in ("root", "proc", "sys", "dev", "home", "var"):
        assert (rootfs / name).is_dir()
    assert (rootfs / "bin").stat().st_mtime == busybox.MTIME


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_rootfs_runs_a_shell(built):
    out = subprocess.run(["chroot", str(built / "rootfs"), "/bin/sh", "-c", "echo ok"],
                         capture_output=True, text=True, check=True)
    assert out.stdout == "ok\n"


# --- bundle ---

def test_bundle_config(built):
    config = json.loads((built / "bundle/config.json").read_text())
    validate_runtime_config(config)
    assert config["process"]["args"] == ["echo", "hello from dockyard"]
    assert config["process"]["terminal"] is False
    assert config["root"]["path"] == "rootfs"
    assert (built / "bundle/rootfs/bin/busybox").is_file()


def test_bundle_overrides(tmp_path):
    bundle = busybox.build_bundle(tmp_path / "b", ["sh", "-c", "env"], env=["A=1"], cwd="/tmp",
                                  hostname="box", terminal=True)
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["sh", "-c", "env"]
    assert config["process"]["env"] == ["A=1"]
    assert config["process"]["cwd"] == "/tmp"
    assert config["process"]["terminal"] is True
    assert config["hostname"] == "box"
    validate_runtime_config(config)


# --- layer tar ---

def test_layer_tar_is_normalized():
    layer = busybox.build_image().layer
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in members)
    assert all(m.mtime == busybox.MTIME for m in members)
    assert {m.name for m in members if m.isdir()} >= {"bin", "etc", "tmp", "usr/bin"}
    assert next(m for m in members if m.name == "tmp").mode == 0o1777


# --- docker archive ---

def read_tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_docker_archive_parses_back(built):
    files = read_tar(built / "busybox.docker.tar")
    [entry] = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["busybox:latest"]
    config_blob = files[entry["Config"]]
    assert sha256(config_blob) == "sha256:" + entry["Config"].rsplit("/", 1)[1]
    config = json.loads(config_blob)
    assert_valid("config-schema.json", config)
    assert config["architecture"] and config["os"] == "linux"
    assert config["config"]["Cmd"] == ["sh"]
    assert config["config"]["Env"][0].startswith("PATH=")
    layers = [files[name] for name in entry["Layers"]]
    assert config["rootfs"]["diff_ids"] == [sha256(layer) for layer in layers]
    assert len(config["history"]) == 1
    with tarfile.open(fileobj=io.BytesIO(layers[0])) as tar:
        assert tar.getmember("bin/sh").linkname == "busybox"
    repositories = json.loads(files["repositories"])
    assert list(repositories) == ["busybox"] and list(repositories["busybox"]) == ["latest"]
    # The OCI view of the same archive (Docker 25+ readers).
    assert_valid("image-layout-schema.json", json.loads(files["oci-layout"]))
    index = json.loads(files["index.json"])
    assert_valid("image-index-schema.json", index)
    [desc] = index["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == "docker.io/library/busybox:latest"
    manifest_blob = files["blobs/sha256/" + desc["digest"].split(":")[1]]
    assert sha256(manifest_blob) == desc["digest"] and len(manifest_blob) == desc["size"]
    manifest = json.loads(manifest_blob)
    assert_valid("image-manifest-schema.json", manifest)
    assert manifest["config"]["digest"] == sha256(config_blob)
    assert [d["digest"] for d in manifest["layers"]] == config["rootfs"]["diff_ids"]


def test_docker_archive_names_other_tags(tmp_path):
    path = busybox.build_docker_archive(tmp_path / "x.tar", "registry.local:5000/team/bb:v1")
    files = read_tar(path)
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == ["registry.local:5000/team/bb:v1"]
    assert json.loads(files["repositories"]) == {
        "registry.local:5000/team/bb": {"v1": json.loads(files["manifest.json"])[0]["Layers"][0]
                                        .rsplit("/", 1)[1]}}
    annotations = json.loads(files["index.json"])["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == "registry.local:5000/team/bb:v1"


# --- OCI layout ---

def test_oci_layout_digests_and_schemas(built):
    layout = built / "oci"
    blobs = layout / "blobs/sha256"
    for blob in blobs.iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name

    def fetch(desc):
        data = (blobs / desc["digest"].split(":")[1]).read_bytes()
        assert len(data) == desc["size"]
        return data

    assert_valid("image-layout-schema.json", json.loads((layout / "oci-layout").read_text()))
    index = json.loads((layout / "index.json").read_text())
    assert_valid("image-index-schema.json", index)
    [desc] = index["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    manifest = json.loads(fetch(desc))
    assert_valid("image-manifest-schema.json", manifest)
    config = json.loads(fetch(manifest["config"]))
    assert_valid("config-schema.json", config)
    [layer_desc] = manifest["layers"]
    assert layer_desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    layer = fetch(layer_desc)
    assert layer[4:8] == b"\0\0\0\0"  # gzip header mtime
    assert config["rootfs"]["diff_ids"] == [sha256(gzip.decompress(layer))]
    assert {p.name for p in blobs.iterdir()} == {
        d["digest"].split(":")[1] for d in (desc, manifest["config"], layer_desc)}


def test_builds_are_reproducible(built, tmp_path):
    again = busybox.build_all(tmp_path)
    for name in ("oci/index.json", "busybox.docker.tar", "bundle/config.json"):
        assert (again / name).read_bytes() == (built / name).read_bytes(), name
    assert sorted(os.listdir(again / "oci/blobs/sha256")) == sorted(
        os.listdir(built / "oci/blobs/sha256"))


def test_script_runs_from_the_repo_root(tmp_path):
    subprocess.run([sys.executable, "tests/fixtures/busybox.py", str(tmp_path)], cwd=REPO,
                   check=True, capture_output=True)
    assert (tmp_path / "busybox/bundle/config.json").is_file()
