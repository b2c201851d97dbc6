"""network/dns.py: the DNS wire codec. Hostile bytes only ever raise FormatError; replies are
what a stub resolver expects (id, flags, echoed question, pointer-owned answers)."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.network import dns


def header(ident=1, flags=dns.RD, qd=1, an=0, ns=0, ar=0):
    return dns.HEADER.pack(ident, flags, qd, an, ns, ar)


def test_query_round_trip_keeps_case_and_edns_size():
    m = dns.parse(dns.build_query("Web.MyNet.", dns.AAAA, ident=0xBEEF, udp_size=1232))
    assert m.id == 0xBEEF and not m.is_response and m.opcode == 0 and m.flags & dns.RD
    assert m.question == dns.Question((b"Web", b"MyNet"), dns.AAAA, dns.IN)
    assert m.question.name == "Web.MyNet"
    assert m.udp_size == 1232
    assert dns.parse(dns.build_query("x")).udp_size == 512
    # An advertised size below 512 still means 512.
    assert dns.parse(dns.build_query("x", udp_size=100)).udp_size == 512


def test_reply_with_a_records():
    q = dns.parse(dns.build_query("Web", dns.A, ident=77))
    raw = dns.build_reply(q, answers=[(dns.A, 600, dns.a_rdata("10.0.0.2")), (dns.A, 600, dns.a_rdata("10.0.0.3"))])
    r = dns.parse(raw)
    assert r.id == 77 and r.is_response and r.rcode == dns.NOERROR
    assert r.flags & dns.RA and r.flags & dns.RD and not r.flags & dns.AA and not r.truncated
    assert r.questions == q.questions
    assert [(a.name, a.rtype, a.rclass, a.ttl, a.rdata) for a in r.answers] == [
        ("Web", dns.A, dns.IN, 600, bytes([10, 0, 0, 2])), ("Web", dns.A, dns.IN, 600, bytes([10, 0, 0, 3]))]
    # Owners are pointers to the question, not copies.
    assert raw.count(b"\x03Web") == 1 and raw.count(b"\xc0\x0c") == 2


@pytest.mark.parametrize("rcode", [dns.NXDOMAIN, dns.SERVFAIL, dns.REFUSED, dns.NOERROR, dns.NOTIMP])
def test_reply_rcodes_without_answers(rcode):
    q = dns.parse(dns.build_query("nothing.here", dns.MX, ident=5))
    r = dns.parse(dns.build_reply(q, rcode))
    assert r.rcode == rcode and r.answers == () and r.id == 5 and r.questions == q.questions


def test_ptr_reply_and_names():
    assert dns.reverse_name("10.1.2.3") == "3.2.1.10.in-addr.arpa"
    q = dns.parse(dns.build_query(dns.reverse_name("10.1.2.3") + ".", dns.PTR))
    assert dns.ptr_address(q.question.labels) == "10.1.2.3"
    r = dns.parse(dns.build_reply(q, answers=[(dns.PTR, 600, dns.ptr_rdata("web.mynet"))]))
    assert r.answers[0].rtype == dns.PTR and r.answers[0].target == "web.mynet"
    assert dns.ptr_address((b"3", b"2", b"1", b"10", b"IN-ADDR", b"ARPA")) == "10.1.2.3"


@pytest.mark.parametrize("name", ["2.1.10.in-addr.arpa", "256.2.1.10.in-addr.arpa", "x.2.1.10.in-addr.arpa",
                                  "01.2.1.10.in-addr.arpa", "3.2.1.10.ip6.arpa", "5.3.2.1.10.in-addr.arpa",
                                  "-1.2.1.10.in-addr.arpa", "1.2.1.10.in-addr.example"])
def test_ptr_address_rejects_other_names(name):
    labels = tuple(label.encode() for label in name.split("."))
    assert dns.ptr_address(labels) is None


def test_truncation_to_udp_size():
    q = dns.parse(dns.build_query("many", dns.A))
    answers = [(dns.A, 600, dns.a_rdata(f"10.0.{i // 256}.{i % 256}")) for i in range(100)]
    r = dns.parse(dns.build_reply(q, answers=answers, udp_size=512))
    assert r.truncated and r.answers == () and r.questions == q.questions
    r = dns.parse(dns.build_reply(q, answers=answers, udp_size=4096))
    assert not r.truncated and len(r.answers) == 100


def test_compression_pointer_loops_are_refused():
    # The question name is a pointer to itself.
    with pytest.raises(dns.FormatError):
        dns.parse(header() + b"\xc0\x0c" + b"\x00\x01\x00\x01")
    # Two names pointing at each other (an answer owner pointing forward into the next one).
    msg = header(an=1) + b"\x01a\x00\x00\x01\x00\x01" + b"\xc0\x1f\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00" \
        + b"\xc0\x1d"
    with pytest.raises(dns.FormatError):
        dns.parse(msg)
    # A label then a pointer back to that same label.
    with pytest.raises(dns.FormatError):
        dns.parse(header() + b"\x01a\xc0\x0c" + b"\x00\x01\x00\x01")


def test_backward_pointer_is_followed():
    q = dns.build_query("web.mynet", dns.A)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", dns.CNAME, 1, 60, 2) + b"\xc0\x10"  # → "mynet"
    r = dns.parse(header(flags=dns.QR, an=1) + q[12:] + answer)
    assert r.answers[0].name == "web.mynet" and r.answers[0].target == "mynet"


def test_long_names_and_labels():
    with pytest.raises(dns.FormatError):
        dns.encode_name("a" * 64)
    with pytest.raises(dns.FormatError):
        dns.encode_name(".".join(["a" * 63] * 4))  # 256 octets
    with pytest.raises(dns.FormatError):
        dns.encode_name("a..b")
    with pytest.raises(dns.FormatError):
        dns.encode_name("é.example")
    assert dns.encode_name(".") == b"\x00" and dns.encode_name("") == b"\x00"
    # A wire name built from many pointers that adds up past 255 octets.
    labels = b"".join(b"\x3f" + b"a" * 63 for _ in range(3))
    msg = header() + labels + b"\x00\x00\x01\x00\x01"
    dns.parse(msg)  # 193 octets: fine
    msg = header(qd=2) + labels + b"\x00\x00\x01\x00\x01" + b"\x3f" + b"b" * 63 + b"\xc0\x0c\x00\x01\x00\x01"
    with pytest.raises(dns.FormatError):
        dns.parse(msg)


def test_every_truncation_of_a_reply_is_a_format_error():
    q = dns.parse(dns.build_query("web.mynet", dns.A, udp_size=1232))
    raw = dns.build_reply(q, answers=[(dns.A, 600, dns.a_rdata("10.0.0.2"))])
    for n in range(len(raw)):
        with pytest.raises(dns.FormatError):
            dns.parse(raw[:n])


def test_counts_larger_than_the_message():
    with pytest.raises(dns.FormatError):
        dns.parse(header(qd=65535, an=65535, ns=65535, ar=65535))


def test_bad_rdata_lengths():
    q = dns.build_query("a", dns.A)
    bad_a = b"\xc0\x0c" + struct.pack("!HHIH", dns.A, 1, 60, 3) + b"\x01\x02\x03"
    with pytest.raises(dns.FormatError):
        dns.parse(header(flags=dns.QR, an=1) + q[12:] + bad_a)
    bad_ptr = b"\xc0\x0c" + struct.pack("!HHIH", dns.PTR, 1, 60, 4) + b"\x01b\x00\x00"
    with pytest.raises(dns.FormatError):
        dns.parse(header(flags=dns.QR, an=1) + q[12:] + bad_ptr)


def test_error_reply():
    raw = header(ident=9, flags=dns.RD) + b"\xff\xff"
    r = dns.parse(dns.error_reply(raw, dns.FORMERR))
    assert r.id == 9 and r.is_response and r.rcode == dns.FORMERR and r.questions == ()
    assert dns.error_reply(b"\x00\x01", dns.FORMERR) is None
    assert dns.error_reply(header(flags=dns.QR), dns.FORMERR) is None  # never answer a response


def test_format_error_is_a_dockyard_error():
    assert issubclass(dns.FormatError, InvalidArgument)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_format_error(data):
    try:
        m = dns.parse(data)
    except dns.FormatError:
        pass
    else:
        for q in m.questions:
            assert len(q.wire()) <= dns.MAX_NAME + 4
            dns.build_reply(m)
    dns.error_reply(data, dns.FORMERR)


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_mutated_messages_only_raise_format_error(data):
    q = dns.parse(dns.build_query("web.mynet", dns.A, udp_size=1232))
    raw = bytearray(dns.build_reply(q, answers=[(dns.A, 600, dns.a_rdata("10.0.0.2")),
                                                (dns.PTR, 600, dns.ptr_rdata("x.mynet"))]))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        dns.parse(bytes(raw[:cut]))
    except dns.FormatError:
        pass


@given(st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63), min_size=1, max_size=4),
       st.integers(0, 65535), st.sampled_from([dns.A, dns.AAAA, dns.PTR, dns.MX, dns.TXT]))
def test_query_round_trip(labels, ident, qtype):
    name = ".".join(labels)
    m = dns.parse(dns.build_query(name, qtype, ident=ident))
    assert m.id == ident and m.question.name == name and m.question.qtype == qtype
