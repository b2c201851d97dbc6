"""Networking under churn and after a crash (issue 6, "restart safety"): 100 containers started
and removed on several networks, then a dockyardd SIGKILL with containers running and leftovers
a crash can leave (a veth on one of our bridges that no endpoint owns, a netns file no container
owns, a container that died while the daemon was down). After each phase: no veth, netns file,
nft rule or endpoint row (IP allocation) more than the state calls for.

About 40 s, so part of the main run (a test over a minute or so would be marked slow)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import uuid

import pytest

from tests.engine.conftest import docker, inspect, wait_for
from tests.engine.test_networks_cli import (KernelState, fetch, free_port, links_json, port_is_free,
                                            start_httpd)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real engine needs root")


def our_state(engine, bridges: set[str]) -> KernelState:
    return KernelState(engine, bridges)


def bridge_ports(bridges: set[str]) -> set[str]:
    return {link["ifname"] for link in links_json() if link.get("master") in bridges}


def nft_dnat_rules(engine) -> list[str]:
    r = subprocess.run(["nft", "list", "table", "ip", engine.nft_table], capture_output=True, text=True)
    return [line.strip() for line in r.stdout.splitlines() if "dnat to" in line]


def test_churn_and_sigkill_leave_nothing_behind(fresh_engine):
    e = fresh_engine
    nets = [f"h6slow{i}{uuid.uuid4().hex[:4]}" for i in range(3)]
    for n in nets:
        docker(e, "network", "create", n)
    bridges = set(e.bridges())
    assert len(bridges) == 4, bridges  # the default bridge and one per network
    baseline = our_state(e, bridges)
    assert baseline.endpoints == 0 and not baseline.netns

    # -- 100 containers started and removed, 8 at a time, on the three networks and the default
    # bridge; every tenth publishes a port
    def one(i: int) -> None:
        name = f"h6many{i}"
        args = ["--network", nets[i % 3]] if i % 4 else []
        if i % 10 == 0:
            args += ["-p", "127.0.0.1::80"]
        docker(e, "run", "-d", "--name", name, *args, "busybox", "sleep", "300")
        docker(e, "rm", "-f", name)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(100)))
    assert not our_state(e, bridges).leaks_since(baseline)
    assert not bridge_ports(bridges)
    assert not nft_dnat_rules(e)
    # the addresses came back: the next container on a network gets its first one
    docker(e, "run", "-d", "--name", "h6first", "--network", nets[0], "busybox", "sleep", "300")
    gateway = json.loads(docker(e, "network", "inspect", nets[0]).stdout)[0]["IPAM"]["Config"][0]["Gateway"]
    first = inspect(e, "h6first")["NetworkSettings"]["Networks"][nets[0]]["IPAddress"]
    assert first == gateway.rsplit(".", 1)[0] + ".2", (first, gateway)
    docker(e, "rm", "-f", "h6first")

    # -- running containers through a SIGKILL of dockyardd
    port = free_port()
    start_httpd(e, "h6web", "--network", nets[0], "-p", f"127.0.0.1:{port}:80")
    for i in range(3):
        docker(e, "run", "-d", "--name", f"h6keep{i}", "--network", nets[i], "busybox", "sleep", "300")
    docker(e, "network", "connect", nets[0], "h6keep1")
    docker(e, "run", "-d", "--name", "h6victim", "--network", nets[1], "busybox", "sleep", "300")
    before_kill = {name: inspect(e, name)["NetworkSettings"]["Networks"] for name in
                   ("h6web", "h6keep0", "h6keep1", "h6keep2")}
    victim = inspect(e, "h6victim")
    victim_sandbox = victim["NetworkSettings"]["SandboxKey"]
    victim_ports = bridge_ports(bridges)

    e.kill()
    # What a crash can leave: a veth on our bridge no endpoint owns, a netns file no container
    # owns, and a container that died while nobody watched.
    stray_veth = "veth" + uuid.uuid4().hex[:7]
    peer = "h6p" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "link", "add", stray_veth, "type", "veth", "peer", "name", peer], check=True)
    try:
        bridge0 = sorted(bridges - {e.bridge})[0]
        subprocess.run(["ip", "link", "set", stray_veth, "master", bridge0, "up"], check=True)
        netns_dir = os.path.join(e.exec_root, "netns")
        stray_netns = os.path.join(netns_dir, "h6stray" + uuid.uuid4().hex[:6])
        open(stray_netns, "w").close()
        subprocess.run(["unshare", f"--net={stray_netns}", "true"], check=True)
        os.kill(victim["State"]["Pid"], signal.SIGKILL)
        e.start()

        # the survivors kept their addresses, names and published port
        for name, networks in before_kill.items():
            now = inspect(e, name)["NetworkSettings"]["Networks"]
            assert {k: v["IPAddress"] for k, v in now.items()} == \
                   {k: v["IPAddress"] for k, v in networks.items()}, name
        assert "hello" in fetch(f"http://127.0.0.1:{port}/")
        docker(e, "exec", "h6keep1", "ping", "-c", "1", "-W", "2", "h6web")
        docker(e, "exec", "h6keep0", "ping", "-c", "1", "-W", "2", "h6keep1")
        # the leftovers are gone, and so is the dead container's endpoint
        assert not any(link["ifname"] == stray_veth for link in links_json())
        assert not os.path.exists(stray_netns)
        wait_for(lambda: inspect(e, "h6victim")["State"]["Running"] is False, timeout=30)
        wait_for(lambda: not os.path.exists(victim_sandbox), timeout=30)
        victim_net = json.loads(docker(e, "network", "inspect", nets[1]).stdout)[0]["Containers"]
        assert victim["Id"] not in victim_net
        assert len(bridge_ports(bridges)) == len(victim_ports) - 1, "the victim's veth went with it"
    finally:
        subprocess.run(["ip", "link", "del", stray_veth], capture_output=True)

    # -- everything removed: back to the state before the churn, then a graceful stop (the
    # fixture checks the bridges and the nft table are gone)
    for name in ("h6web", "h6keep0", "h6keep1", "h6keep2", "h6victim"):
        docker(e, "rm", "-f", name)
    wait_for(lambda: port_is_free(port), timeout=10)
    assert not our_state(e, bridges).leaks_since(baseline)
    assert not bridge_ports(bridges) and not nft_dnat_rules(e)
    for n in nets:
        docker(e, "network", "rm", n)
