"""dockyard.network.ipam: Docker's default IPAM rules, pure."""

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.engine.config import AddressPool
from dockyard.errors import Conflict, InvalidArgument, NoSpace, NotFound, Unsupported
from dockyard.network import ipam
from dockyard.network.ipam import Subnet

N = IPv4Network
A = IPv4Address


def test_default_pools_are_dockers():
    assert ipam.DEFAULT_POOLS[0] == ("172.17.0.0/16", 16)
    assert ipam.DEFAULT_POOLS[14] == ("172.31.0.0/16", 16)
    assert ipam.DEFAULT_POOLS[-1] == ("192.168.0.0/16", 20)
    assert len(ipam.DEFAULT_POOLS) == 16


# -- parse_ipam -------------------------------------------------------------------------------

def test_parse_ipam_empty_forms():
    assert ipam.parse_ipam(None) == []
    assert ipam.parse_ipam({}) == []
    # What `docker network create n` sends.
    assert ipam.parse_ipam({"Driver": "default", "Options": {}, "Config": []}) == []


def test_parse_ipam_normalises_entries():
    entries = ipam.parse_ipam({"Driver": "default", "Config": [
        {"Subnet": "10.5.0.0/16", "IPRange": "10.5.1.0/24", "Gateway": "10.5.0.254",
         "AuxiliaryAddresses": {"router": "10.5.0.2"}}]})
    assert entries == [{"Subnet": "10.5.0.0/16", "IPRange": "10.5.1.0/24", "Gateway": "10.5.0.254",
                        "AuxiliaryAddresses": {"router": "10.5.0.2"}}]
    assert ipam.parse_ipam({"Config": [{"Subnet": "10.6.0.0/24"}]}) == [{"Subnet": "10.6.0.0/24"}]


@pytest.mark.parametrize("config, message", [
    ({"Subnet": "10.0.0.0/33"}, "invalid subnet 10.0.0.0/33: invalid CIDR block notation"),
    ({"Subnet": "bogus"}, "invalid subnet bogus: invalid CIDR block notation"),
    ({"Subnet": "10.0.0.0"}, "invalid subnet 10.0.0.0: invalid CIDR block notation"),
    ({"Subnet": "10.0.0.0/255.255.255.0"},
     "invalid subnet 10.0.0.0/255.255.255.0: invalid CIDR block notation"),
    ({"Gateway": "10.0.0.1"}, "invalid subnet : invalid CIDR block notation"),
    ({"Subnet": "10.0.0.1/24"}, "invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24"),
    ({"Subnet": "10.0.0.0/24", "Gateway": "10.1.0.1"},
     "invalid gateway 10.1.0.1: parent subnet 10.0.0.0/24 doesn't contain this address"),
    ({"Subnet": "10.0.0.0/24", "Gateway": "nope"}, "invalid gateway nope: invalid address"),
    ({"Subnet": "10.0.0.0/24", "Gateway": "fd00::1"},
     "invalid gateway fd00::1: parent subnet is an IPv4 block"),
    ({"Subnet": "10.0.0.0/24", "IPRange": "10.1.0.0/24"},
     "invalid ip-range 10.1.0.0/24: parent subnet 10.0.0.0/24 doesn't contain ip-range"),
    ({"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.0/16"},
     "invalid ip-range 10.0.0.0/16: CIDR block is bigger than its parent subnet 10.0.0.0/24"),
    ({"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.1/25"},
     "invalid ip-range 10.0.0.1/25: it should be 10.0.0.0/25"),
    ({"Subnet": "10.0.0.0/24", "IPRange": "x"}, "invalid ip-range x: invalid CIDR block notation"),
    ({"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": {"r": "10.9.0.1"}},
     "invalid auxiliary address r: parent subnet 10.0.0.0/24 doesn't contain this address"),
])
def test_parse_ipam_errors_in_dockerds_words(config, message):
    with pytest.raises(InvalidArgument) as e:
        ipam.parse_ipam({"Config": [config]})
    assert str(e.value) == "invalid network config:\n" + message


def test_parse_ipam_reports_every_problem_at_once():
    with pytest.raises(InvalidArgument) as e:
        ipam.parse_ipam({"Config": [{"Subnet": "10.0.0.0/24", "IPRange": "10.1.0.0/24",
                                     "Gateway": "10.2.0.1"}]})
    assert str(e.value) == (
        "invalid network config:\n"
        "invalid ip-range 10.1.0.0/24: parent subnet 10.0.0.0/24 doesn't contain ip-range\n"
        "invalid gateway 10.2.0.1: parent subnet 10.0.0.0/24 doesn't contain this address")


def test_parse_ipam_drivers():
    with pytest.raises(NotFound, match='^plugin "weave" not found$'):
        ipam.parse_ipam({"Driver": "weave"})
    with pytest.raises(Unsupported):
        ipam.parse_ipam({"Driver": "null"})
    assert ipam.parse_ipam({"Driver": ""}) == []


