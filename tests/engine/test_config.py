"""dockyardd's flags and daemon.json, merged with dockerd's rules: unknown keys and settings made
twice are errors, wrong types are named, TCP needs TLS with client verification."""

from __future__ import annotations

import json

import pytest

from dockyard.engine import cli
from dockyard.engine.config import AddressPool, Config, parse_host
from dockyard.errors import InvalidArgument


def load(tmp_path, argv: list[str], file: dict | str | None = None):
    path = tmp_path / "daemon.json"
    if file is not None:
        path.write_text(file if isinstance(file, str) else json.dumps(file))
    return cli.parse([*argv, "--config-file", str(path)] if file is not None else argv)[1]


def test_defaults(tmp_path):
    c = load(tmp_path, [], {})
    assert c.hosts == ("unix:///run/dockyard/dockyard.sock",)
    assert (c.data_root, c.exec_root) == ("/var/lib/dockyard", "/run/dockyard")
    assert c.pidfile_path == "/run/dockyard/dockyardd.pid"
    assert c.containerd_address == "/run/dockyard/containerd/containerd.sock"
    assert c.containerd_root == "/var/lib/dockyard/containerd"
    assert c.containers_dir == "/var/lib/dockyard/containers"
    assert c.engine_db == "/var/lib/dockyard/engine.db"
    assert (c.api_version, c.min_api_version, c.namespace) == ("1.45", "1.24", "moby")
    assert c.live_restore and c.managed_containerd and c.default_network_mode == "bridge"
    assert c.bridge_name == "dockyard0"
    assert Config(bridge="none").default_network_mode == "none" and Config(bridge="none").bridge_name == ""


def test_flags(tmp_path):
    c = load(tmp_path, ["-H", "unix:///tmp/a.sock", "-H", "/tmp/b.sock", "--data-root", "/srv/d/",
                        "--exec-root", "/run/x", "-p", "/run/x.pid", "--containerd", "unix:///run/c.sock",
                        "--bip", "10.1.0.1/24", "-b", "br0", "--default-address-pool", "base=10.10.0.0/16,size=24",
                        "--live-restore=false", "-D", "--cgroup-parent", "/ci", "--icc=false", "--ip", "127.0.0.1"], {})
    assert c.hosts == ("unix:///tmp/a.sock", "unix:///tmp/b.sock")
    assert (c.data_root, c.exec_root, c.pidfile_path) == ("/srv/d", "/run/x", "/run/x.pid")
    assert c.containerd_address == "/run/c.sock" and not c.managed_containerd
    assert (c.bip, c.bridge) == ("10.1.0.1/24", "br0")
    assert c.default_address_pools == (AddressPool("10.10.0.0/16", 24),)
    assert c.live_restore is False and c.effective_log_level == "debug" and c.cgroup_parent == "/ci"
    assert (c.icc, c.ip_masq, c.ip) == (False, True, "127.0.0.1")


def test_file(tmp_path):
    c = load(tmp_path, [], {"hosts": ["unix:///tmp/f.sock"], "data-root": "/srv/f", "log-level": "warn",
                            "default-address-pools": [{"base": "172.80.0.0/16", "size": 24}],
                            "live-restore": True, "group": "docker", "ip-masq": False, "icc": True})
    assert c.hosts == ("unix:///tmp/f.sock",) and c.data_root == "/srv/f" and c.log_level == "warn"
    assert c.default_address_pools == (AddressPool("172.80.0.0/16", 24),) and c.group == "docker"
    assert (c.icc, c.ip_masq) == (True, False)
    with pytest.raises(InvalidArgument, match="invalid ip"):
        load(tmp_path, ["--ip", "nope"], {})


def test_missing_default_file_is_fine_but_a_named_one_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr("dockyard.engine.config.DEFAULT_CONFIG_FILE", str(tmp_path / "absent.json"))
    monkeypatch.setattr("dockyard.engine.cli.cfg.DEFAULT_CONFIG_FILE", str(tmp_path / "absent.json"))
    assert cli.parse([])[1].data_root == "/var/lib/dockyard"
    with pytest.raises(InvalidArgument, match="no such file"):
        cli.parse(["--config-file", str(tmp_path / "nope.json")])


@pytest.mark.parametrize("file, message", [
    ({"unknown-key": 1}, "the following directives don't match any configuration option: unknown-key"),
    ({"storage-driver": "overlay2"}, "not supported by dockyardd: storage-driver"),
    ({"data-root": 5}, "invalid value for data-root: 5 is not a string"),
    ({"live-restore": "yes"}, "invalid value for live-restore: \"yes\" is not a boolean"),
    ({"hosts": "unix:///x"}, "invalid value for hosts"),
    ({"default-address-pools": [{"base": "nonsense", "size": 24}]}, "invalid default address pool"),
    ({"default-address-pools": [{"base": "10.0.0.0/16", "size": 8}]}, "not within"),
    ({"log-level": "loud"}, "unable to parse logging level: loud"),
    ("{not json", "invalid configuration file"),
    ("[1]", "want a JSON object"),
    ({"data-root": "relative/path"}, "data-root must be an absolute path"),
    ({"bip": "10.0.0.300/24"}, "invalid bip"),
])
def test_bad_files(tmp_path, file, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(tmp_path, [], file)


def test_flag_and_file_conflict(tmp_path):
    with pytest.raises(InvalidArgument) as e:
        load(tmp_path, ["--data-root", "/a"], {"data-root": "/b"})
    assert str(e.value) == ("the following directives are specified both as a flag and in the configuration "
                            "file: data-root: (from flag: /a, from file: /b)")


@pytest.mark.parametrize("argv, message", [
    (["-H", "tcp://0.0.0.0:2375"], "refusing to listen on tcp://0.0.0.0:2375 without TLS client verification"),
    (["-H", "tcp://0.0.0.0:2376", "--tls"], "without TLS client verification"),
    (["--tlsverify", "--tlscacert", "/ca.pem"], "--tlsverify needs --tlscert, --tlskey"),
    (["-H", "fd://"], "fd:// is not supported"),
    (["-H", "ssh://me@host"], "ssh:// is not supported"),
    (["-H", "tcp://host"], "want tcp://HOST:PORT"),
    (["-H", "unix://" + "/x" * 60], "longer than 107 bytes"),
    (["--default-address-pool", "10.0.0.0/8"], "want base=CIDR,size=N"),
])
def test_bad_flags(tmp_path, argv, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        load(tmp_path, argv, {})


def test_bad_boolean_flag_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit):
        load(tmp_path, ["--live-restore=perhaps"], {})


def test_tcp_with_tlsverify(tmp_path):
    c = load(tmp_path, ["-H", "tcp://127.0.0.1:2376", "--tlsverify", "--tlscacert", "/ca", "--tlscert", "/c",
                        "--tlskey", "/k"], {})
    assert c.hosts == ("tcp://127.0.0.1:2376",) and c.tls and c.tlsverify


@pytest.mark.parametrize("text, canonical", [
    ("unix://", "unix:///run/dockyard/dockyard.sock"), ("/tmp//x.sock", "unix:///tmp/x.sock"),
    ("tcp://:2376", "tcp://0.0.0.0:2376"), ("tcp://[::1]:2376", "tcp://[::1]:2376"),
])
def test_hosts(text, canonical):
    assert parse_host(text) == canonical
