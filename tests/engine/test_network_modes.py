"""Network modes other than bridges: `none` gives a private namespace with only `lo`; `host`
shares the host's; `container:<name>` joins another container's; the default is the default
bridge (eth0 beside lo). Checked from inside containers run through the docker CLI."""

import json
import os
import subprocess

from tests.engine.conftest import _engine


def links(output: str) -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in output.splitlines() if ": " in line}


def test_none_has_only_loopback_and_default_is_the_bridge(engine):
    r = engine.docker("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link", check=True)
    assert links(r.stdout) == {"lo"}, r.stdout
    r = engine.docker("run", "--rm", "busybox", "ip", "-o", "link", check=True)
    assert links(r.stdout) == {"lo", "eth0"}, r.stdout


def test_host_network_sees_the_host_interfaces(engine):
    # Links come and go on the host while tests run (veths of other containers): the engine's
    # own bridge and the host's loopback and eth0 must be among them.
    r = engine.docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link", check=True)
    assert {"lo", engine.bridge} | ({"eth0"} & set(os.listdir("/sys/class/net"))) <= links(r.stdout), r.stdout
    r = engine.docker("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net",
                      check=True)
    assert r.stdout.strip() == os.readlink("/proc/self/ns/net")


def test_container_network_joins_the_other_namespace(engine):
    engine.docker("run", "-d", "--name", "netpeer", "busybox", "sleep", "60", check=True)
    try:
        mine = engine.docker("exec", "netpeer", "readlink", "/proc/self/ns/net", check=True).stdout
        theirs = engine.docker("run", "--rm", "--network", "container:netpeer", "busybox",
                               "readlink", "/proc/self/ns/net", check=True).stdout
        assert mine == theirs and mine.strip() != os.readlink("/proc/self/ns/net")
    finally:
        engine.docker("rm", "-f", "netpeer")


def test_unknown_network_fails_at_start_not_create(engine):
    # As dockerd: the container is created, its start is a 404 (a 404 at create would make the
    # CLI try to pull the image).
    r = engine.docker("run", "--name", "nonet", "--network", "nosuchnet", "busybox", "true")
    assert r.returncode == 125 and "network nosuchnet not found" in r.stderr, r.stderr
    assert "Unable to find image" not in r.stderr
    status, _, _ = engine.http("POST", "/containers/nonet/start")
    assert status == 404
    engine.docker("rm", "-f", "nonet")


def test_legacy_link_gives_hosts_line_and_environment(engine):
    engine.docker("run", "-d", "--name", "linked", "-e", "FOO=1", "--expose", "80", "busybox", "sleep", "60",
                  check=True)
    try:
        ip = engine.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "linked", check=True).stdout.strip()
        assert ip.startswith(engine.bip.rpartition(".")[0] + ".")
        r = engine.docker("run", "--name", "linker", "--link", "linked:db", "busybox", "sh", "-c",
                          "env; cat /etc/hosts; ping -c 1 -W 2 db >/dev/null && echo pinged", check=True)
        env = set(r.stdout.splitlines())
        assert {"DB_NAME=/linker/db", "DB_ENV_FOO=1", f"DB_PORT=tcp://{ip}:80", f"DB_PORT_80_TCP_ADDR={ip}"} <= env
        assert any(line.startswith(f"{ip}\tdb ") and line.endswith(" linked") for line in env), r.stdout
        assert "pinged" in env
        assert engine.docker("inspect", "-f", "{{json .HostConfig.Links}}", "linker",
                             check=True).stdout.strip() == '["/linked:/linker/db"]'
        # The link goes (DELETE ?link=1); an unknown one is a 404; a stopped target fails the start.
        assert engine.http("DELETE", "/containers/linker/db?link=1")[0] == 204
        assert engine.http("DELETE", "/containers/linker/db?link=1")[0] == 404
        engine.docker("stop", "-t", "0", "linked", check=True)
        r = engine.docker("run", "--rm", "--link", "linked:db", "busybox", "true")
        assert r.returncode != 0 and "Cannot link to a non running container" in r.stderr, r.stderr
        r = engine.docker("run", "--rm", "--link", "nosuch:db", "busybox", "true")
        assert r.returncode != 0 and "could not get container for nosuch" in r.stderr, r.stderr
    finally:
        engine.docker("rm", "-f", "linker", "linked")


