"""A client for the OCI distribution API (distribution-spec spec.md; Docker's registry HTTP API
V2): manifests, blobs with resumable reads, uploads (monolithic, chunked, cross-repo mount), and
the auth dance of docs/spec/auth/token.md (Basic, Bearer tokens from a realm, OAuth2 refresh).

One `Registry` per registry host, shared by every thread of a pull or push: connections come
from a small pool (transport.py), tokens are cached per scope set until they expire.

What callers rely on:
- manifests are verified here (size cap, digest of the exact bytes against the reference and the
  Docker-Content-Digest header); blobs are not — the caller hashes while it stores, and
  `open_blob` raises Unavailable on a drop mid-body so the caller can reopen at its offset;
- errors: NotFound (manifest/blob unknown), Unauthenticated (401 after authenticating, 403),
  Unavailable (unreachable, 5xx/429 after retries), InvalidArgument (bad input, bad answers).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from dockyard.errors import (Conflict, InvalidArgument, NotFound, SystemFailure, Unauthenticated,
                             Unavailable, Unsupported)
from dockyard.images import challenge as _challenge
from dockyard.images import reference as _reference
from dockyard.images.credentials import AuthConfig
from dockyard.images.transport import (Body, RegistryConfig, Response, TooLarge, Transport,
                                       split_host)
from dockyard.oci import digest as _digest
from dockyard.oci import image as _image

__all__ = ["AuthConfig", "BlobStream", "Fetched", "Registry", "RegistryConfig"]

_TOKEN_MARGIN = 10  # seconds: renew a token this long before it expires
_DEFAULT_TOKEN_LIFETIME = 60  # token.md: "if omitted, 60 seconds"
_ERROR_BODY_MAX = 64 << 10
_TOKEN_BODY_MAX = 1 << 20
_READ_BLOCK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)\Z")
_RANGE = re.compile(r"(?:bytes=)?(\d+)-(\d+)\Z")


@dataclass(frozen=True)
class Fetched:
    data: bytes
    media_type: str
    digest: str


def _check_repo(repo: str) -> str:
    if not isinstance(repo, str) or not repo:
        raise InvalidArgument("repository name must be a non-empty string")
    try:
        parsed = _reference.parse(f"registry.invalid/{repo}", default_tag=None)
    except InvalidArgument:
        parsed = None
    if parsed is None or parsed.path != repo or parsed.tag or parsed.digest:
        raise InvalidArgument(f"invalid repository name {repo[:140]!r}")
    return repo


def _check_ref(ref: str) -> str:
    """A tag or a digest: what goes after /manifests/."""
    if isinstance(ref, str) and ":" in ref:
        return _digest.validate(ref)
    return _reference.validate_tag(ref)


def _bare_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _error_message(resp: Response) -> str:
    """The registry's own words: "code: message" from {"errors": [...]}, else the status."""
    try:
        body = json.loads(resp.data or b"{}")
        errors = body.get("errors") if isinstance(body, dict) else None
        parts = []
        for err in errors or ():
            if not isinstance(err, dict):
                continue
            code = str(err.get("code") or "").lower().replace("_", " ")
            message = str(err.get("message") or "")
            parts.append(f"{code}: {message}" if code and message and code != message.lower()
                         else code or message)
        text = "; ".join(p for p in parts if p)
    except (ValueError, AttributeError):
        text = ""
    text = text or f"{resp.status} {resp.reason}".strip()
    return " ".join(text.split())[:512]


