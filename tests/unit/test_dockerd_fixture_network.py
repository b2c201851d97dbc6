"""The private dockerd's opt-in bridge networking (tests/fixtures/dockerd.py, network=True): it
works (two containers on a user network talk by name), and docker0, the veths and dockerd's
iptables rules stay inside its own network namespace: the host's links, iptables, nft ruleset
and ip_forward are the same before, during and after."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # `tests` is not installed; the fixture lives in tests/fixtures

from tests.fixtures.dockerd import Dockerd, missing_tools  # noqa: E402
from tests.fixtures.host import cgroup_roots  # noqa: E402

ARCHIVE = REPO / "build" / "fixtures" / "busybox" / "busybox.docker.tar"


def _out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


def host_network_state() -> dict:
    """What dockerd's networking would change on the host (iptables-nft only: listing the legacy
    tables would instantiate them)."""
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forward = f.read().strip()
    return {"iptables": _out("iptables", "-S") + _out("iptables", "-t", "nat", "-S"),
            "docker_chains": "DOCKER" in _out("nft", "list", "ruleset"),
            "docker0": os.path.exists("/sys/class/net/docker0"),
            "ip_forward": forward}


@pytest.mark.root
def test_bridge_networking_stays_in_the_peers_network_namespace():
    why = missing_tools()
    if why:
        pytest.skip(why)
    if not ARCHIVE.is_file():
        pytest.skip(f"{ARCHIVE} missing (make fixtures)")
    before = host_network_state()
    # dockerd puts container cgroups under /docker in every hierarchy; removed if made here
    cgroup_dirs = [os.path.join(m, "docker") for m in cgroup_roots()
                   if not os.path.exists(os.path.join(m, "docker"))]
    try:
        talk_on_a_user_network(before)
    finally:
        for path in cgroup_dirs:
            try:
                os.rmdir(path)
            except OSError:
                pass
    assert host_network_state() == before


def talk_on_a_user_network(host_before: dict) -> None:
    with Dockerd(network=True) as d:
        assert os.stat(d.net_ns).st_ino != os.stat("/proc/self/ns/net").st_ino
        assert d.cli("load", "-i", str(ARCHIVE)).returncode == 0
        assert d.cli("network", "create", "fixnet").returncode == 0
        server = d.cli("run", "-d", "--network", "fixnet", "--name", "srv", "busybox",
                       "sh", "-c", "mkfifo /tmp/in && nc -l -p 5001 <>/tmp/in | wc -c")
        assert server.returncode == 0, server.stderr
        client = d.cli("run", "--rm", "--network", "fixnet", "busybox", "sh", "-c",
                       "until echo hello | nc srv 5001; do usleep 50000; done")
        assert client.returncode == 0, client.stderr
        assert d.cli("wait", "srv").stdout.strip() == "0"
        assert d.cli("logs", "srv").stdout.strip() == "6"
        inside = _out("nsenter", f"--net={d.net_ns}", "iptables", "-S")
        assert "-N DOCKER" in inside
        assert "docker0" in _out("nsenter", f"--net={d.net_ns}", "ip", "-o", "link")
        assert host_network_state() == host_before
        assert d.cli("rm", "-f", "srv").returncode == 0
        assert d.cli("network", "rm", "fixnet").returncode == 0
