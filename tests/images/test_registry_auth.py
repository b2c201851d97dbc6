"""Authentication against a real docker-registry: Basic (htpasswd), Bearer tokens from our token
server (scope caching, refresh tokens), credentials from $DOCKER_CONFIG, and Authorization never
following a redirect to another host."""

import base64
import json

import pytest

from dockyard.errors import Unauthenticated
from dockyard.images import credentials
from dockyard.images.registry import AuthConfig, Registry, RegistryConfig
from tests.fixtures.registry import push_fixture_image

FAST = RegistryConfig(retry_backoff=0.01)
ALICE = AuthConfig(username="alice", password="s3cret")


@pytest.fixture(scope="module")
def basic_image(htpasswd_registry):
    return "auth/basic", push_fixture_image(htpasswd_registry.host, "auth/basic", "latest",
                                            creds=("alice", "s3cret"))


@pytest.fixture(scope="module")
def token_image(token_registry):
    return "auth/token", push_fixture_image(token_registry.host, "auth/token", "latest",
                                            creds=("alice", "s3cret"))


def test_basic_auth_pull(htpasswd_registry, basic_image):
    repo, digest = basic_image
    reg = Registry(htpasswd_registry.host, ALICE, FAST)
    reg.ping()
    assert reg.get_manifest(repo, "latest").digest == digest


def test_basic_auth_wrong_password(htpasswd_registry, basic_image):
    reg = Registry(htpasswd_registry.host, AuthConfig("alice", "wrong"), FAST)
    with pytest.raises(Unauthenticated, match="unauthorized"):
        reg.get_manifest(basic_image[0], "latest")
    with pytest.raises(Unauthenticated):
        reg.ping()


def test_anonymous_on_auth_registry(htpasswd_registry, basic_image):
    reg = Registry(htpasswd_registry.host, config=FAST)
    reg.ping()  # reachable: no error without credentials
    with pytest.raises(Unauthenticated, match="authentication required"):
        reg.get_manifest(basic_image[0], "latest")


def test_bearer_token_pull_caches_per_scope(token_registry, token_image):
    repo, digest = token_image
    server = token_registry.token_server
    reg = Registry(token_registry.host, ALICE, FAST)
    before = len(server.requests)
    fetched = reg.get_manifest(repo, "latest")
    assert fetched.digest == digest
    layer = json.loads(fetched.data)["layers"][0]["digest"]
    assert reg.blob_exists(repo, layer)
    reg.fetch_blob(repo, layer, lambda b: None)
    reg.head_manifest(repo, "latest")
    asked = server.requests[before:]
    assert [(r.account, r.scopes) for r in asked] == [("alice", [f"repository:{repo}:pull"])]
    # a push scope is another token
    reg.put_manifest(repo, "again", fetched.data, fetched.media_type)
    asked = server.requests[before:]
    assert [r.scopes for r in asked] == [[f"repository:{repo}:pull"],
                                         [f"repository:{repo}:pull,push"]]


def test_bearer_mount_asks_for_both_repositories(token_registry, token_image):
    repo, digest = token_image
    server = token_registry.token_server
    reg = Registry(token_registry.host, ALICE, FAST)
    layer = json.loads(reg.get_manifest(repo, digest).data)["layers"][0]["digest"]
    before = len(server.requests)
    assert reg.mount_blob("auth/mounted", layer, repo)
    assert sorted(server.requests[before].scopes) == sorted(
        ["repository:auth/mounted:pull,push", f"repository:{repo}:pull"])


def test_bearer_expired_token_is_renewed(registry_factory):
    reg_proc = registry_factory(auth="token", token_expires_in=1)
    push_fixture_image(reg_proc.host, "short/lived", "latest", creds=("alice", "s3cret"))
    reg = Registry(reg_proc.host, ALICE, FAST)
    reg.get_manifest("short/lived", "latest")
    reg.get_manifest("short/lived", "latest")
    # lifetime below our renewal margin: every request needs a fresh token, none fails
    assert len([r for r in reg_proc.token_server.requests if r.account == "alice"
                and r.scopes == ["repository:short/lived:pull"]]) == 2


def test_bearer_wrong_password(token_registry, token_image):
    reg = Registry(token_registry.host, AuthConfig("alice", "nope"), FAST)
    with pytest.raises(Unauthenticated, match="unauthorized: invalid credentials"):
        reg.get_manifest(token_image[0], "latest")