class BlobStream:
    """A blob body being read: `.read(n)`, `.close()`, `.size` (whole blob, if known) and
    `.offset` (position in the blob of the next byte `read` returns)."""

    def __init__(self, registry: "Registry", resp: Response, digest: str, offset: int,
                 size: int | None, remaining: int | None):
        self._registry, self._resp, self._digest = registry, resp, digest
        self.offset, self.size, self._remaining = offset, size, remaining

    def read(self, n: int = _READ_BLOCK) -> bytes:
        if self._resp is None or n == 0 or self._remaining == 0:
            return b""
        if self._remaining is not None:
            n = min(n, self._remaining)
        try:
            chunk = self._resp.read(n)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise self._dropped(str(e) or type(e).__name__) from None
        if not chunk:
            self.close()
            if self._remaining:
                raise self._dropped("connection closed early")
            return b""
        self.offset += len(chunk)
        if self._remaining is not None:
            self._remaining -= len(chunk)
        return chunk

    def _dropped(self, why: str) -> Unavailable:
        return Unavailable(f"registry {self._registry.host}: blob {_digest.short_id(self._digest)} "
                           f"interrupted at offset {self.offset}: {why}")

    def close(self) -> None:
        if self._resp is not None:
            resp, self._resp = self._resp, None
            if self._remaining == 0:
                resp.read(1)  # reach EOF so the connection goes back to the pool
            resp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Registry:
    """The distribution API of one registry host ("127.0.0.1:5000", "registry-1.docker.io")."""

    def __init__(self, domain: str, auth: AuthConfig | None = None,
                 config: RegistryConfig | None = None):
        domain = _reference.registry_host(domain)
        if not domain or "/" in domain or split_host(domain)[0] == "":
            raise InvalidArgument(f"invalid registry host {domain!r}")
        self.host = domain
        self.auth = auth or AuthConfig()
        self.config = config or RegistryConfig()
        self._transport = Transport(domain, self.config)
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._challenge: _challenge.Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._refresh_token = self.auth.identitytoken

    def close(self) -> None:
        self._transport.close()

    # --- auth -------------------------------------------------------------------------------

    def _authorization(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization value for a request needing `scopes`, from what we know so far."""
        if self.auth.registrytoken:
            return f"Bearer {self.auth.registrytoken}"
        with self._lock:
            chal = self._challenge
        if chal is None:
            return None
        if chal.scheme == "basic":
            if self.auth.username or self.auth.password:
                raw = f"{self.auth.username}:{self.auth.password}".encode()
                return "Basic " + base64.b64encode(raw).decode()
            return None
        return f"Bearer {self._token(chal, scopes)}"

    def _learn(self, resp: Response) -> bool:
        """Remember a 401's challenge; True if it is one we can answer (with something new)."""
        try:
            challenges = _challenge.parse(resp.header("WWW-Authenticate"))
        except InvalidArgument as e:
            raise Unauthenticated(f"registry {self.host}: {e}") from None
        chosen = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")),
                      None)
        if chosen is None:
            chosen = next((c for c in challenges if c.scheme == "basic"), None)
        if chosen is None or self.auth.registrytoken:
            return False
        with self._lock:
            changed = self._challenge != chosen
            self._challenge = chosen
        if chosen.scheme == "basic":
            return changed and bool(self.auth.username or self.auth.password)
        return True

    def _token(self, chal: _challenge.Challenge, scopes: tuple[str, ...]) -> str:
        key = " ".join(sorted(scopes))
        with self._fetch_lock:  # one fetch at a time: parallel pulls share the first token
            now = time.monotonic()
            cached = self._tokens.get(key)
            if cached and cached[1] > now:
                return cached[0]
            token, lifetime = self._fetch_token(chal, scopes)
            if lifetime > _TOKEN_MARGIN:  # a token about to expire is used once, not cached
                self._tokens[key] = (token, now + lifetime - _TOKEN_MARGIN)
            return token

    def _fetch_token(self, chal: _challenge.Challenge, scopes: tuple[str, ...]) -> tuple[str, int]:
        realm = chal.params["realm"]
        service = chal.params.get("service", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Unauthenticated(f"registry {self.host}: invalid token realm {realm[:200]!r}")
        # The realm is another host: its own transport, same security rules.
        transport = self._transport if parts.netloc == self.host else Transport(parts.netloc,
                                                                                self.config)
        try:
            if self._refresh_token:
                form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token,
                        "service": service, "client_id": "dockyard", "scope": " ".join(scopes)}
                resp = transport.send(
                    "POST", realm, body=Body(urllib.parse.urlencode(form).encode()),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    limit=_TOKEN_BODY_MAX, retry=True)
            else:
                query = [("service", service)] if service else []
                query += [("scope", s) for s in scopes]
                headers = {}
                if self.auth.username or self.auth.password:
                    raw = f"{self.auth.username}:{self.auth.password}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
                sep = "&" if parts.query else "?"
                url = realm + (sep + urllib.parse.urlencode(query) if query else "")
                resp = transport.send("GET", url, headers=headers, limit=_TOKEN_BODY_MAX)
        finally:
            if transport is not self._transport:
                transport.close()
        if resp.status in (401, 403):
            raise Unauthenticated(f"registry {self.host}: unauthorized: "
                                  f"{_token_error(resp) or 'token server refused the credentials'}")
        if resp.status != 200:
            raise Unavailable(f"registry {self.host}: token server answered "
                              f"{resp.status} {resp.reason}")
        try:
            answer = json.loads(resp.data)
            token = answer.get("token") or answer.get("access_token")
            lifetime = answer.get("expires_in") or _DEFAULT_TOKEN_LIFETIME
            if not isinstance(token, str) or not token or not isinstance(lifetime, int):
                raise ValueError("no token")
        except (ValueError, AttributeError):
            raise Unauthenticated(f"registry {self.host}: token server sent no token") from None
        refresh = answer.get("refresh_token")
        if isinstance(refresh, str) and refresh and self._refresh_token:
            self._refresh_token = refresh
        return token, lifetime

    # --- requests ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, scopes: tuple[str, ...], *,
                 headers: dict | None = None, body: Body | None = None, stream: bool = False,
                 limit: int = _ERROR_BODY_MAX, retry: bool | None = None) -> Response:
        """Send with what auth we have; on 401 learn the challenge and try once more."""
        for attempt in range(2):
            auth = self._authorization(scopes)
            resp = self._transport.send(method, path, headers=headers, body=body,
                                        auth_header=auth, stream=stream, limit=limit, retry=retry)
            if resp.status != 401:
                return resp
            if attempt == 0 and auth and auth.startswith("Bearer ") and not self.auth.registrytoken:
                with self._fetch_lock:  # refused: the registry may have revoked it early
                    self._tokens.pop(" ".join(sorted(scopes)), None)
            if attempt == 0 and self._learn(resp):
                if stream:
                    resp.close()
                continue
            if stream:
                _read_error_body(resp)
            return resp
        raise AssertionError("unreachable")

    def _fail(self, resp: Response, what: str, not_found: str | None = None) -> None:
        """Raise the error a non-success answer means."""
        message = _error_message(resp)
        if resp.status == 401:
            with self._lock:
                chal = self._challenge
            if not (self.auth or chal is not None and chal.scheme == "bearer"):
                raise Unauthenticated(f"registry {self.host}: {what}: authentication required")
            raise Unauthenticated(f"registry {self.host}: {what}: unauthorized: {message}")
        if resp.status == 403:
            raise Unauthenticated(f"registry {self.host}: {what}: denied: {message}")
        if resp.status == 404:
            raise NotFound(not_found or f"registry {self.host}: {what}: not found: {message}")
        if resp.status == 405:
            raise Unsupported(f"registry {self.host}: {what}: not allowed: {message}")
        if resp.status == 409:
            raise Conflict(f"registry {self.host}: {what}: {message}")
        if resp.status in (400, 411, 413, 414, 415, 416, 422):
            raise InvalidArgument(f"registry {self.host}: {what}: {message}")
        if resp.status == 429 or resp.status >= 500:
            raise Unavailable(f"registry {self.host}: {what}: {message}")
        raise SystemFailure(f"registry {self.host}: {what}: unexpected answer {message}")

    def ping(self) -> None:
        """GET /v2/: reachable and speaks the API; with credentials, they are accepted."""
        resp = self._request("GET", "/v2/", ())
        if resp.status == 200:
            return
        if resp.status == 401 and not self.auth:
            return  # reachable; it wants credentials we do not have (anonymous pulls may work)
        if resp.status == 404:
            raise Unsupported(f"registry {self.host} does not speak the registry API v2")
        self._fail(resp, "ping")

    # --- manifests --------------------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str) -> Fetched:
        _check_repo(repo)
        _check_ref(ref)
        resp = self._request("GET", f"/v2/{repo}/manifests/{ref}", (_pull(repo),),
                             headers={"Accept": ", ".join(_image.MANIFEST_ACCEPT)},
                             limit=_image.MAX_MANIFEST_SIZE, stream=True)
        if resp.status != 200:
            _read_error_body(resp)
            self._fail(resp, f"manifest {repo}:{ref}",
                       not_found=f"manifest unknown: {repo}{'@' if ':' in ref else ':'}{ref}")
        length = resp.header("Content-Length")
        if length.isdigit() and int(length) > _image.MAX_MANIFEST_SIZE:
            resp.close()
            raise InvalidArgument(f"manifest {repo}:{ref} is {length} bytes: larger than the "
                                  f"{_image.MAX_MANIFEST_SIZE} bytes allowed")
        data = self._read_body(resp, _image.MAX_MANIFEST_SIZE, f"manifest {repo}:{ref}")
        media_type = _bare_type(resp.header("Content-Type"))
        if media_type not in _image.INDEX_TYPES | _image.MANIFEST_TYPES:
            media_type = _body_media_type(data) or media_type
        computed = _digest.sha256(data)
        if ":" in ref:
            hasher = _digest.Hasher(ref)
            hasher.update(data)
            if hasher.digest() != ref:
                raise InvalidArgument(f"manifest {repo}@{ref} digest mismatch: the registry sent "
                                      f"content with digest {hasher.digest()}")
            computed = ref
        header = resp.header("Docker-Content-Digest")
        if header:
            try:
                hasher = _digest.Hasher(header)
            except InvalidArgument:
                raise InvalidArgument(f"manifest {repo}:{ref}: registry sent an invalid "
                                      f"Docker-Content-Digest {header[:100]!r}") from None
            hasher.update(data)
            if hasher.digest() != header:
                raise InvalidArgument(f"manifest {repo}:{ref} digest mismatch: registry says "
                                      f"{header}, content is {hasher.digest()}")
        return Fetched(data, media_type, computed)

    def head_manifest(self, repo: str, ref: str) -> _image.Descriptor | None:
        """The descriptor a tag or digest resolves to, or None if unknown (404)."""
        _check_repo(repo)
        _check_ref(ref)
        resp = self._request("HEAD", f"/v2/{repo}/manifests/{ref}", (_pull(repo),),
                             headers={"Accept": ", ".join(_image.MANIFEST_ACCEPT)})
        if resp.status == 404:
            return None
        if resp.status != 200:
            self._fail(resp, f"manifest {repo}:{ref}")
        digest = resp.header("Docker-Content-Digest")
        size = resp.header("Content-Length")
        media_type = _bare_type(resp.header("Content-Type"))
        if (not digest or not size.isdigit() or media_type not in
                _image.INDEX_TYPES | _image.MANIFEST_TYPES):
            # Not every registry sends these on HEAD: fall back to fetching it.
            try:
                fetched = self.get_manifest(repo, ref)
            except NotFound:
                return None
            return _image.Descriptor(fetched.media_type, fetched.digest, len(fetched.data))
        try:
            _digest.validate(digest)
        except InvalidArgument:
            raise InvalidArgument(f"manifest {repo}:{ref}: registry sent an invalid "
                                  f"Docker-Content-Digest {digest[:100]!r}") from None
        if ":" in ref and digest != ref:
            raise InvalidArgument(f"manifest {repo}@{ref} digest mismatch: registry says {digest}")
        return _image.Descriptor(media_type, digest, int(size))

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or its digest; returns its digest."""
        _check_repo(repo)
        _check_ref(ref)
        if len(data) > _image.MAX_MANIFEST_SIZE:
            raise InvalidArgument(f"manifest of {len(data)} bytes is larger than the "
                                  f"{_image.MAX_MANIFEST_SIZE} bytes registries accept")
        digest = _digest.sha256(data)
        if ":" in ref:
            hasher = _digest.Hasher(ref)
            hasher.update(data)
            if hasher.digest() != ref:
                raise InvalidArgument(f"manifest digest mismatch: pushing content "
                                      f"{hasher.digest()} as {ref}")
            digest = ref
        resp = self._request("PUT", f"/v2/{repo}/manifests/{ref}", (_push(repo),),
                             headers={"Content-Type": media_type}, body=Body(data), retry=True)
        if resp.status not in (200, 201, 202):
            self._fail(resp, f"push manifest {repo}:{ref}")
        header = resp.header("Docker-Content-Digest")
        if header and ":" not in ref and header.startswith("sha256:") and header != digest:
            raise InvalidArgument(f"push manifest {repo}:{ref}: registry stored {header}, "
                                  f"we sent {digest}")
        return digest

    # --- blobs ------------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        _check_repo(repo)
        _digest.validate(digest)
        resp = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", (_pull(repo),))
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        self._fail(resp, f"blob {digest}")
        return False

    def open_blob(self, repo: str, digest: str, offset: int = 0) -> BlobStream:
        _check_repo(repo)
        _digest.validate(digest)
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgument(f"invalid blob offset {offset!r}")
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._request("GET", f"/v2/{repo}/blobs/{digest}", (_pull(repo),),
                             headers=headers, stream=True)
        what = f"blob {repo}@{digest}"
        if resp.status not in (200, 206):
            _read_error_body(resp)
            if resp.status == 416:
                raise InvalidArgument(f"{what}: offset {offset} is past its end")
            self._fail(resp, what, not_found=f"blob unknown: {repo}@{digest}")
        length = resp.header("Content-Length")
        remaining = int(length) if length.isdigit() else None
        if resp.status == 206:
            match = _CONTENT_RANGE.match(resp.header("Content-Range").strip())
            if not match or int(match.group(1)) != offset:
                resp.close()
                raise InvalidArgument(f"{what}: registry answered a range request with "
                                      f"Content-Range {resp.header('Content-Range')[:80]!r}")
            size = int(match.group(3)) if match.group(3) != "*" else None
            if remaining is None:
                remaining = int(match.group(2)) + 1 - offset
            return BlobStream(self, resp, digest, offset, size, remaining)
        stream = BlobStream(self, resp, digest, 0, remaining, remaining)
        skip = offset  # a registry that ignores Range: discard what we already have
        while skip:
            chunk = stream.read(min(skip, _READ_BLOCK))
            if not chunk:
                stream.close()
                raise InvalidArgument(f"{what}: offset {offset} is past its end")
            skip -= len(chunk)
        return stream

    def fetch_blob(self, repo: str, digest: str, sink: Callable[[bytes], None], offset: int = 0,
                   size: int | None = None) -> int:
        """Copy the blob from `offset` into `sink`, reopening at the current offset after a
        drop (up to `retries` times). Returns the offset reached (the blob's size)."""
        drops = 0
        delay = self.config.retry_backoff
        while True:
            try:
                with self.open_blob(repo, digest, offset) as stream:
                    while True:
                        chunk = stream.read(_READ_BLOCK)
                        if not chunk:
                            break
                        if size is not None and offset + len(chunk) > size:
                            raise InvalidArgument(f"blob {repo}@{digest} is larger than the "
                                                  f"{size} bytes its descriptor says")
                        sink(chunk)
                        offset += len(chunk)
                if size is not None and offset != size:
                    raise InvalidArgument(f"blob {repo}@{digest} is {offset} bytes, its "
                                          f"descriptor says {size}")
                return offset
            except Unavailable:
                drops += 1
                if drops > self.config.retries:
                    raise
                time.sleep(delay)
                delay *= 2

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount (spec.md "Mounting a blob from another repository"). True if
        mounted (201). On 202 the registry opened an upload session instead: it is cancelled
        (DELETE) and False returned, so the caller uploads as usual."""
        _check_repo(repo)
        _check_repo(from_repo)
        _digest.validate(digest)
        query = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/?{query}",
                             (_push(repo), _pull(from_repo)), retry=True)
        if resp.status == 201:
            return True
        if resp.status == 202:
            self._cancel_upload(repo, resp)
            return False
        self._fail(resp, f"mount {digest} from {from_repo}")
        return False

    def _cancel_upload(self, repo: str, resp: Response) -> None:
        location = resp.header("Location")
        if location:
            try:
                self._request("DELETE", location, (_push(repo),), retry=False)
            except (Unavailable, SystemFailure):
                pass  # the registry purges abandoned sessions itself

    def upload_blob(self, repo: str, digest: str, size: int, read_at: Callable[[int, int], bytes],
                    chunk_size: int | None = None) -> None:
        """Upload `size` bytes (read_at(offset, n) returns them) as blob `digest`: monolithic
        (POST, then PUT with the body) or, with `chunk_size`, chunked PATCHes. A monolithic
        upload that fails on the network is restarted; a chunked one resumes from what the
        registry says it has (GET on the session, spec.md "Resuming an upload")."""
        _check_repo(repo)
        _digest.validate(digest)
        if not isinstance(size, int) or size < 0:
            raise InvalidArgument(f"invalid blob size {size!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
            raise InvalidArgument(f"invalid chunk size {chunk_size!r}")
        failures = 0
        while True:
            try:
                if chunk_size is None:
                    return self._upload_monolithic(repo, digest, size, read_at)
                return self._upload_chunked(repo, digest, size, read_at, chunk_size)
            except (_Retry, Unavailable) as e:
                # A drop, a 5xx or a lost session: start a fresh upload session.
                failures += 1
                if failures > self.config.retries:
                    if isinstance(e, Unavailable):
                        raise
                    raise Unavailable(f"registry {self.host}: upload of blob "
                                      f"{_digest.short_id(digest)} failed: {e}") from None
                time.sleep(self.config.retry_backoff * (2 ** (failures - 1)))

    def _start_upload(self, repo: str, digest: str) -> Response:
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/", (_push(repo),), retry=True)
        if resp.status != 202 or not resp.header("Location"):
            self._fail(resp, f"start upload of blob {_digest.short_id(digest)}")
        return resp

    def _upload_monolithic(self, repo, digest, size, read_at) -> None:
        session = self._start_upload(repo, digest)
        url = _with_query(session.header("Location"), digest=digest)
        resp = self._request("PUT", url, (_push(repo),),
                             headers={"Content-Type": "application/octet-stream"},
                             body=Body(size=size, read_at=read_at), retry=False)
        self._finish_upload(resp, repo, digest)

    def _upload_chunked(self, repo, digest, size, read_at, chunk_size) -> None:
        session = self._start_upload(repo, digest)
        location = session.header("Location")
        min_len = session.header("OCI-Chunk-Min-Length")
        if min_len.isdigit():
            chunk_size = max(chunk_size, int(min_len))
        offset = 0
        resumes = 0
        while offset < size:
            n = min(chunk_size, size - offset)
            try:
                resp = self._request(
                    "PATCH", location, (_push(repo),),
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{offset + n - 1}"},
                    body=Body(size=n, read_at=read_at, offset=offset), retry=False)
                status = resp.status
            except Unavailable:
                status = None
            if status == 202:
                location = resp.header("Location") or location
                offset = _range_end(resp, offset + n)
                continue
            if status is not None and status != 416 and status < 500:
                self._fail(resp, f"upload of blob {_digest.short_id(digest)}")
            # 416, 5xx or a drop: ask the session how much it has, continue from there.
            resumes += 1
            if resumes > self.config.retries:
                raise _Retry("the registry kept rejecting chunks")
            location, offset = self._upload_status(repo, location, digest)
        resp = self._request("PUT", _with_query(location, digest=digest), (_push(repo),),
                             retry=False)
        self._finish_upload(resp, repo, digest)

    def _upload_status(self, repo: str, location: str, digest: str) -> tuple[str, int]:
        resp = self._request("GET", location, (_push(repo),))
        if resp.status != 204:
            if resp.status == 404:
                raise _Retry("the upload session is gone")
            self._fail(resp, f"upload of blob {_digest.short_id(digest)}")
        return resp.header("Location") or location, _range_end(resp, 0)

    def _finish_upload(self, resp: Response, repo: str, digest: str) -> None:
        if resp.status not in (201, 204):
            self._fail(resp, f"upload of blob {_digest.short_id(digest)}")
        stored = resp.header("Docker-Content-Digest")
        if stored and stored != digest:
            raise InvalidArgument(f"upload of blob {digest}: registry stored {stored}")

    # --- helpers ----------------------------------------------------------------------------

    def _read_body(self, resp: Response, limit: int, what: str) -> bytes:
        try:
            return resp.read_all(limit)
        except TooLarge:
            raise InvalidArgument(f"{what} is larger than the {limit} bytes allowed") from None
        except (OSError, http.client.HTTPException) as e:
            resp.close()
            raise Unavailable(f"registry {self.host}: {what}: connection dropped: {e}") from None


class _Retry(Exception):
    pass


def _pull(repo: str) -> str:
    return _challenge.scope_for(repo, "pull")


def _push(repo: str) -> str:
    return _challenge.scope_for(repo, "pull,push")


def _read_error_body(resp: Response) -> None:
    if resp.consumed:
        return
    try:
        resp.data = resp.read_all(_ERROR_BODY_MAX)
    except (TooLarge, OSError, http.client.HTTPException):
        resp.close()


def _token_error(resp: Response) -> str:
    try:
        body = json.loads(resp.data)
    except ValueError:
        return ""
    if isinstance(body, dict):
        if body.get("errors"):
            return _error_message(resp)
        for key in ("details", "error_description", "error", "message"):
            if isinstance(body.get(key), str):
                return body[key][:300]
    return ""


def _body_media_type(data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return ""
    value = body.get("mediaType") if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


def _with_query(location: str, **params) -> str:
    """Add parameters to an upload Location, keeping the ones it carries (_state, …)."""
    parts = urllib.parse.urlsplit(location)
    query = parts.query + ("&" if parts.query else "") + urllib.parse.urlencode(params)
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _range_end(resp: Response, default: int) -> int:
    """The next offset from a `Range: 0-<last>` header (spec.md "Upload status": the last byte
    is inclusive). distribution writes "0-0" for an empty session too, so "0-0" reads as 0 (a
    one-byte partial chunk would then end in a digest mismatch at the PUT, never silent)."""
    match = _RANGE.match(resp.header("Range").strip())
    if not match:
        return default
    last = int(match.group(2))
    return 0 if last == 0 else last + 1
