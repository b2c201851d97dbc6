"""The image endpoints through the real docker CLI (/usr/local/bin/docker) and raw HTTP, against
a real dockyardd and private registries (tests/fixtures/registry.py: an anonymous one and an
htpasswd one). Spec: docker-engine-api-v1.45.yaml (Image*); reference engine-api.md §1.3, §1.7
(the pull JSON stream), §2 (`Loaded image:` stream lines that docker-py parses).

Loopback registries are plain-HTTP-allowed by dockyardd as by dockerd, so no daemon flag is
needed. Each test names its own images so that the module's one engine can be shared."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import uuid
from urllib.parse import quote

import pytest

from tests.fixtures.registry import start_registry

BUSYBOX = "busybox:latest"


def _lines(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _rootfs_tar(files: dict[str, bytes]) -> bytes:
    """A small root filesystem tarball (a distinct layer per content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _import(engine, name: str, files: dict[str, bytes] | None = None) -> str:
    data = _rootfs_tar(files or {"etc/marker": uuid.uuid4().hex.encode()})
    args = ("import", "-", name) if name else ("import", "-")
    r = engine.docker(*args, input=data, check=True)
    image_id = r.stdout.decode().strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71, r.stdout
    return image_id


def _image_id(engine, name: str) -> str:
    return engine.docker("image", "inspect", "--format", "{{.Id}}", name, check=True).stdout.strip()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("auth-registry"), auth="htpasswd",
                         users={"alice": "s3cret"})
    yield reg
    reg.stop()


# --- list, inspect, history ---------------------------------------------------------------------

def test_images_lists_busybox_and_inspect_format(engine):
    r = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", check=True)
    assert "busybox:latest " in r.stdout
    r = engine.docker("image", "inspect", "--format",
                      "{{.Id}}|{{json .RepoTags}}|{{json .Config.Cmd}}|{{.RootFS.Type}}|{{.Os}}|{{.GraphDriver.Name}}",
                      "busybox", check=True)
    image_id, tags, cmd, rootfs, os_, driver = r.stdout.strip().split("|")
    assert image_id.startswith("sha256:")
    assert json.loads(tags) == [BUSYBOX]
    assert json.loads(cmd) == ["sh"]
    assert (rootfs, os_, driver) == ("layers", "linux", "overlayfs")
    # The same image by short ID, full ID, full name, and `docker inspect`'s fall-through
    # from containers (404) to images.
    for ref in (image_id[7:19], image_id, "docker.io/library/busybox:latest"):
        assert _image_id(engine, ref) == image_id
    r = engine.docker("inspect", "--format", "{{.Id}}", "busybox", check=True)
    assert r.stdout.strip() == image_id


def test_inspect_missing_image_is_404(engine):
    status, headers, body = engine.http("GET", "/v1.45/images/nothere/json")
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["message"] == "No such image: nothere:latest"
    r = engine.docker("inspect", "nothere")
    assert r.returncode == 1 and "No such object: nothere" in r.stderr
    status, _, body = engine.http("GET", "/images/Bad%20Name/json")
    assert status == 400, body


def test_history(engine):
    r = engine.docker("history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}", "busybox",
                      check=True)
    rows = [line.split("|") for line in r.stdout.strip().splitlines()]
    assert rows[0][0] == _image_id(engine, "busybox")
    history = engine.json("GET", "/images/busybox/history", expect=200)
    assert history[0]["Tags"] == [BUSYBOX]
    assert sum(h["Size"] for h in history) > 0


