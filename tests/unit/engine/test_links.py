"""Legacy links: parsing the three spellings, and the variables and hosts line a link gives."""

import pytest

from dockyard.engine import links
from dockyard.errors import InvalidArgument


def test_parse_spellings():
    assert links.parse("web:db") == links.Link("web", "db")
    assert links.parse("web") == links.Link("web", "web")
    assert links.parse("/web:/me/db") == links.Link("web", "db")
    assert links.Link("web", "db").stored("me") == "/web:/me/db"
    for bad in ("", ":db", "a/b:c", None):
        with pytest.raises(InvalidArgument):
            links.parse(bad)
    with pytest.raises(InvalidArgument):
        links.parse_all("web:db")


def test_env_follows_dockerd():
    env = links.env(links.Link("web", "my-db"), "me", "172.17.0.2",
                    ["FOO=1", "PATH=/bin", "HOME=/root", "BAR=a=b"], ["8080/tcp", "53/udp", "80"])
    assert env == [
        "MY_DB_NAME=/me/my-db",
        "MY_DB_PORT=udp://172.17.0.2:53",
        "MY_DB_PORT_53_UDP=udp://172.17.0.2:53", "MY_DB_PORT_53_UDP_ADDR=172.17.0.2",
        "MY_DB_PORT_53_UDP_PORT=53", "MY_DB_PORT_53_UDP_PROTO=udp",
        "MY_DB_PORT_80_TCP=tcp://172.17.0.2:80", "MY_DB_PORT_80_TCP_ADDR=172.17.0.2",
        "MY_DB_PORT_80_TCP_PORT=80", "MY_DB_PORT_80_TCP_PROTO=tcp",
        "MY_DB_PORT_8080_TCP=tcp://172.17.0.2:8080", "MY_DB_PORT_8080_TCP_ADDR=172.17.0.2",
        "MY_DB_PORT_8080_TCP_PORT=8080", "MY_DB_PORT_8080_TCP_PROTO=tcp",
        "MY_DB_ENV_FOO=1", "MY_DB_ENV_BAR=a=b",
    ]


def test_hosts_entry():
    assert links.hosts_entry(links.Link("web", "db"), "172.17.0.2", "abc123") == ("172.17.0.2", "db abc123 web")
    assert links.hosts_entry(links.Link("web", "web"), "172.17.0.2", "") == ("172.17.0.2", "web")
