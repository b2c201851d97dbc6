"""nftables.render: the whole table for a desired state, checked against a golden script (pure, no
root). The kernel-side behaviour of the same rules is tested in tests/network/test_nftables.py."""

import subprocess

import pytest
from hypothesis import given, strategies as st

from dockyard.errors import InvalidArgument
from dockyard.network.nftables import BridgeNet, Dnat, Ruleset, render

EXAMPLE = Ruleset(
    "dockyard_0a1b2c3d",
    bridges=(
        BridgeNet("dockyard0", "172.17.0.0/16"),
        BridgeNet("dy-0123456789ab", "172.18.0.0/16", icc=False),
        BridgeNet("dy-ba9876543210", "172.19.0.0/16", internal=True),
        BridgeNet("dy-nomasq", "172.20.0.0/16", masquerade=False),
    ),
    dnats=(
        Dnat("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "dockyard0"),
        Dnat("tcp", "127.0.0.1", 8081, "172.18.0.2", 80, "dy-0123456789ab"),
        Dnat("udp", "192.0.2.2", 5353, "172.17.0.3", 53, "dockyard0"),
    ),
)

GOLDEN = """\
table ip dockyard_0a1b2c3d {}
delete table ip dockyard_0a1b2c3d
table ip dockyard_0a1b2c3d {
	comment "dockyard: generated and replaced as a whole; changes made here are lost"

	chain raw-prerouting {
		type filter hook prerouting priority raw; policy accept;
		iifname { "dockyard0", "dy-0123456789ab", "dy-ba9876543210", "dy-nomasq" } ip daddr 127.0.0.0/8 counter drop comment "no host loopback from containers"
		iifname != "lo" ip daddr 127.0.0.1 tcp dport 8081 counter drop comment "loopback port from remote"
	}

	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump published
	}

	chain nat-output {
		type nat hook output priority -100; policy accept;
		ip daddr 127.0.0.0/8 jump published-loopback
		fib daddr type local jump published
	}

	chain published {
		tcp dport 8080 counter dnat to 172.17.0.2:80
		ip daddr 192.0.2.2 udp dport 5353 counter dnat to 172.17.0.3:53
	}

	chain published-loopback {
		ip daddr 127.0.0.1 tcp dport 8081 counter dnat to 172.18.0.2:80
	}

	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname != "dockyard0" ip saddr 172.17.0.0/16 counter masquerade
		oifname "dockyard0" ip saddr 127.0.0.0/8 counter masquerade
		oifname != "dy-0123456789ab" ip saddr 172.18.0.0/16 counter masquerade
		oifname "dy-0123456789ab" ip saddr 127.0.0.0/8 counter masquerade
		oifname "dy-ba9876543210" ip saddr 127.0.0.0/8 counter masquerade
		oifname "dy-nomasq" ip saddr 127.0.0.0/8 counter masquerade
		oifname "dockyard0" ip saddr 172.17.0.2 ip daddr 172.17.0.2 tcp dport 80 counter masquerade
		oifname "dy-0123456789ab" ip saddr 172.18.0.2 ip daddr 172.18.0.2 tcp dport 80 counter masquerade
		oifname "dockyard0" ip saddr 172.17.0.3 ip daddr 172.17.0.3 udp dport 53 counter masquerade
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname vmap { "dy-ba9876543210" : jump forward-out-dy-ba9876543210 }
		oifname vmap { "dockyard0" : jump forward-in-dockyard0, "dy-0123456789ab" : jump forward-in-dy-0123456789ab, "dy-ba9876543210" : jump forward-in-dy-ba9876543210, "dy-nomasq" : jump forward-in-dy-nomasq }
	}

	chain forward-in-dockyard0 {
		ct state established,related accept
		iifname "dockyard0" accept
		ct status dnat accept comment "published ports"
		counter drop comment "isolation"
	}

	chain forward-in-dy-0123456789ab {
		ct state established,related accept
		iifname "dy-0123456789ab" counter drop comment "icc disabled"
		ct status dnat accept comment "published ports"
		counter drop comment "isolation"
	}

	chain forward-in-dy-ba9876543210 {
		ct state established,related accept
		iifname != "dy-ba9876543210" counter drop comment "internal network"
		iifname "dy-ba9876543210" accept
	}

	chain forward-in-dy-nomasq {
		ct state established,related accept
		iifname "dy-nomasq" accept
		ct status dnat accept comment "published ports"
		counter drop comment "isolation"
	}

	chain forward-out-dy-ba9876543210 {
		oifname != "dy-ba9876543210" counter drop comment "internal network"
	}
}
"""


def chain_body(script: str, name: str) -> list[str]:
    lines = script.splitlines()
    start = lines.index(f"\tchain {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1:end]]


def test_golden_example():
    assert render(EXAMPLE) == GOLDEN


def test_render_is_pure_and_deterministic(monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError("render ran a process")
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    assert render(EXAMPLE) == render(EXAMPLE)


def test_empty_ruleset_keeps_base_chains_and_no_empty_sets():
    script = render(Ruleset("dockyard_empty"))
    assert script.startswith("table ip dockyard_empty {}\ndelete table ip dockyard_empty\ntable ip dockyard_empty {\n")
    for base in ("raw-prerouting", "nat-prerouting", "nat-output", "nat-postrouting", "forward"):
        assert chain_body(script, base)[0].startswith("type ")
    assert chain_body(script, "forward") == ["type filter hook forward priority filter; policy accept;"]
    assert chain_body(script, "raw-prerouting") == ["type filter hook prerouting priority raw; policy accept;"]
    assert "{ }" not in script and "vmap" not in script


@pytest.mark.parametrize("host_ip", ["127.0.0.1", "127.0.0.2", "127.1.2.3"])
def test_loopback_port_is_dnated_only_from_the_host_itself(host_ip):
    rs = Ruleset("t", (BridgeNet("b", "10.9.0.0/24"),), (Dnat("tcp", host_ip, 9000, "10.9.0.2", 80, "b"),))
    script = render(rs)
    # only from nat output (the host's own traffic), never from prerouting
    assert chain_body(script, "published") == []
    assert chain_body(script, "published-loopback") == [f"ip daddr {host_ip} tcp dport 9000 counter dnat to 10.9.0.2:80"]
    assert "jump published-loopback" not in "\n".join(chain_body(script, "nat-prerouting"))
    # and what reaches that address from another interface is dropped before conntrack/NAT
    raw = chain_body(script, "raw-prerouting")
    assert f'iifname != "lo" ip daddr {host_ip} tcp dport 9000 counter drop comment "loopback port from remote"' in raw
    assert 'iifname { "b" } ip daddr 127.0.0.0/8 counter drop comment "no host loopback from containers"' in raw


def test_any_address_and_specific_address():
    rs = Ruleset("t", (BridgeNet("b", "10.9.0.0/24"),),
                 (Dnat("udp", "0.0.0.0", 53, "10.9.0.2", 5353, "b"), Dnat("tcp", "192.0.2.2", 443, "10.9.0.3", 8443, "b")))
    assert chain_body(render(rs), "published") == ["udp dport 53 counter dnat to 10.9.0.2:5353",
                                                   "ip daddr 192.0.2.2 tcp dport 443 counter dnat to 10.9.0.3:8443"]
    assert chain_body(render(rs), "nat-prerouting")[1:] == ["fib daddr type local jump published"]


def test_internal_and_unmasqueraded_networks_have_no_outbound_nat():
    rs = Ruleset("t", (BridgeNet("i", "10.8.0.0/24", internal=True), BridgeNet("m", "10.7.0.0/24", masquerade=False)))
    post = chain_body(render(rs), "nat-postrouting")
    assert not any("ip saddr 10.8.0.0/24" in r or "ip saddr 10.7.0.0/24" in r for r in post)


def test_internal_without_icc_drops_everything_but_replies():
    rs = Ruleset("t", (BridgeNet("i", "10.8.0.0/24", internal=True, icc=False),))
    assert chain_body(render(rs), "forward-in-i") == [
        "ct state established,related accept",
        'iifname != "i" counter drop comment "internal network"',
        'iifname "i" counter drop comment "icc disabled"',
    ]


@pytest.mark.parametrize("rs, message", [
    (Ruleset("bad name"), "invalid nftables table name"),
    (Ruleset("t; flush ruleset"), "invalid nftables table name"),
    (Ruleset("t", (BridgeNet('b" accept', "10.0.0.0/24"),)), "invalid bridge name"),
    (Ruleset("t", (BridgeNet("b{", "10.0.0.0/24"),)), "invalid bridge name"),
    (Ruleset("t", (BridgeNet("sixteen-chars-xx", "10.0.0.0/24"),)), "invalid bridge name"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.0/24"), BridgeNet("b", "10.1.0.0/24"))), "listed twice"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.1/24"),)), "invalid subnet"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.0/24 accept"),)), "invalid subnet"),
    (Ruleset("t", (BridgeNet("b", "fd00::/64"),)), "invalid subnet"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.0/24"),), (Dnat("sctp", "0.0.0.0", 1, "10.0.0.2", 1, "b"),)), "protocol"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.0/24"),), (Dnat("tcp", "::", 1, "10.0.0.2", 1, "b"),)), "invalid IPv4"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.0/24"),), (Dnat("tcp", "0.0.0.0", 1, "10.0.0.2 ", 1, "b"),)), "invalid IPv4"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.0/24"),), (Dnat("tcp", "0.0.0.0", 0, "10.0.0.2", 1, "b"),)), "invalid port"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.0/24"),), (Dnat("tcp", "0.0.0.0", 1, "10.0.0.2", 65536, "b"),)), "invalid port"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.0/24"),), (Dnat("tcp", "0.0.0.0", True, "10.0.0.2", 1, "b"),)), "invalid port"),
    (Ruleset("t", (BridgeNet("b", "10.0.0.0/24"),), (Dnat("tcp", "0.0.0.0", 1, "10.0.0.2", 1, "c"),)), "not in the ruleset"),
])
def test_bad_input_is_refused(rs, message):
    with pytest.raises(InvalidArgument, match=message):
        render(rs)


@given(st.text(max_size=20), st.text(max_size=20))
def test_names_never_inject_syntax(table, bridge):
    try:
        script = render(Ruleset(table, (BridgeNet(bridge, "10.0.0.0/24"),)))
    except InvalidArgument:
        return
    for name in (table, bridge):
        assert not set(name) & set(' \t\n"{};#\\\'$@')
    assert script.count("{") == script.count("}")