def test_list_filters(engine):
    name = f"filt{uuid.uuid4().hex[:6]}"
    engine.docker("tag", "busybox", f"{name}/app:1", check=True)
    dangling_id = _import(engine, "")  # no name: a dangling image
    try:
        r = engine.docker("images", "--filter", f"reference={name}/*", "--format", "{{.Repository}}:{{.Tag}}",
                          check=True)
        assert r.stdout.split() == [f"{name}/app:1"]
        r = engine.docker("images", "--filter", "dangling=true", "-q", "--no-trunc", check=True)
        assert dangling_id in r.stdout.split()
        assert _image_id(engine, "busybox") not in r.stdout.split()
        r = engine.docker("images", "--filter", "dangling=false", "-q", "--no-trunc", check=True)
        assert dangling_id not in r.stdout.split()
        listed = engine.json("GET", "/images/json", expect=200)
        dangling = [i for i in listed if i["Id"] == dangling_id]
        assert dangling and dangling[0]["RepoTags"] == []
        for key in ("Id", "ParentId", "RepoTags", "RepoDigests", "Created", "Size", "SharedSize",
                    "Labels", "Containers"):
            assert key in listed[0]
        status, _, body = engine.http("GET", "/images/json?filters=" + quote(json.dumps({"bogus": ["x"]})))
        assert status == 400 and b"invalid filter" in body
    finally:
        engine.docker("rmi", f"{name}/app:1")
        engine.docker("rmi", dangling_id)


# --- tag and rmi --------------------------------------------------------------------------------

def test_tag_and_rmi(engine):
    name = f"tagged{uuid.uuid4().hex[:6]}"
    image_id = _import(engine, f"{name}:1")
    engine.docker("tag", f"{name}:1", f"{name}:2", check=True)
    engine.docker("tag", image_id[7:19], f"127.0.0.1:5999/{name}/x", check=True)
    tags = json.loads(engine.docker("image", "inspect", "--format", "{{json .RepoTags}}", image_id,
                                    check=True).stdout)
    assert sorted(tags) == sorted([f"{name}:1", f"{name}:2", f"127.0.0.1:5999/{name}/x:latest"])
    status, _, body = engine.http("POST", f"/images/{name}:1/tag?repo=Bad!")
    assert status == 400, body
    # An ID with several names: 409 unless forced.
    r = engine.docker("rmi", image_id[7:19])
    assert r.returncode == 1
    assert f"unable to delete {image_id[7:19]} (must be forced) - image is referenced in multiple repositories" in r.stderr
    r = engine.docker("rmi", f"{name}:2", check=True)
    assert r.stdout.strip() == f"Untagged: {name}:2"
    r = engine.docker("rmi", "-f", image_id, check=True)
    lines = r.stdout.strip().splitlines()
    assert f"Untagged: {name}:1" in lines and f"Untagged: 127.0.0.1:5999/{name}/x:latest" in lines
    assert lines[-1] == f"Deleted: {image_id}"
    r = engine.docker("rmi", f"{name}:1")
    assert r.returncode == 1 and f"No such image: {name}:1" in r.stderr


def test_rmi_conflicts_with_containers(engine):
    name = f"inuse{uuid.uuid4().hex[:6]}"
    image_id = _import(engine, f"{name}:1")
    created = engine.json("POST", "/containers/create", {"Image": f"{name}:1", "Cmd": ["/nothing"]})
    if not created or "Id" not in created:
        pytest.fail(f"container create failed: {created}")
    cid = created["Id"]
    try:
        r = engine.docker("rmi", f"{name}:1")
        assert r.returncode == 1
        assert (f'conflict: unable to remove repository reference "{name}:1" (must force) - container '
                f"{cid[:12]} is using its referenced image {image_id[7:19]}") in r.stderr
        r = engine.docker("rmi", image_id[7:19])
        assert r.returncode == 1
        assert (f"unable to delete {image_id[7:19]} (must be forced) - image is being used by stopped "
                f"container {cid[:12]}") in r.stderr
        # Forced: the name goes, the image stays for the container (dangling).
        r = engine.docker("rmi", "-f", f"{name}:1", check=True)
        assert r.stdout.strip() == f"Untagged: {name}:1"
        assert engine.json("GET", f"/images/{image_id}/json", expect=200)["RepoTags"] == []
    finally:
        engine.http("DELETE", f"/containers/{cid}?force=1")
    engine.docker("rmi", image_id, check=True)


