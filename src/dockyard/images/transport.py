"""The HTTP layer under the registry client: which scheme a registry gets, TLS from
/etc/docker/certs.d, a small keep-alive connection pool, redirects and retries.

Security rules (Docker's, docs "Test an insecure registry" and registry/config.go):
- HTTPS with verification for every registry, CAs from the system plus
  `<certs_dir>/<host[:port]>/*.crt`, a client certificate from `client.cert` + `client.key`.
- Plain HTTP only for loopback registries (localhost, 127.0.0.0/8, ::1 — Docker treats these as
  insecure) and those listed in RegistryConfig.insecure (host[:port] or CIDR). As Docker does
  (registry/service_v2.go: an https endpoint with InsecureSkipVerify, then an http one), such a
  registry is tried with HTTPS first, unverified but with certs.d's client certificate, and
  spoken to in plain HTTP when it does not speak TLS. The probe is one TLS handshake (a
  plain server answers a ClientHello with an HTTP 400 at once), remembered by the Transport
  (one per registry host and operation); a refused connection is not remembered.
  RegistryConfig.insecure_loopback=False drops the loopback exception: loopback registries are
  then held to the rules of any other host (verified HTTPS unless listed in `insecure`).
- TLS failures are not retried and read as one line: a certificate we do not trust (or made
  for another name) and any other handshake failure → SystemFailure; the registry refusing our
  client certificate (or wanting one) → Unauthenticated.
- A redirect never downgrades to HTTP towards a host that may not use it, and Authorization is
  never sent to a host other than the one the credentials were meant for.

stdlib only (http.client + ssl); every call is safe from many threads.
"""

from __future__ import annotations

import glob
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

from dockyard import __version__
from dockyard.errors import InvalidArgument, SystemFailure, Unauthenticated, Unavailable

MAX_REDIRECTS = 5
_MAX_IDLE_PER_HOST = 8
_MAX_RETRY_AFTER = 30.0
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass
class RegistryConfig:
    """How registries are reached. `insecure`: host[:port] or CIDR entries allowed plain HTTP or
    unverified TLS (loopback is too, unless `insecure_loopback` is False: then a loopback
    registry needs verified HTTPS, or a place in `insecure`). `retry_backoff`: first delay
    between retries, doubled each time. (Both additions to the plan's fields.)"""
    insecure: tuple[str, ...] = ()
    certs_dir: str = "/etc/docker/certs.d"
    timeout: float = 30
    retries: int = 3
    user_agent: str = f"dockyard/{__version__}"
    retry_backoff: float = 0.5
    insecure_loopback: bool = True


