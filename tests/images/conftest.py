"""Registry fixtures for the image tests (tests/fixtures/registry.py does the work).

`registry` is one anonymous docker-registry for the whole session: use a repository name unique
to your test. `htpasswd_registry` and `token_registry` are session-scoped too (user alice,
password s3cret). `registry_factory(auth=…, users=…)` starts a private one stopped at test end.
`fault_proxy(target_host)` makes FaultProxy instances stopped at test end.
"""

import pytest

from tests.fixtures.registry import DEFAULT_USERS, FaultProxy, start_registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("registry-htpasswd"), auth="htpasswd",
                         users=DEFAULT_USERS)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("registry-token"), auth="token",
                         users=DEFAULT_USERS)
    yield reg
    reg.stop()


@pytest.fixture
def registry_factory(tmp_path):
    started = []

    def start(**kwargs):
        reg = start_registry(tmp_path, **kwargs)
        started.append(reg)
        return reg

    yield start
    for reg in started:
        reg.stop()


@pytest.fixture
def fault_proxy():
    started = []

    def start(target_host: str) -> FaultProxy:
        proxy = FaultProxy(target_host)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="session")
def busybox_in_registry(registry):
    """The busybox fixture image pushed (by skopeo) to `registry` as busybox-fixture:latest;
    returns (repo, manifest digest). Read-only: push your own repo to change things."""
    from tests.fixtures.registry import push_fixture_image
    repo = "busybox-fixture"
    return repo, push_fixture_image(registry.host, repo, "latest")