def test_rmi_running_container_cannot_be_forced(engine):
    r = engine.docker("run", "-d", "busybox", "sleep", "60", check=True)
    cid = r.stdout.strip()
    image_id = _image_id(engine, "busybox")
    try:
        r = engine.docker("rmi", "-f", image_id)
        assert r.returncode == 1
        assert (f"unable to delete {image_id[7:19]} (cannot be forced) - image is being used by running "
                f"container {cid[:12]}") in r.stderr
        assert _image_id(engine, "busybox") == image_id
    finally:
        engine.docker("rm", "-f", cid)


# --- save, load, import -------------------------------------------------------------------------

def test_load_real_docker_save_archive(engine, busybox_archive):
    """The fixture's archive has `docker save`'s layout (manifest.json, repositories, OCI
    index); the CLI prints the daemon's `Loaded image:` lines, docker-py parses them."""
    r = engine.docker("load", "-i", busybox_archive, check=True)
    assert "Loaded image: busybox:latest" in r.stdout
    with open(busybox_archive, "rb") as f:
        status, headers, body = engine.http("POST", "/v1.45/images/load?quiet=1", body=f.read(),
                                            headers={"Content-Type": "application/x-tar"})
    assert status == 200 and headers["content-type"] == "application/json"
    assert {"stream": "Loaded image: busybox:latest\n"} in _lines(body)
    status, _, body = engine.http("POST", "/images/load", body=b"this is not a tar archive")
    assert status >= 400 or any("error" in m for m in _lines(body)), body


def test_save_pipe_load_roundtrip(engine, tmp_path):
    name = f"saved{uuid.uuid4().hex[:6]}:1"
    image_id = _import(engine, name)
    archive = tmp_path / "images.tar"
    engine.docker("save", "-o", str(archive), name, "busybox", check=True)
    with tarfile.open(archive) as tar:
        members = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
    assert {"manifest.json", "index.json", "oci-layout"} <= members
    assert sorted(t for m in manifest for t in m["RepoTags"]) == sorted([name, BUSYBOX])
    engine.docker("rmi", name, check=True)
    r = engine.docker("load", "-i", str(archive), check=True)
    assert f"Loaded image: {name}" in r.stdout
    assert _image_id(engine, name) == image_id
    # docker save | docker load, as a pipe.
    save = subprocess.run(["/usr/local/bin/docker", "save", name], env=engine.env, capture_output=True,
                          timeout=60)
    assert save.returncode == 0, save.stderr
    engine.docker("rmi", name, check=True)
    r = engine.docker("load", input=save.stdout, check=True)
    assert f"Loaded image: {name}" in r.stdout.decode()
    status, headers, body = engine.http("GET", f"/images/get?names={name}&names=busybox")
    assert status == 200 and headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert "manifest.json" in tar.getnames()
    status, _, body = engine.http("GET", "/images/nothere/get")
    assert status == 404, body
    engine.docker("rmi", name, check=True)


def test_import(engine):
    name = f"imported{uuid.uuid4().hex[:6]}:v1"
    image_id = _import(engine, name, {"hello.txt": b"hi\n"})
    r = engine.docker("image", "inspect", "--format", "{{.Comment}}|{{.Os}}|{{len .RootFS.Layers}}", name,
                      check=True)
    assert r.stdout.strip() == "Imported from -|linux|1"
    assert _image_id(engine, name) == image_id
    status, _, body = engine.http("POST", "/images/create?fromSrc=http://example.com/rootfs.tar&repo=x")
    assert status == 501 and b"not supported" in body
    status, _, body = engine.http("POST", "/images/create")
    assert status == 400, body
    engine.docker("rmi", name, check=True)


# --- registries ---------------------------------------------------------------------------------

