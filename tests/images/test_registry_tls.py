"""HTTPS to a real docker-registry (`http.tls`, optionally `clientcas` for mutual TLS) with
certificates made here (tests/fixtures/registry.py TestPKI): verification against a CA from a
certs.d directory, client certificates presented from it, an unknown CA or a missing client
certificate refused in one line, and an `insecure` registry tried over unverified HTTPS first.

Loopback registries are insecure by default (Docker's rule: HTTPS without verification, then plain
HTTP), so most tests set RegistryConfig.insecure_loopback=False to hold 127.0.0.1 to the rules of
any other host."""

import json
from contextlib import closing

import pytest

from dockyard.errors import InvalidArgument, SystemFailure, Unauthenticated
from dockyard.images.registry import Registry, RegistryConfig
from dockyard.images.transport import Transport, is_insecure
from tests.fixtures.registry import TestPKI, push_fixture_image, start_registry

REPO = "tls/busybox"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory, pki):
    """HTTPS, no client certificates asked for; busybox pushed as tls/busybox:latest."""
    reg = start_registry(tmp_path_factory.mktemp("registry-tls"), tls=pki.server_tls())
    try:
        reg.digest = push_fixture_image(reg.host, REPO, "latest")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def mtls_registry(tmp_path_factory, pki):
    """HTTPS demanding a client certificate signed by the PKI's client CA."""
    reg = start_registry(tmp_path_factory.mktemp("registry-mtls"),
                         tls=pki.server_tls(client_auth=True))
    try:
        certs = pki.certs_d(tmp_path_factory.mktemp("skopeo-certs"), reg.host, ca=False,
                            client=True)
        reg.digest = push_fixture_image(reg.host, REPO, "latest", cert_dir=certs)
        yield reg
    finally:
        reg.stop()


def config(certs_dir, **kw) -> RegistryConfig:
    return RegistryConfig(certs_dir=str(certs_dir), insecure_loopback=False, retry_backoff=0.01,
                          timeout=10, **kw)


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def pull_config_blob(reg: Registry, repo: str, ref: str) -> bytes:
    fetched = reg.get_manifest(repo, ref)
    config_digest = json.loads(fetched.data)["config"]["digest"]
    chunks = []
    reg.fetch_blob(repo, config_digest, chunks.append)
    return b"".join(chunks)


def test_insecure_loopback_knob():
    assert is_insecure("127.0.0.1:5000", RegistryConfig())
    assert not is_insecure("127.0.0.1:5000", RegistryConfig(insecure_loopback=False))
    assert not is_insecure("localhost:5000", RegistryConfig(insecure_loopback=False))
    assert is_insecure("127.0.0.1:5000", RegistryConfig(insecure_loopback=False,
                                                        insecure=("127.0.0.0/8",)))
    assert Transport("127.0.0.1:5000", RegistryConfig(insecure_loopback=False)).base_url == \
        "https://127.0.0.1:5000"


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_https_verified_with_ca_from_certs_d(tls_registry, pki, tmp_path, name):
    host = f"{name}:{tls_registry.host.rpartition(':')[2]}"
    pki.certs_d(tmp_path / "certs.d", host)
    with closing(Registry(host, config=config(tmp_path / "certs.d"))) as reg:
        assert reg._transport.base_url == f"https://{host}"
        assert reg.get_manifest(REPO, "latest").digest == tls_registry.digest
        assert json.loads(pull_config_blob(reg, REPO, "latest"))["rootfs"]["type"] == "layers"


def test_unknown_ca_is_refused_in_one_line(tls_registry, pki, tmp_path):
    host = tls_registry.host
    log_start = len(tls_registry.log())
    # Nothing for this host (a CA for another port does not count), then a CA that did not sign.
    pki.certs_d(tmp_path / "certs.d", "127.0.0.1:1")
    with closing(Registry(host, config=config(tmp_path / "certs.d"))) as reg:
        with pytest.raises(SystemFailure) as e:
            reg.ping()
    text = one_line(e)
    assert text.startswith(f"registry {host}: TLS certificate not trusted: ")
    assert f"{tmp_path / 'certs.d' / host}/ca.crt" in text
    other = tmp_path / "other.d" / host
    other.mkdir(parents=True)
    (other / "ca.crt").write_bytes(pki.stranger_ca.read_bytes())
    with closing(Registry(host, config=config(tmp_path / "other.d"))) as reg:
        with pytest.raises(SystemFailure, match="TLS certificate not trusted"):
            reg.get_manifest(REPO, "latest")
    # The access log shows no request of ours: nothing was sent over an untrusted connection.
    assert '"dockyard/' not in tls_registry.log()[log_start:]


def test_certificate_for_another_name_is_refused(tls_registry, tmp_path):
    # A CA that signed a certificate for 127.0.0.2 only; the registry's is not for that name.
    pki = TestPKI(tmp_path, names=(), addresses=("127.0.0.2",))
    reg2 = start_registry(tmp_path, tls=pki.server_tls())
    try:
        pki.certs_d(tmp_path / "certs.d", reg2.host)
        with closing(Registry(reg2.host, config=config(tmp_path / "certs.d"))) as reg:
            with pytest.raises(SystemFailure) as e:
                reg.ping()
        assert "TLS certificate not trusted" in one_line(e)
        assert "127.0.0.1" in str(e.value)
    finally:
        reg2.stop()


