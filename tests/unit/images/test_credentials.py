"""Credentials from Docker's config.json and credential helpers (no registry needed)."""

import base64
import json
import os
import stat

import pytest

from dockyard.errors import InvalidArgument, SystemFailure
from dockyard.images.credentials import AuthConfig, lookup


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    return tmp_path


def write(config_dir, obj):
    (config_dir / "config.json").write_text(obj if isinstance(obj, str) else json.dumps(obj))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_no_config_file_means_no_credentials(config_dir):
    assert lookup("registry.example") is None


def test_auth_field_and_host_forms(config_dir):
    write(config_dir, {"auths": {
        "https://registry.example": {"auth": b64("u1:p:with:colons")},
        "other.example:5000": {"username": "u2", "password": "p2"},
        "https://index.docker.io/v1/": {"auth": b64("hub:secret")},
    }})
    assert lookup("registry.example") == AuthConfig("u1", "p:with:colons")
    assert lookup("other.example:5000") == AuthConfig("u2", "p2")
    assert lookup("other.example") is None  # the port is part of the key
    for hub in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert lookup(hub) == AuthConfig("hub", "secret")
    assert lookup("unknown.example") is None


def test_tokens_and_path_specific_keys(config_dir):
    write(config_dir, {"auths": {
        "reg.example": {"identitytoken": "refresh-me"},
        "reg.example/team": {"auth": b64("team:pw")},
        "reg.example/team/special": {"registrytoken": "bearer-xyz"},
    }})
    assert lookup("reg.example", "solo/app") == AuthConfig(identitytoken="refresh-me")
    assert lookup("reg.example", "team/app") == AuthConfig("team", "pw")
    assert lookup("reg.example", "team/special") == AuthConfig(registrytoken="bearer-xyz")
    assert lookup("reg.example", "teamster/app") == AuthConfig(identitytoken="refresh-me")


def test_secrets_not_in_repr():
    assert "hunter2" not in repr(AuthConfig("bob", "hunter2", "tok", "rt"))


@pytest.mark.parametrize("content,match", [
    ("{not json", "invalid JSON"),
    ("[]", "not a JSON object"),
    ({"auths": []}, "auths must be an object"),
    ({"auths": {"r.example": "x"}}, "must be an object"),
    ({"auths": {"r.example": {"auth": "%%%"}}}, "not base64"),
    ({"auths": {"r.example": {"auth": b64("nocolon")}}}, "user:password"),
    ({"auths": {"r.example": {"username": 5}}}, "must be a string"),
    ({"credHelpers": {"r.example": "../evil"}}, "invalid credential helper"),
])
def test_malformed_config_names_the_file(config_dir, content, match):
    write(config_dir, content)
    with pytest.raises(InvalidArgument, match=match) as e:
        lookup("r.example")
    assert str(config_dir / "config.json") in str(e.value)


def _helper(bindir, name, script):
    path = bindir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bindir(tmp_path, monkeypatch):
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}:{os.environ['PATH']}")
    return d


def test_credential_helpers(config_dir, bindir):
    # echo back what was asked on stdin, so the test sees the server URL passed
    _helper(bindir, "test", 'read url; [ "$1" = get ] || exit 3\n'
            'printf \'{"ServerURL":"%s","Username":"%s","Secret":"s"}\' "$url" "$url"\n')
    _helper(bindir, "tok", 'read url; echo \'{"Username":"<token>","Secret":"idtok"}\'\n')
    _helper(bindir, "none", 'echo "credentials not found in native keychain"; exit 1\n')
    _helper(bindir, "broken", 'echo "keychain locked" >&2; exit 1\n')
    write(config_dir, {"credHelpers": {"helped.example": "test", "tok.example": "tok",
                                       "none.example": "none", "broken.example": "broken",
                                       "missing.example": "absent"},
                       "credsStore": "test",
                       "auths": {"none.example": {"auth": b64("fallback:pw")}}})
    assert lookup("helped.example") == AuthConfig("helped.example", "s")
    assert lookup("docker.io") == AuthConfig("https://index.docker.io/v1/", "s")  # credsStore
    assert lookup("tok.example") == AuthConfig(identitytoken="idtok")
    assert lookup("none.example") == AuthConfig("fallback", "pw")
    with pytest.raises(SystemFailure, match="keychain locked"):
        lookup("broken.example")
    with pytest.raises(SystemFailure, match="docker-credential-absent not found"):
        lookup("missing.example")