def split_host(host: str) -> tuple[str, int | None]:
    """("name", port) of "name[:port]" / "[v6]:port"."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


def _addresses(name: str) -> list[ipaddress._BaseAddress]:
    try:
        return [ipaddress.ip_address(name)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    out = []
    for info in infos:
        try:
            out.append(ipaddress.ip_address(info[4][0].split("%")[0]))
        except ValueError:
            pass
    return out


def is_loopback(host: str) -> bool:
    name, _ = split_host(host)
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # other names are not resolved for this: explicit is safer


def is_insecure(host: str, config: RegistryConfig) -> bool:
    """May `host` use plain HTTP / unverified TLS? (Docker's isSecureIndex, inverted.)"""
    if config.insecure_loopback and is_loopback(host):
        return True
    name, _ = split_host(host)
    networks = []
    for entry in config.insecure:
        entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
        if "/" in entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise InvalidArgument(f"invalid insecure registry entry {entry!r}") from None
        elif entry.lower() in (host.lower(), name.lower()):
            return True
    if networks:
        return any(addr in net for addr in _addresses(name) for net in networks)
    return False


def check_scheme(scheme: str, host: str, config: RegistryConfig) -> None:
    """Refuse plain HTTP (or anything but http/https) towards a registry that must use TLS."""
    if scheme == "https":
        return
    if scheme != "http":
        raise InvalidArgument(f"registry {host}: unsupported URL scheme {scheme!r}")
    if not is_insecure(host, config):
        raise InvalidArgument(
            f"registry {host}: refusing plain HTTP to a registry that is neither loopback nor "
            "configured as insecure")


def tls_context(host: str, config: RegistryConfig, *, verify: bool = True) -> ssl.SSLContext:
    """System CAs plus certs.d/<host>/*.crt; client.cert/client.key when present."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    directory = os.path.join(config.certs_dir, host)
    if os.path.isdir(directory):
        try:
            for ca in sorted(glob.glob(os.path.join(directory, "*.crt"))):
                ctx.load_verify_locations(cafile=ca)
            cert = os.path.join(directory, "client.cert")
            key = os.path.join(directory, "client.key")
            if os.path.exists(cert) or os.path.exists(key):
                if not (os.path.exists(cert) and os.path.exists(key)):
                    raise InvalidArgument(f"{directory}: client.cert and client.key go together")
                ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as e:
            raise InvalidArgument(f"{directory}: cannot load certificates: {e}") from None
    return ctx


class Body:
    """A request body that can be sent again (retries, redirects): bytes, or `size` bytes
    produced by `read_at(offset, n)` from `offset`."""

    def __init__(self, data: bytes | None = None, *, size: int = 0, read_at=None,
                 offset: int = 0, block: int = 1 << 20):
        self.data, self.read_at, self.offset, self.block = data, read_at, offset, block
        self.size = len(data) if data is not None else size

    def chunks(self):
        if self.data is not None:
            yield self.data
            return
        pos, end = self.offset, self.offset + self.size
        while pos < end:
            want = min(self.block, end - pos)
            chunk = self.read_at(pos, want)
            if len(chunk) != want:
                raise SystemFailure(f"short read of upload source at offset {pos}: "
                                    f"wanted {want} bytes, got {len(chunk)}")
            yield chunk
            pos += want


class _SourceError(Exception):
    """An error from the body source, not the network: never retried."""


class Response:
    """A response whose body is either read (`data`) or left to stream (`read`)."""

    def __init__(self, transport: "Transport", key, conn, resp: http.client.HTTPResponse,
                 url: str):
        self._transport, self._key, self._conn, self._resp = transport, key, conn, resp
        self.status, self.reason, self.url = resp.status, resp.reason, url
        self.headers = resp.headers
        self.data = b""

    @property
    def consumed(self) -> bool:
        """The body has been read to its end or dropped: nothing more to read."""
        return self._resp is None

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    def read(self, n: int) -> bytes:
        """Stream the body; raises OSError/http.client errors as they come (caller maps)."""
        if self._resp is None:
            return b""
        chunk = self._resp.read(n)
        if not chunk or self._resp.isclosed():
            self._finish()
        return chunk

    def read_all(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes (more → the connection is dropped, None)."""
        out = bytearray()
        while True:
            chunk = self.read(min(65536, limit + 1 - len(out)))
            if not chunk:
                break
            out += chunk
            if len(out) > limit:
                self.close()
                raise TooLarge()
        return bytes(out)

    def _finish(self) -> None:
        resp, self._resp = self._resp, None
        if resp is not None and self._conn is not None:
            conn, self._conn = self._conn, None
            if resp.isclosed() and not resp.will_close:
                self._transport._release(self._key, conn)
            else:
                conn.close()

    def close(self) -> None:
        """Drop the connection unless the body was consumed (it cannot be reused mid-body)."""
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class TooLarge(Exception):
    """A body longer than the caller's limit (the connection has been dropped)."""


class Transport:
    """Connections to one registry host (and whatever it redirects to)."""

    def __init__(self, host: str, config: RegistryConfig):
        self.host = host
        self.config = config
        self._lock = threading.Lock()
        self._idle: dict[tuple, list] = {}
        self._contexts: dict[tuple, ssl.SSLContext] = {}
        self._scheme: str | None = None if is_insecure(host, config) else "https"

    # --- scheme and connections -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.scheme()}://{self.host}"

    def scheme(self) -> str:
        """https; for a loopback or insecure registry, https if it speaks TLS else http."""
        if self._scheme is None:
            conn = self._new_conn(("https", self.host))
            try:
                conn.connect()
                chosen = "https"
            except ConnectionRefusedError:
                return "http"  # nothing listening (yet): the request fails; ask again next time
            except OSError:  # ssl.SSLError included: it answered, not in TLS
                chosen = "http"
            finally:
                conn.close()
            self._scheme = chosen
        return self._scheme

    def _context(self, host: str) -> ssl.SSLContext:
        verify = not is_insecure(host, self.config)
        key = (host, verify)
        with self._lock:
            ctx = self._contexts.get(key)
        if ctx is None:
            ctx = tls_context(host, self.config, verify=verify)
            with self._lock:
                self._contexts[key] = ctx
        return ctx

    def _new_conn(self, key):
        scheme, host = key
        name, port = split_host(host)
        if scheme == "https":
            return http.client.HTTPSConnection(name, port, timeout=self.config.timeout,
                                               context=self._context(host))
        return http.client.HTTPConnection(name, port, timeout=self.config.timeout)

    def _acquire(self, key):
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        return self._new_conn(key), False

    def _release(self, key, conn) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < _MAX_IDLE_PER_HOST:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    # --- requests ---------------------------------------------------------------------------

    def url_for(self, path_or_url: str) -> str:
        """Absolute URL of a registry path, or of a (possibly relative) Location header."""
        if urllib.parse.urlsplit(path_or_url).scheme:
            return path_or_url
        return urllib.parse.urljoin(self.base_url + "/", path_or_url)

    def _send_once(self, method: str, url: str, headers: dict, body: Body | None) -> Response:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc
        check_scheme(parts.scheme, host, self.config)
        key = (parts.scheme, host)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = {"User-Agent": self.config.user_agent, **headers}
        if body is not None:
            headers["Content-Length"] = str(body.size)
        elif method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = "0"
        for attempt in range(2):
            conn, reused = self._acquire(key)
            try:
                conn.putrequest(method, target, skip_accept_encoding=True)
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.endheaders()
                if body is not None:
                    try:
                        for chunk in body.chunks():
                            conn.send(chunk)
                    except SystemFailure as e:
                        raise _SourceError(e) from None
                resp = conn.getresponse()
            except _SourceError as e:
                conn.close()
                raise e.args[0] from None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused and attempt == 0:
                    continue  # a keep-alive connection the server had closed: try a fresh one
                raise
            except BaseException:
                conn.close()
                raise
            response = Response(self, key, conn, resp, url)
            if method == "HEAD" or resp.status in (204, 304):
                response.read_all(0)
            return response
        raise AssertionError("unreachable")

    def send(self, method: str, path_or_url: str, *, headers: dict | None = None,
             body: Body | None = None, auth_header=None, stream: bool = False,
             limit: int = 1 << 20, retry: bool | None = None) -> Response:
        """One request with redirects (Authorization only to the registry's own host) and
        retries (connection errors, 5xx, 429) when `retry` (default: GET/HEAD). Unless `stream`,
        the body is read into `.data` (at most `limit` bytes: more is a SystemFailure)."""
        if retry is None:
            retry = method in ("GET", "HEAD")
        attempts = 1 + (self.config.retries if retry else 0)
        delay = self.config.retry_backoff
        last = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(delay)
                delay *= 2
            try:
                resp = self._send_redirects(method, self.url_for(path_or_url), headers or {},
                                            body, auth_header)
            except ssl.SSLCertVerificationError as e:
                raise SystemFailure(f"registry {self.host}: TLS certificate not trusted: "
                                    f"{e.verify_message or _ssl_reason(e)} (a CA for it goes in "
                                    f"{os.path.join(self.config.certs_dir, self.host)}/ca.crt)"
                                    ) from None
            except ssl.SSLError as e:
                if not isinstance(e, _SSL_TRANSIENT):
                    raise _tls_failure(self.host, self.config, e) from None
                last = _describe(e)
                continue
            except (OSError, http.client.HTTPException) as e:
                last = _describe(e)
                continue
            if resp.status in (429, 500, 502, 503, 504) and attempt + 1 < attempts:
                last = f"{resp.status} {resp.reason}"
                retry_after = resp.header("Retry-After")
                _drain(resp)
                if retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), _MAX_RETRY_AFTER))
                continue
            if not stream and method != "HEAD":
                try:
                    resp.data = resp.read_all(limit)
                except TooLarge:
                    raise SystemFailure(f"registry {self.host}: response to {method} "
                                        f"{urllib.parse.urlsplit(resp.url).path} larger than "
                                        f"{limit} bytes") from None
                except (OSError, http.client.HTTPException) as e:
                    resp.close()
                    last = _describe(e)
                    if attempt + 1 < attempts:
                        continue
                    break
            return resp
        raise Unavailable(f"registry {self.host}: {last}")

    def _send_redirects(self, method, url, headers, body, auth_header) -> Response:
        origin = urllib.parse.urlsplit(url)[:2]
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            # Credentials belong to the registry: never to a host a redirect points at (S3, CDN).
            if auth_header and urllib.parse.urlsplit(url)[:2] == origin:
                sent["Authorization"] = auth_header() if callable(auth_header) else auth_header
            resp = self._send_once(method, url, sent, body)
            if resp.status not in _REDIRECTS or not resp.header("Location"):
                return resp
            _drain(resp)
            url = urllib.parse.urljoin(url, resp.header("Location"))
            if resp.status == 303 or resp.status in (301, 302) and method == "POST":
                method, body = "GET", None
        raise Unavailable(f"registry {self.host}: more than {MAX_REDIRECTS} redirects")