def test_parse_ipam_refuses_ipv6_and_several_subnets():
    with pytest.raises(Unsupported, match="IPv6 networks are not supported"):
        ipam.parse_ipam({"Config": [{"Subnet": "fd00:1::/64"}]})
    with pytest.raises(Unsupported):
        ipam.parse_ipam({"Config": [{"Subnet": "10.0.0.0/24"}, {"Subnet": "10.0.1.0/24"}]})


@pytest.mark.parametrize("body", [
    "x", {"Config": "x"}, {"Config": ["x"]}, {"Driver": 3}, {"Options": []},
    {"Config": [{"Subnet": 10}]}, {"Config": [{"Subnet": "10.0.0.0/8", "AuxiliaryAddresses": ["x"]}]},
])
def test_parse_ipam_bad_shapes_are_invalid_argument(body):
    with pytest.raises(InvalidArgument):
        ipam.parse_ipam(body)


# -- Subnet ----------------------------------------------------------------------------------

def test_subnet_default_gateway_is_first_host():
    s = ipam.subnet_from_config({"Subnet": "172.18.0.0/16"})
    assert s == Subnet(N("172.18.0.0/16"), A("172.18.0.1"), None)
    assert s.to_config() == {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}


def test_subnet_default_gateway_with_ip_range_comes_from_the_range():
    # libnetwork requests the gateway from the pool, i.e. from the IP range when there is one.
    s = ipam.subnet_from_config({"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.128/25"})
    assert s.gateway == A("10.0.0.128")
    assert s.to_config() == {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.128",
                             "IPRange": "10.0.0.128/25"}
    # A range starting at the subnet's network address skips it.
    s = ipam.subnet_from_config({"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.0/28"})
    assert s.gateway == A("10.0.0.1")


def test_subnet_explicit_gateway_and_aux_round_trip():
    entry = {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.254",
             "AuxiliaryAddresses": {"host1": "10.0.0.5"}}
    s = ipam.subnet_from_config(entry)
    assert s.gateway == A("10.0.0.254")
    assert s.aux_addresses == (("host1", A("10.0.0.5")),)
    assert s.to_config() == entry
    assert ipam.subnet_from_config(s.to_config()) == s
    # The aux address is never handed out.
    assert ipam.allocate(s, {A("10.0.0.1"), A("10.0.0.2"), A("10.0.0.3"), A("10.0.0.4")}) == A("10.0.0.6")


def test_subnet_gateway_on_network_or_broadcast_refused():
    with pytest.raises(Conflict, match=r"failed to allocate gateway \(10.0.0.255\): Address already in use"):
        ipam.subnet_from_config({"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.255"})
    with pytest.raises(Conflict, match="failed to allocate secondary ip address"):
        ipam.subnet_from_config({"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1",
                                 "AuxiliaryAddresses": {"a": "10.0.0.1"}})


def test_point_to_point_subnets_have_no_network_or_broadcast():
    s = ipam.subnet_from_config({"Subnet": "10.0.0.0/31"})
    assert s.gateway == A("10.0.0.0")
    assert ipam.allocate(s, ()) == A("10.0.0.1")
    with pytest.raises(NoSpace):
        ipam.allocate(s, {A("10.0.0.1")})
    s32 = ipam.subnet_from_config({"Subnet": "10.0.0.7/32"})
    assert s32.gateway == A("10.0.0.7")
    with pytest.raises(NoSpace):
        ipam.allocate(s32, ())


# -- choose_subnet / check_overlap ------------------------------------------------------------

def test_choose_subnet_first_free_default():
    assert ipam.choose_subnet(ipam.DEFAULT_POOLS, []) == N("172.17.0.0/16")
    assert ipam.choose_subnet(ipam.DEFAULT_POOLS, [N("172.17.0.0/16"), N("172.19.5.0/24")]) == N("172.18.0.0/16")
    # A host route covering 172.16/12 pushes us to 192.168.0.0/20, then past a 192.168.0.0/24.
    assert ipam.choose_subnet(ipam.DEFAULT_POOLS, [N("172.16.0.0/12")]) == N("192.168.0.0/20")
    assert ipam.choose_subnet(ipam.DEFAULT_POOLS,
                              [N("172.16.0.0/12"), N("192.168.0.0/24")]) == N("192.168.16.0/20")


def test_choose_subnet_accepts_config_address_pools():
    pools = (AddressPool("10.40.0.0/16", 24),)
    assert ipam.choose_subnet(pools, [N("10.40.0.0/24"), N("10.40.1.0/24")]) == N("10.40.2.0/24")
    # Big pools, fully used except the last slot: skipping must be fast, not 65536 steps × n.
    used = [N("10.0.0.0/9"), N("10.128.0.0/10"), N("10.192.0.0/11"), N("10.224.0.0/12"),
            N("10.240.0.0/13"), N("10.248.0.0/14"), N("10.252.0.0/15"), N("10.254.0.0/16"),
            N("10.255.0.0/17"), N("10.255.128.0/18"), N("10.255.192.0/19"), N("10.255.224.0/20"),
            N("10.255.240.0/21"), N("10.255.248.0/22"), N("10.255.252.0/23"), N("10.255.254.0/24")]
    assert ipam.choose_subnet([("10.0.0.0/8", 24)], used) == N("10.255.255.0/24")