def test_push_and_pull_with_progress(engine, registry):
    repo = f"{registry.host}/team/app{uuid.uuid4().hex[:6]}"
    image_id = _import(engine, f"{repo}:1", {"data.bin": os.urandom(200_000)})
    r = engine.docker("push", f"{repo}:1", check=True)
    assert f"The push refers to repository [{repo}]" in r.stdout
    assert "Pushed" in r.stdout and "1: digest: sha256:" in r.stdout
    engine.docker("rmi", f"{repo}:1", check=True)  # the layer goes with it: the pull downloads
    status, headers, body = engine.http(
        "POST", f"/v1.45/images/create?fromImage={repo}&tag=1", headers={"X-Registry-Auth": "e30="})
    assert status == 200 and headers["content-type"] == "application/json"
    messages = _lines(body)
    statuses = [m.get("status", "") for m in messages]
    assert messages[0] == {"status": f"Pulling from {repo.split('/', 1)[1]}", "id": "1"}
    assert "Pulling fs layer" in statuses and "Pull complete" in statuses
    downloading = [m for m in messages if m.get("status") == "Downloading"]
    assert downloading and downloading[-1]["progressDetail"]["total"] > 0
    assert "progress" in downloading[-1]
    assert any(s.startswith("Digest: sha256:") for s in statuses)
    assert statuses[-1] == f"Status: Downloaded newer image for {repo}:1"
    assert _image_id(engine, f"{repo}:1") == image_id
    r = engine.docker("pull", f"{repo}:1", check=True)
    assert f"Status: Image is up to date for {repo}:1" in r.stdout
    digests = engine.json("GET", f"/images/{repo}:1/json", expect=200)["RepoDigests"]
    assert digests and digests[0].startswith(f"{repo}@sha256:")
    # A missing image: an HTTP error the CLI prints (nothing was streamed yet).
    r = engine.docker("pull", f"{registry.host}/team/missing:1")
    assert r.returncode == 1 and "Error response from daemon" in r.stderr
    r = engine.docker("push", f"{registry.host}/team/notlocal:1")
    assert r.returncode == 1 and "does not exist locally" in r.stderr
    engine.docker("rmi", f"{repo}:1", check=True)


def test_login_push_pull_htpasswd_registry(engine, auth_registry):
    host = auth_registry.host
    r = engine.docker("login", host, "-u", "alice", "--password-stdin", input="wrong\n")
    assert r.returncode == 1 and "Error response from daemon" in r.stderr
    status, _, body = engine.http("POST", "/auth", {"username": "alice", "password": "wrong",
                                                    "serveraddress": host})
    assert status == 401, body
    status, _, body = engine.http("POST", "/auth", {"username": "alice", "password": "s3cret",
                                                    "serveraddress": f"http://{host}/v2/"})
    assert status == 200 and json.loads(body) == {"Status": "Login Succeeded", "IdentityToken": ""}
    r = engine.docker("login", host, "-u", "alice", "--password-stdin", input="s3cret\n", check=True)
    assert "Login Succeeded" in r.stdout
    repo = f"{host}/private{uuid.uuid4().hex[:6]}"
    engine.docker("tag", "busybox", f"{repo}:1", check=True)
    engine.docker("push", f"{repo}:1", check=True)  # credentials from the CLI's config
    engine.docker("rmi", f"{repo}:1", check=True)
    r = engine.docker("pull", f"{repo}:1", check=True)
    assert f"{repo}:1" in r.stdout
    engine.docker("rmi", f"{repo}:1", check=True)
    # Without credentials the registry refuses: 401, and the CLI says so.
    status, _, body = engine.http("POST", f"/images/create?fromImage={repo}&tag=1")
    assert status == 401, body
    status, _, body = engine.http("POST", f"/images/create?fromImage={repo}&tag=1",
                                  headers={"X-Registry-Auth": "!!not base64!!"})
    assert status == 400, body


def test_search_is_a_clear_error(engine):
    r = engine.docker("search", "busybox")
    assert r.returncode == 1
    assert "search is not supported" in r.stderr
    status, headers, body = engine.http("GET", "/images/search?term=busybox")
    assert status == 501 and headers["content-type"] == "application/json"
