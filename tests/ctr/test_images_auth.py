"""`dockyard-ctr images pull|push` against a token-auth registry (Bearer tokens from the test
token server, user alice), through a real dockyard-containerd: credentials from `--user`, or
from a Docker config.json found through $DOCKER_CONFIG (read by dockyard-ctr, which sends them
with the request: the daemon reads no config of its own); a wrong password is a one-line error
that leaves no image behind."""

import base64
import json

import pytest

from dockyard.images.registry import AuthConfig, Registry, RegistryConfig
from tests.fixtures.registry import push_fixture_image, start_registry

REPO = "private/busybox"


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("registry-token"), auth="token",
                         users={"alice": "s3cret"})
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def pushed(token_registry):
    """busybox pushed by skopeo with alice's credentials: (reference, manifest digest)."""
    digest = push_fixture_image(token_registry.host, REPO, "latest", creds=("alice", "s3cret"))
    return f"{token_registry.host}/{REPO}:latest", digest


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """An empty $DOCKER_CONFIG directory (so ~/.docker never counts); `write(auths)` fills it."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))

    def write(auths: dict) -> None:
        (directory / "config.json").write_text(json.dumps({"auths": auths}))
    write.directory = directory
    return write


def _auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def _registry_digest(host: str, repo: str, tag: str) -> str:
    reg = Registry(host, AuthConfig("alice", "s3cret"), RegistryConfig(retry_backoff=0.01))
    return reg.get_manifest(repo, tag).digest


def _failed(r, *words: str) -> None:
    """A failed pull/push: exit 1, one line on stderr (progress may have gone to stdout)."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("dockyard-ctr: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


def test_pull_and_push_with_user_flag(ctr, pushed, token_registry, docker_config):
    ref, digest = pushed
    out = ctr.ok("images", "pull", "--user", "alice:s3cret", ref).splitlines()
    assert f"Digest: {digest}" in out and out[-1] == ref
    assert ctr.ok("images", "ls", "-q") == ref + "\n"
    target = f"{token_registry.host}/private/copy:v1"
    ctr.ok("images", "tag", ref, target)
    # Without credentials the registry's token server gives no push (nor pull) right.
    _failed(ctr("images", "push", target), "unauthorized")
    out = ctr.ok("images", "push", "--user", "alice:s3cret", target).splitlines()
    assert out[-1].startswith(f"v1: digest: {digest} size: "), out
    assert _registry_digest(token_registry.host, "private/copy", "v1") == digest


def test_pull_and_push_with_docker_config(ctr, pushed, token_registry, docker_config):
    ref, digest = pushed
    # Credentials for another registry only: they are not sent here.
    docker_config({"other.example:5000": _auth("alice", "s3cret")})
    _failed(ctr("images", "pull", ref), "authentication required")
    assert ctr.ok("images", "ls", "-q") == ""

    docker_config({f"https://{token_registry.host}": _auth("alice", "s3cret")})
    out = ctr.ok("images", "pull", ref).splitlines()
    assert f"Digest: {digest}" in out and out[-1] == ref
    target = f"{token_registry.host}/private/from-config:v2"
    ctr.ok("images", "tag", ref, target)
    out = ctr.ok("images", "push", target).splitlines()
    assert out[-1].startswith(f"v2: digest: {digest} size: "), out
    assert _registry_digest(token_registry.host, "private/from-config", "v2") == digest


def test_wrong_password_is_one_line_and_leaves_nothing(ctr, pushed, docker_config):
    ref, _ = pushed
    _failed(ctr("images", "pull", "--user", "alice:wrong", ref), "unauthorized")
    assert ctr.ok("images", "ls", "-q") == ""
    docker_config({pushed[0].split("/")[0]: _auth("alice", "wrong")})
    _failed(ctr("images", "pull", ref), "unauthorized")
    assert ctr.ok("images", "ls", "-q") == ""
    assert ctr.ok("content", "ls", "-q") == ""
    # A config.json that is not JSON: the file is named, no traceback, nothing pulled.
    (docker_config.directory / "config.json").write_text("{not json")
    _failed(ctr("images", "pull", ref), "config.json", "invalid JSON")
    assert ctr.ok("images", "ls", "-q") == ""