def test_client_certificate_from_certs_d(mtls_registry, pki, tmp_path):
    host = mtls_registry.host
    pki.certs_d(tmp_path / "with-client", host, client=True)
    with closing(Registry(host, config=config(tmp_path / "with-client"))) as reg:
        assert reg.get_manifest(REPO, "latest").digest == mtls_registry.digest
        assert pull_config_blob(reg, REPO, "latest")


def test_missing_client_certificate_is_refused_in_one_line(mtls_registry, pki, tmp_path):
    host = mtls_registry.host
    pki.certs_d(tmp_path / "ca-only", host)
    with closing(Registry(host, config=config(tmp_path / "ca-only"))) as reg:
        with pytest.raises(Unauthenticated) as e:
            reg.get_manifest(REPO, "latest")
    text = one_line(e)
    assert text.startswith(f"registry {host}: TLS client certificate refused (")
    assert f"{tmp_path / 'ca-only' / host}/client.cert" in text


def test_client_certificate_from_an_unknown_ca_is_refused(mtls_registry, pki, tmp_path):
    host = mtls_registry.host
    directory = pki.certs_d(tmp_path / "wrong-client", host)
    # The server's own certificate (signed by the server CA, not the client CA) as a client's.
    (directory / "client.cert").write_bytes(pki.server_cert.read_bytes())
    (directory / "client.key").write_bytes(pki.server_key.read_bytes())
    with closing(Registry(host, config=config(tmp_path / "wrong-client"))) as reg:
        with pytest.raises(Unauthenticated, match="TLS client certificate refused"):
            reg.ping()


def test_client_cert_without_key_is_invalid(mtls_registry, pki, tmp_path):
    directory = pki.certs_d(tmp_path / "half", mtls_registry.host)
    (directory / "client.cert").write_bytes(pki.client_cert.read_bytes())
    with closing(Registry(mtls_registry.host, config=config(tmp_path / "half"))) as reg:
        with pytest.raises(InvalidArgument, match="client.cert and client.key go together"):
            reg.ping()


def test_insecure_registry_tries_https_unverified_then_http(tls_registry, registry,
                                                            busybox_in_registry, tmp_path):
    empty = tmp_path / "no-certs"
    # TLS registry, no CA anywhere: insecure means HTTPS without verification.
    with closing(Registry(tls_registry.host, config=config(empty, insecure=(tls_registry.host,)))) as reg:
        assert reg._transport.base_url == f"https://{tls_registry.host}"
        assert reg.get_manifest(REPO, "latest").digest == tls_registry.digest
    # A plain-HTTP registry listed as insecure: HTTPS fails, HTTP is used.
    repo, digest = busybox_in_registry
    with closing(Registry(registry.host, config=config(empty, insecure=("127.0.0.0/8",)))) as reg:
        assert reg._transport.base_url == f"http://{registry.host}"
        assert reg.get_manifest(repo, "latest").digest == digest


def test_loopback_is_insecure_by_default_https_tried_first(tls_registry, mtls_registry, pki,
                                                          registry, busybox_in_registry, tmp_path):
    """Docker's rule for 127.0.0.0/8 and localhost: HTTPS without verification, else HTTP."""
    default = RegistryConfig(certs_dir=str(tmp_path / "certs.d"), retry_backoff=0.01, timeout=10)
    with closing(Registry(tls_registry.host, config=default)) as reg:
        assert reg._transport.base_url == f"https://{tls_registry.host}"
        assert reg.get_manifest(REPO, "latest").digest == tls_registry.digest
    # Unverified is not anonymous: the client certificate from certs.d is still presented.
    with closing(Registry(mtls_registry.host, config=default)) as reg:
        with pytest.raises(Unauthenticated, match="TLS client certificate refused"):
            reg.ping()
    pki.certs_d(tmp_path / "certs.d", mtls_registry.host, ca=False, client=True)
    with closing(Registry(mtls_registry.host, config=default)) as reg:
        assert reg.get_manifest(REPO, "latest").digest == mtls_registry.digest
    repo, digest = busybox_in_registry
    with closing(Registry(registry.host, config=default)) as reg:
        assert reg._transport.base_url == f"http://{registry.host}"
        assert reg.get_manifest(repo, "latest").digest == digest


def test_plain_http_registry_not_insecure_is_refused(registry, busybox_in_registry, tmp_path):
    with closing(Registry(registry.host, config=config(tmp_path))) as reg:
        with pytest.raises(SystemFailure) as e:
            reg.get_manifest(busybox_in_registry[0], "latest")
    text = one_line(e)
    assert text.startswith(f"registry {registry.host}: TLS handshake failed (")
    assert "plain HTTP" in text