def test_bearer_anonymous_without_access(token_registry, token_image):
    reg = Registry(token_registry.host, config=FAST)
    with pytest.raises(Unauthenticated, match="unauthorized"):
        reg.get_manifest(token_image[0], "latest")


def test_bearer_anonymous_pull_allowed(registry_factory):
    reg_proc = registry_factory(auth="token", anonymous_actions=("pull",))
    digest = push_fixture_image(reg_proc.host, "public/img", "latest", creds=("alice", "s3cret"))
    reg = Registry(reg_proc.host, config=FAST)
    assert reg.get_manifest("public/img", "latest").digest == digest
    assert reg_proc.token_server.requests[-1].account == ""
    with pytest.raises(Unauthenticated):
        reg.put_manifest("public/img", "nope", b"{}", "application/vnd.oci.image.manifest.v1+json")


def test_identity_token_uses_oauth_refresh(token_registry, token_image):
    import urllib.parse
    import http.client
    server = token_registry.token_server
    conn = http.client.HTTPConnection(server.host)
    conn.request("POST", "/token", body=urllib.parse.urlencode(
        {"grant_type": "password", "username": "alice", "password": "s3cret",
         "service": "x"}), headers={"Content-Type": "application/x-www-form-urlencoded"})
    refresh = json.loads(conn.getresponse().read())["refresh_token"]
    conn.close()
    reg = Registry(token_registry.host, AuthConfig(identitytoken=refresh), FAST)
    assert reg.get_manifest(token_image[0], "latest").digest == token_image[1]
    last = server.requests[-1]
    assert (last.method, last.grant_type, last.account) == ("POST", "refresh_token", "alice")
    bad = Registry(token_registry.host, AuthConfig(identitytoken="forged"), FAST)
    with pytest.raises(Unauthenticated):
        bad.get_manifest(token_image[0], "latest")


def test_registry_token_is_sent_as_is(token_registry, token_image):
    import http.client
    server = token_registry.token_server
    conn = http.client.HTTPConnection(server.host)
    basic = base64.b64encode(b"alice:s3cret").decode()
    conn.request("GET", f"/token?service=x&scope=repository:{token_image[0]}:pull",
                 headers={"Authorization": f"Basic {basic}"})
    token = json.loads(conn.getresponse().read())["token"]
    conn.close()
    before = len(server.requests)
    reg = Registry(token_registry.host, AuthConfig(registrytoken=token), FAST)
    assert reg.get_manifest(token_image[0], "latest").digest == token_image[1]
    assert len(server.requests) == before


def test_credentials_from_docker_config(htpasswd_registry, basic_image, tmp_path, monkeypatch):
    auth = base64.b64encode(b"alice:s3cret").decode()
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {f"http://{htpasswd_registry.host}": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    found = credentials.lookup(htpasswd_registry.host, basic_image[0])
    assert (found.username, found.password) == ("alice", "s3cret")
    reg = Registry(htpasswd_registry.host, found, FAST)
    assert reg.get_manifest(*basic_image).digest == basic_image[1]


@pytest.mark.parametrize("auth_mode", ["htpasswd", "token"])
def test_redirect_does_not_carry_authorization(auth_mode, htpasswd_registry, token_registry,
                                               basic_image, token_image, fault_proxy):
    reg_proc, (repo, digest) = ((htpasswd_registry, basic_image) if auth_mode == "htpasswd"
                                else (token_registry, token_image))
    # The registry's answer for blobs is served from "another host": a second proxy in front
    # of the same registry, recording what it receives (blob GETs need no auth there? they
    # do: the registry itself answers 401, which is the point — it must not get our secret).
    other = fault_proxy(reg_proc.host)
    front = fault_proxy(reg_proc.host)
    reg = Registry(front.host, ALICE, FAST)
    layer = json.loads(reg.get_manifest(repo, digest).data)["layers"][0]["digest"]
    front.add_rule(r"/blobs/sha256:", method="GET", redirect_to=other.host)
    with pytest.raises(Unauthenticated):
        reg.fetch_blob(repo, layer, lambda b: None)
    redirected = other.requests_matching("/blobs/")
    assert redirected and all("authorization" not in r.headers for r in redirected)
    assert any("authorization" in r.headers for r in front.requests_matching("/blobs/"))
