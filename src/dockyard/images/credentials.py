"""Registry credentials from Docker's client configuration, as `docker login` leaves them.

`$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`, docker/cli config/configfile):
- `auths`: keyed by registry host, possibly written as a URL ("https://host", and for Docker Hub
  the legacy "https://index.docker.io/v1/"); each entry has `auth` (base64 "user:password") or
  `username`/`password`, and optionally `identitytoken` (an OAuth2 refresh token) and
  `registrytoken` (a bearer token used as is).
- `credHelpers` {host: name} and `credsStore` name: run `docker-credential-<name> get` with the
  server URL on stdin; it prints {"ServerURL", "Username", "Secret"} (docker-credential-helpers
  protocol), Username "<token>" meaning Secret is an identity token.
Keys with a path ("host/namespace") are honoured most-specific-first, as podman's auth.json does.
"""

import base64
import binascii
import json
import os
import subprocess
from dataclasses import dataclass

from dockyard.errors import InvalidArgument, SystemFailure

# Docker Hub's names: what `docker login` writes and what references resolve to.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_HELPER_TIMEOUT = 30


@dataclass
class AuthConfig:
    username: str = ""
    password: str = ""
    identitytoken: str = ""
    registrytoken: str = ""

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"AuthConfig(username={self.username!r}, secrets=***)"

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identitytoken or self.registrytoken)


def config_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def _host_of(key: str) -> tuple[str, str]:
    """("host", "path") of an `auths` key: scheme dropped; Docker Hub aliases folded."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
            host, _, _ = key.partition("/")  # URL keys carry API paths (/v1/), not repositories
            return _canonical_host(host), ""
    host, _, path = key.partition("/")
    return _canonical_host(host), path.strip("/")


def _canonical_host(host: str) -> str:
    host = host.lower()
    return "docker.io" if host in _HUB_HOSTS else host


def _server_url(domain: str) -> str:
    return DOCKER_HUB_KEY if _canonical_host(domain) == "docker.io" else domain


def lookup(domain: str, path: str | None = None) -> AuthConfig | None:
    """Credentials for registry `domain` (and repository `path`), or None when none are stored."""
    file = config_path()
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InvalidArgument(f"cannot read {file}: {e.strerror}") from None
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{file}: invalid JSON: {e}") from None
    if not isinstance(config, dict):
        raise InvalidArgument(f"{file}: not a JSON object")
    host = _canonical_host(domain)

    helpers = config.get("credHelpers")
    helpers = {} if helpers is None else helpers
    if not isinstance(helpers, dict):
        raise InvalidArgument(f"{file}: credHelpers must be an object")
    helper = next((name for key, name in helpers.items() if _host_of(key)[0] == host), None)
    if helper is None and config.get("credsStore"):
        helper = config["credsStore"]
    if helper is not None:
        if not isinstance(helper, str) or not helper or "/" in helper:
            raise InvalidArgument(f"{file}: invalid credential helper name {helper!r}")
        found = _from_helper(helper, _server_url(domain))
        if found is not None:
            return found

    auths = config.get("auths")
    auths = {} if auths is None else auths
    if not isinstance(auths, dict):
        raise InvalidArgument(f"{file}: auths must be an object")
    best, best_len = None, -1
    for key, entry in auths.items():
        key_host, key_path = _host_of(key)
        if key_host != host:
            continue
        if key_path and not (path and (path == key_path or path.startswith(key_path + "/"))):
            continue
        if len(key_path) > best_len:
            best, best_len = (key, entry), len(key_path)
    if best is None:
        return None
    return _from_entry(file, *best)


def _from_entry(file: str, key: str, entry) -> AuthConfig | None:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{file}: auths[{key!r}] must be an object")
    fields = {}
    for name in ("auth", "username", "password", "identitytoken", "registrytoken"):
        value = entry.get(name, "")
        if not isinstance(value, str):
            raise InvalidArgument(f"{file}: auths[{key!r}].{name} must be a string")
        fields[name] = value
    auth = AuthConfig(fields["username"], fields["password"], fields["identitytoken"],
                      fields["registrytoken"])
    if fields["auth"]:
        try:
            decoded = base64.b64decode(fields["auth"], validate=True).decode()
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"{file}: auths[{key!r}].auth is not base64") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise InvalidArgument(f"{file}: auths[{key!r}].auth is not base64 of user:password")
        auth.username, auth.password = user, password
    return auth if auth else None


def _from_helper(name: str, server_url: str) -> AuthConfig | None:
    program = f"docker-credential-{name}"
    try:
        result = subprocess.run([program, "get"], input=server_url.encode(), capture_output=True,
                                timeout=_HELPER_TIMEOUT)
    except FileNotFoundError:
        raise SystemFailure(f"error getting credentials: {program} not found in PATH") from None
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SystemFailure(f"error getting credentials from {program}: {e}") from None
    out = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0:
        # The helpers' protocol: this text means "nothing stored" (ErrCredentialsNotFound).
        if "credentials not found" in out.lower():
            return None
        reason = (out or result.stderr.decode(errors="replace").strip()
                  or f"exit {result.returncode}")
        raise SystemFailure(f"error getting credentials from {program}: {reason.splitlines()[0]}")
    try:
        answer = json.loads(out)
        username, secret = answer.get("Username", ""), answer.get("Secret", "")
        if not isinstance(username, str) or not isinstance(secret, str):
            raise ValueError("Username and Secret must be strings")
    except (ValueError, AttributeError) as e:
        raise SystemFailure(f"error getting credentials from {program}: bad answer: {e}") from None
    if not username and not secret:
        return None
    if username == "<token>":
        return AuthConfig(identitytoken=secret)
    return AuthConfig(username=username, password=secret)