def _remote_host(engine, tmp_path):
    """A "remote" host: a network namespace of the test's own behind a veth pair, with its own
    /30 and no route back to any container subnet, serving a file with busybox httpd."""
    tag = engine.bridge[3:]
    octet = engine.bip.split(".")[1]
    host_if, peer_if = f"dyr{tag}", f"dyq{tag}"
    ns_file = str(tmp_path / "remote-ns")
    open(ns_file, "w").close()
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello").write_text("from the remote host\n")
    subprocess.run(["unshare", f"--net={ns_file}", "true"], check=True)
    subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if], check=True)
    subprocess.run(["ip", "link", "set", peer_if, "netns", ns_file], check=True)
    subprocess.run(["ip", "addr", "add", f"10.{octet}.254.1/30", "dev", host_if], check=True)
    subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
    inside = ["nsenter", f"--net={ns_file}"]
    subprocess.run([*inside, "ip", "addr", "add", f"10.{octet}.254.2/30", "dev", peer_if], check=True)
    subprocess.run([*inside, "ip", "link", "set", peer_if, "up"], check=True)
    subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
    server = subprocess.Popen([*inside, "/bin/busybox", "httpd", "-f", "-p", "8080", "-h", str(www)])
    return f"10.{octet}.254.2", host_if, ns_file, server


def test_outbound_nat_reaches_a_remote_host_and_internal_networks_do_not(engine, tmp_path):
    address, host_if, ns_file, server = _remote_host(engine, tmp_path)
    try:
        # The remote host knows no route to the container's subnet: only the masquerade makes
        # the reply come back.
        fetch = ["sh", "-c", f"timeout 10 wget -q -O - http://{address}:8080/hello; exit $?"]
        r = engine.docker("run", "--rm", "busybox", *fetch)
        assert r.returncode == 0 and r.stdout == "from the remote host\n", (r.stdout, r.stderr)
        # The control: the same on a network without masquerade fails (no way back), and an
        # internal network reaches nothing outside at all.
        engine.docker("network", "create", "-o", "com.docker.network.bridge.enable_ip_masquerade=false",
                      "dy-nomasq", check=True)
        r = engine.docker("run", "--rm", "--network", "dy-nomasq", "busybox", *fetch)
        assert r.returncode != 0 and "from the remote host" not in r.stdout
        engine.docker("network", "create", "--internal", "dy-inner", check=True)
        r = engine.docker("run", "--rm", "--network", "dy-inner", "busybox", *fetch)
        assert r.returncode != 0 and "from the remote host" not in r.stdout
    finally:
        engine.docker("network", "rm", "dy-inner", "dy-nomasq")
        server.kill()
        server.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["umount", ns_file], capture_output=True)


def test_daemon_icc_false_and_default_host_ip(subreaper, busybox_archive):  # noqa: F811
    e = _engine(busybox_archive, ("--icc=false", "--ip", "127.0.0.1"))
    try:
        options = e.json("GET", "/networks/bridge", expect=200)["Options"]
        assert options["com.docker.network.bridge.enable_icc"] == "false"
        assert options["com.docker.network.bridge.host_binding_ipv4"] == "127.0.0.1"
        e.docker("run", "-d", "--name", "quiet", "-p", "80", "busybox", "sleep", "60", check=True)
        ip = e.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "quiet", check=True).stdout.strip()
        ports = json.loads(e.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", "quiet", check=True).stdout)
        assert ports["80/tcp"][0]["HostIp"] == "127.0.0.1", ports
        r = e.docker("run", "--rm", "busybox", "ping", "-c", "1", "-W", "2", ip)
        assert r.returncode != 0, r.stdout  # containers on the default bridge cannot reach each other
    finally:
        e.docker("rm", "-f", "quiet")
        leftovers = e.cleanup()
    assert not leftovers, leftovers


def test_published_ports_on_the_host_network_are_discarded_with_a_warning(engine):
    r = engine.docker("create", "--name", "hostpub", "--network", "host", "-p", "8080:80", "busybox", "true")
    try:
        assert r.returncode == 0 and "Published ports are discarded when using host network mode" in r.stderr, r.stderr
    finally:
        engine.docker("rm", "-f", "hostpub")


def test_ps_ports_and_publish_expose_filters(engine):
    engine.docker("run", "-d", "--name", "pubf", "-p", "127.0.0.1::80", "--expose", "81/udp", "busybox",
                  "sleep", "60", check=True)
    try:
        item = next(c for c in engine.json("GET", "/containers/json", expect=200) if c["Names"] == ["/pubf"])
        host_port = next(p["PublicPort"] for p in item["Ports"] if p["PrivatePort"] == 80)
        assert item["Ports"] == [{"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": host_port, "Type": "tcp"},
                                 {"PrivatePort": 81, "Type": "udp"}]

        def names(flt):
            return engine.docker("ps", "--filter", flt, "--format", "{{.Names}}", check=True).stdout.split()
        assert names(f"publish={host_port}") == ["pubf"]
        assert names(f"publish={host_port}/udp") == []
        assert names(f"publish={host_port - 1}-{host_port + 1}") == ["pubf"]
        assert names("expose=81/udp") == ["pubf"] and names("expose=81") == []
    finally:
        engine.docker("rm", "-f", "pubf")
