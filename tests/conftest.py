"""Shared fixtures: the busybox fixtures every layer's tests build on."""

import os
import sys

import pytest

# Before any test imports grpc: forked children must stay single-threaded (see
# dockyard.containerd.daemon).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.fixtures import busybox  # noqa: E402

# The private registry fixtures (registry, busybox_ref, token_registry …) for every directory.
pytest_plugins = ["tests.fixtures.registry_fixtures"]


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> str:
    """A pristine busybox rootfs; copy it (see `bundle`) before letting a container write."""
    built = os.path.join(REPO, "build", "fixtures", "busybox", "rootfs")
    if os.path.isfile(os.path.join(built, "bin", "busybox")):
        return built
    dest = str(tmp_path_factory.mktemp("busybox") / "rootfs")
    busybox.build_rootfs(dest)
    return dest
