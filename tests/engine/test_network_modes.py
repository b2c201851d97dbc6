"""Network modes before the networking issue: `none` (the default, said so in /info) gives a
private namespace with only `lo`; `host` shares the host's; `container:<name>` joins another
container's. Checked from inside containers run through the docker CLI."""

import os


def links(output: str) -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in output.splitlines() if ": " in line}


def test_default_and_none_have_only_loopback(engine):
    for args in ((), ("--network", "none")):
        r = engine.docker("run", "--rm", *args, "busybox", "ip", "-o", "link", check=True)
        assert links(r.stdout) == {"lo"}, r.stdout


def test_host_network_sees_the_host_interfaces(engine):
    r = engine.docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link", check=True)
    assert links(r.stdout) == set(os.listdir("/sys/class/net")), r.stdout
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
