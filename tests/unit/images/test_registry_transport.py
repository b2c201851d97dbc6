"""Which registries may be spoken to over plain HTTP, and redirect/URL handling (no network but
a loopback listener that answers in plain HTTP)."""

import socket
import threading

import pytest

from dockyard.errors import InvalidArgument
from dockyard.images.registry import Registry
from dockyard.images.transport import (RegistryConfig, Transport, check_scheme, is_insecure,
                                       is_loopback, split_host)


@pytest.mark.parametrize("host,loop", [
    ("127.0.0.1:5000", True), ("127.3.4.5", True), ("localhost:5000", True), ("[::1]:5000", True),
    ("LOCALHOST", True), ("10.0.0.1:5000", False), ("registry.example", False),
    ("localhost.example", False)])
def test_loopback(host, loop):
    assert is_loopback(host) is loop


def test_split_host():
    assert split_host("reg.example:5000") == ("reg.example", 5000)
    assert split_host("reg.example") == ("reg.example", None)
    assert split_host("[fd00::1]:443") == ("fd00::1", 443)


def test_insecure_entries():
    config = RegistryConfig(insecure=("reg.example:5000", "10.1.0.0/16", "http://plain.example"))
    assert is_insecure("reg.example:5000", config)
    assert not is_insecure("reg.example:5001", config)
    assert is_insecure("10.1.2.3:80", config)
    assert not is_insecure("10.2.0.1", config)
    assert is_insecure("plain.example", config)
    assert is_insecure("127.0.0.1:1234", RegistryConfig())
    with pytest.raises(InvalidArgument, match="insecure registry entry"):
        is_insecure("x.example", RegistryConfig(insecure=("300.0.0.0/8",)))


def test_plain_http_refused_for_secure_registry():
    config = RegistryConfig()
    with pytest.raises(InvalidArgument, match="refusing plain HTTP"):
        check_scheme("http", "registry.example", config)
    with pytest.raises(InvalidArgument, match="unsupported URL scheme"):
        check_scheme("ftp", "127.0.0.1", config)
    check_scheme("https", "registry.example", config)
    check_scheme("http", "127.0.0.1:5000", config)
    check_scheme("http", "registry.example", RegistryConfig(insecure=("registry.example",)))


def test_secure_registry_never_sends_plain_http():
    # A redirect (or a Location) to http:// on a secure host is refused before connecting.
    transport = Transport("registry.example", RegistryConfig())
    assert transport.base_url == "https://registry.example"
    with pytest.raises(InvalidArgument, match="refusing plain HTTP"):
        transport._send_once("GET", "http://registry.example/v2/", {}, None)
    with pytest.raises(InvalidArgument, match="refusing plain HTTP"):
        transport.send("GET", "http://cdn.example/blob", retry=True)


@pytest.fixture
def plain_http_host():
    """127.0.0.1:<port> answering every connection in plain HTTP, as a TLS-less registry does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_loopback_tries_tls_then_falls_back_to_http(plain_http_host):
    assert Transport("registry.example", RegistryConfig()).scheme() == "https"  # decided, no probe
    transport = Transport(plain_http_host, RegistryConfig())
    assert transport.base_url == f"http://{plain_http_host}"


def test_relative_location_keeps_query(plain_http_host):
    transport = Transport(plain_http_host, RegistryConfig())
    assert (transport.url_for("/v2/x/blobs/uploads/abc?_state=s%3D")
            == f"http://{plain_http_host}/v2/x/blobs/uploads/abc?_state=s%3D")
    assert transport.url_for("https://s3.example/b?sig=1") == "https://s3.example/b?sig=1"


def test_docker_hub_domain_maps_to_its_registry_host():
    assert Registry("docker.io").host == "registry-1.docker.io"
    with pytest.raises(InvalidArgument):
        Registry("bad/host")