# SSLErrors that are a connection going away (retried as such), not a TLS disagreement.
_SSL_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError,
                  ssl.SSLWantReadError, ssl.SSLWantWriteError)
# TLS alerts a server sends when it wants a client certificate, or refuses ours.
_CLIENT_CERT_REFUSED = {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
                        "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                        "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED",
                        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED"}
# What OpenSSL says when the peer answers a ClientHello with something that is not TLS.
_NOT_TLS = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
            "UNKNOWN_PROTOCOL"}


def _ssl_reason(e: ssl.SSLError) -> str:
    """OpenSSL's words without the "[SSL: X]" prefix and "(_ssl.c:N)" suffix."""
    text = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], str) else str(e)
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    if text.endswith(")") and " (_ssl.c:" in text:
        text = text.rsplit(" (_ssl.c:", 1)[0]
    return text


def _tls_failure(host: str, config: RegistryConfig, e: ssl.SSLError):
    reason = _ssl_reason(e)
    directory = os.path.join(config.certs_dir, host)
    if e.reason in _CLIENT_CERT_REFUSED:
        return Unauthenticated(f"registry {host}: TLS client certificate refused ({reason}); "
                               f"the registry's client certificate and key go in "
                               f"{directory}/client.cert and client.key")
    if e.reason in _NOT_TLS:
        return SystemFailure(f"registry {host}: TLS handshake failed ({reason}): it may speak "
                             "plain HTTP; only loopback and insecure registries may")
    return SystemFailure(f"registry {host}: TLS handshake failed: {reason}")


def _drain(resp: Response) -> None:
    try:
        resp.read_all(64 << 10)
    except (TooLarge, OSError, http.client.HTTPException):
        resp.close()


def _describe(e: BaseException) -> str:
    if isinstance(e, http.client.RemoteDisconnected):
        return "connection closed by the registry"
    if isinstance(e, http.client.IncompleteRead):
        return "connection dropped mid-response"
    if isinstance(e, socket.timeout):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower() if e.strerror[:1].isupper() else e.strerror
    return str(e) or type(e).__name__
