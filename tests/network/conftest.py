"""Fixtures for the network tests that touch the kernel: network namespaces pinned under the
test's temp dir and random link names, all removed (and checked gone) after the test."""

import os
import secrets
import subprocess
import time

import pytest

from dockyard.network import netlink, netns

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network tests need root")


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path + "/")]


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


@pytest.fixture
def make_netns(tmp_path):
    """make_netns() -> path of a new netns under tmp_path/netns; all deleted and checked after."""
    root = str(tmp_path / "netns")
    made = []

    def make(name: str | None = None) -> str:
        path = os.path.join(root, name or secrets.token_hex(4))
        netns.create(path)
        made.append(path)
        return path

    yield make
    for path in made:
        netns.delete(path)
    assert mounts_under(root) == []
    assert not os.path.exists(root) or os.listdir(root) == []


@pytest.fixture
def link_name():
    """link_name(tag) -> a unique link name (<= 15 chars); any left on the host fail the test."""
    made = []

    def name(tag: str = "l") -> str:
        n = f"dyt{tag}{secrets.token_hex(4)}"[:15]
        made.append(n)
        return n

    yield name
    # A veth whose peer was in a deleted netns goes when the kernel's (asynchronous) netns
    # cleanup runs: give it a moment.
    deadline = time.monotonic() + 5
    while (left := host_links() & set(made)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for n in left:
        subprocess.run(["ip", "link", "del", n], capture_output=True)
    assert not left, f"links left behind: {sorted(left)}"


def in_netns(path: str, *argv: str, check: bool = True, timeout: float = 10) -> str:
    """Run a command inside the netns at `path`; its stdout."""
    r = subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{argv}: rc={r.returncode} {r.stderr}"
    return r.stdout


@pytest.fixture
def bridge(link_name):
    """(name, gateway CIDR, subnet prefix "10.x.y.") of a fresh test bridge, deleted after."""
    name = link_name("br")
    prefix = f"10.{secrets.choice(range(200, 250))}.{secrets.randbelow(256)}."
    netlink.ensure_bridge(name, prefix + "1/24")
    yield name, prefix + "1/24", prefix
    netlink.delete_link(name)