def test_choose_subnet_exhausted():
    with pytest.raises(InvalidArgument) as e:
        ipam.choose_subnet([("10.9.0.0/23", 24)], [N("10.9.0.0/24"), N("10.9.1.128/25")])
    assert str(e.value) == ("could not find an available, non-overlapping IPv4 address pool "
                            "among the defaults to assign to the network")


def test_check_overlap():
    ipam.check_overlap(N("10.1.0.0/24"), [N("10.2.0.0/16"), N("10.1.1.0/24")])
    for other in (N("10.0.0.0/8"), N("10.1.0.128/25"), N("10.1.0.0/24")):
        with pytest.raises(Conflict) as e:
            ipam.check_overlap(N("10.1.0.0/24"), [N("192.168.0.0/16"), other])
        assert str(e.value) == "invalid pool request: Pool overlaps with other one on this address space"


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), max_size=8),
       st.integers(16, 28))
@settings(max_examples=200, deadline=None)
def test_choose_subnet_never_overlaps(raw, size):
    in_use = [N((addr, length), strict=False) for addr, length in raw]
    pools = [("10.0.0.0/8", size), ("172.16.0.0/12", size)]
    try:
        got = ipam.choose_subnet(pools, in_use)
    except InvalidArgument:
        return
    assert got.prefixlen == size
    assert not any(got.overlaps(n) for n in in_use)
    assert got.subnet_of(N("10.0.0.0/8")) or got.subnet_of(N("172.16.0.0/12"))


# -- allocate ---------------------------------------------------------------------------------

def test_allocate_lowest_free():
    s = ipam.subnet_from_config({"Subnet": "10.0.0.0/24"})
    assert ipam.allocate(s, ()) == A("10.0.0.2")
    assert ipam.allocate(s, {A("10.0.0.2"), A("10.0.0.4")}) == A("10.0.0.3")


def test_allocate_from_ip_range_but_static_anywhere_in_subnet():
    s = ipam.subnet_from_config({"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.128/25",
                                 "Gateway": "10.0.0.1"})
    assert ipam.allocate(s, ()) == A("10.0.0.128")
    assert ipam.allocate(s, (), "10.0.0.20") == A("10.0.0.20")


def test_allocate_requested_errors():
    s = ipam.subnet_from_config({"Subnet": "10.0.0.0/24"})
    for taken in ("10.0.0.1", "10.0.0.0", "10.0.0.255", "10.0.0.9"):
        with pytest.raises(Conflict, match="^Address already in use$"):
            ipam.allocate(s, {A("10.0.0.9")}, taken)
    with pytest.raises(InvalidArgument) as e:
        ipam.allocate(s, (), "10.0.1.5")
    assert str(e.value) == "invalid address 10.0.1.5: It does not belong to any of this network's subnets"
    for bad in ("10.0.0", "fd00::5"):
        with pytest.raises(InvalidArgument, match=f"invalid IPv4 address: {bad}"):
            ipam.allocate(s, (), bad)


def test_allocate_exhausted_message():
    s = ipam.subnet_from_config({"Subnet": "10.0.0.0/30"})  # .1 gateway, .2 the only host
    assert ipam.allocate(s, ()) == A("10.0.0.2")
    with pytest.raises(NoSpace) as e:
        ipam.allocate(s, {A("10.0.0.2")}, network="front (abc123)")
    assert str(e.value) == ("no available IPv4 addresses on this network's address pools: "
                            "front (abc123)")


@st.composite
def subnets_and_used(draw):
    length = draw(st.integers(22, 30))
    base = draw(st.integers(0, 2**32 - 1))
    subnet = N((base, length), strict=False)
    entry = {"Subnet": str(subnet)}
    if draw(st.booleans()):
        extra = draw(st.integers(length, 30))
        hosts = list(subnet.subnets(new_prefix=extra))
        entry["IPRange"] = str(draw(st.sampled_from(hosts)))
    if draw(st.booleans()):
        entry["Gateway"] = str(subnet.network_address + draw(st.integers(1, subnet.num_addresses - 2)))
    s = ipam.subnet_from_config(entry)
    addresses = list(subnet)
    used = set(draw(st.lists(st.sampled_from(addresses), max_size=len(addresses))))
    return s, used


@given(subnets_and_used())
@settings(max_examples=300, deadline=None)
def test_allocate_never_returns_reserved_or_used(case):
    s, used = case
    try:
        got = ipam.allocate(s, used)
    except NoSpace:
        span = s.ip_range or s.subnet
        assert all(a in used or a in s.reserved() for a in span)
        return
    assert got not in used
    assert got != s.gateway
    assert got not in (s.subnet.network_address, s.subnet.broadcast_address)
    assert got in (s.ip_range or s.subnet)
    # Lowest free: nothing free below it in the range.
    span = s.ip_range or s.subnet
    assert all(a in used or a in s.reserved() for a in span if a < got)
